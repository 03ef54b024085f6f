"""Tables a stage hands to the store: Parquet files under `<task dir>/tables/<table>.parquet`, each
declared once here (the store's DDL, store/schema/tables.sql, is checked against these schemas by
tests/store/test_table_declarations.py). No stage owns this module: a stage writes its tables through
it, and runners.inputs reads them back for the stages downstream.

A column named `path` holds a path relative to the task directory; the store rebases it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from store.artifacts import table_path

LABELS_FILE = "labels.json"  # the data stage's label names, {"names": [name of label 0, name of label 1, ...]}

SCHEMAS = {
    # The data stage's: every example of every language and split, in the common schema.
    "examples": pa.schema(
        [("example_id", pa.string()), ("language", pa.string()), ("split", pa.string()), ("text_a", pa.string()),
         ("text_b", pa.string()), ("label", pa.int32())]
    ),
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
    "planted_heads": pa.schema(
        [("seed", pa.int32()), ("language", pa.string()), ("family", pa.string()), ("layer", pa.int32()),
         ("head", pa.int32()), ("kept", pa.bool_())]
    ),
    "prune_steps": pa.schema(
        [("seed", pa.int32()), ("language", pa.string()), ("step", pa.int32()), ("heads_kept", pa.int32()),
         ("metric_value", pa.float64()), ("ratio_to_full", pa.float64()), ("accepted", pa.bool_())]
    ),
    # The TracIn stage's, numbered within the task (store/influence.py): test examples from 0, then training examples.
    "influence_examples": pa.schema([("role", pa.string()), ("example_no", pa.int32()), ("example_id", pa.string())]),
    # The ablation: each test example's loss and correctness under the ablated model and the full one.
    "ablation_examples": pa.schema(
        [("seed", pa.int32()), ("mode", pa.string()), ("ablated", pa.string()), ("example_id", pa.string()),
         ("language", pa.string()), ("split", pa.string()), ("loss", pa.float64()), ("correct", pa.bool_()),
         ("full_loss", pa.float64()), ("full_correct", pa.bool_())]
    ),
    "mask_transfer": pa.schema(
        [("seed", pa.int32()), ("language", pa.string()), ("mask_language", pa.string()), ("split", pa.string()),
         ("epoch", pa.int32()), ("heads_kept", pa.int32()), ("examples", pa.int32()), ("correct", pa.int32()),
         ("accuracy", pa.float64())]
    ),
    # The head_effects stage: a language's mean loss with every head on, and with one head gated off.
    "head_effects": pa.schema(
        [("seed", pa.int32()), ("language", pa.string()), ("split", pa.string()), ("examples", pa.int32()),
         ("layer", pa.int32()), ("head", pa.int32()), ("loss_all", pa.float64()), ("loss_without", pa.float64())]
    ),
    "influence": pa.schema(
        [("seed", pa.int32()), ("variant", pa.string()), ("checkpoint", pa.int32()), ("test_no", pa.int32()),
         ("train_no", pa.int32()), ("score", pa.float32())]
    ),
    # The TracIn stage's: each scored example's gradient norm at each checkpoint (what `normalize: cosine` divides by).
    "gradient_norms": pa.schema(
        [("seed", pa.int32()), ("variant", pa.string()), ("checkpoint", pa.int32()), ("role", pa.string()),
         ("example_id", pa.string()), ("norm", pa.float64())]
    ),
    "tracin_cp": pa.schema(
        [("seed", pa.int32()), ("variant", pa.string()), ("test_no", pa.int32()), ("train_no", pa.int32()), ("score", pa.float32())]
    ),
    "proponents": pa.schema(
        [("seed", pa.int32()), ("variant", pa.string()), ("checkpoint", pa.int32()), ("test_no", pa.int32()),
         ("side", pa.string()), ("rank", pa.int32()), ("train_no", pa.int32())]
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
