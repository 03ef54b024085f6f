"""Tables a stage hands to the store: Parquet files under `<task dir>/tables/<table>.parquet`.

A column named `path` holds a path relative to the task directory; the store rebases it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from store.artifacts import table_path

SCHEMAS = {
    "metrics": pa.schema(
        [("seed", pa.int32()), ("variant", pa.string()), ("language", pa.string()), ("split", pa.string()),
         ("metric", pa.string()), ("value", pa.float64()), ("epoch", pa.int32())]
    ),
    "checkpoints": pa.schema(
        [("seed", pa.int32()), ("variant", pa.string()), ("epoch", pa.int32()), ("step", pa.int64()),
         ("learning_rate", pa.float64()), ("path", pa.string())]
    ),
    "subnetworks": pa.schema(
        [("seed", pa.int32()), ("language", pa.string()), ("layer", pa.int32()), ("head", pa.int32()),
         ("kept", pa.bool_()), ("importance", pa.float64())]
    ),
    "prune_steps": pa.schema(
        [("seed", pa.int32()), ("language", pa.string()), ("step", pa.int32()), ("heads_kept", pa.int32()),
         ("metric_value", pa.float64()), ("ratio_to_full", pa.float64()), ("accepted", pa.bool_())]
    ),
    "mask_transfer": pa.schema(
        [("seed", pa.int32()), ("language", pa.string()), ("mask_language", pa.string()), ("split", pa.string()),
         ("epoch", pa.int32()), ("heads_kept", pa.int32()), ("examples", pa.int32()), ("correct", pa.int32()),
         ("accuracy", pa.float64())]
    ),
    "influence": pa.schema(
        [("seed", pa.int32()), ("variant", pa.string()), ("checkpoint", pa.int32()), ("test_id", pa.string()),
         ("train_id", pa.string()), ("score", pa.float32())]
    ),
}


def write_table(workdir: Path, name: str, rows: list[dict]) -> Path:
    return write_arrow(workdir, name, pa.Table.from_pylist(rows, schema=SCHEMAS[name]))


def write_arrow(workdir: Path, name: str, table: pa.Table) -> Path:
    """Write a table given as columns (large tables: influence), checked against its schema."""
    path = table_path(workdir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.cast(SCHEMAS[name]), path)
    return path
