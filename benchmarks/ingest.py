"""Ingesting one TracIn task's scores into DuckDB, old against new in one run: by default 10,000
train x 100 test x 3 checkpoints = 3M scores (`--test 500`: a paper-size task, 15M).

old: the task directory as TracIn tasks wrote it before #13 (text ids), numbered, summed and ranked
     by the driver at ingest (store/influence.py `insert_influence`, still used for such directories);
new: the task numbers, sums and ranks the scores it holds (`influence_tables`, timed apart: it runs
     in the TracIn task, in parallel with other work), and the driver's ingest only copies Parquet.
Both stores must then hold the same rows; the script checks it.

Run: .venv/bin/python benchmarks/ingest.py [--train 10000 --test 100 --checkpoints 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from runners.tables import write_arrow
from store.artifacts import seal, table_path, task_dir
from store.connections import DB_FILE
from store.db import StoreWriter
from store.influence import INFLUENCE_TABLES, influence_tables

KEY = "0" * 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--checkpoints", type=int, default=3)
    args = parser.parse_args()
    rows = args.train * args.test * args.checkpoints
    rng = np.random.default_rng(0)
    # A TracIn task lists its examples in an order of its own (language, then token length).
    train_ids = [f"ka-train-{i:06d}" for i in rng.permutation(args.train)]
    test_ids = [f"ka-test-{i:06d}" for i in rng.permutation(args.test)]
    terms = [(c, (rng.standard_normal((args.test, args.train), dtype=np.float32) * 1e-3)) for c in range(1, args.checkpoints + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        old, new = Path(tmp) / "old", Path(tmp) / "new"
        pq.write_table(pa.table({  # the pre-#13 `influence` table: checkpoint by checkpoint, test by test
            "seed": pa.repeat(pa.scalar(0, pa.int32()), rows), "variant": pa.repeat(pa.scalar("full"), rows),
            "checkpoint": np.repeat(np.arange(1, args.checkpoints + 1, dtype=np.int32), args.train * args.test),
            "test_id": pa.array(np.tile(np.repeat(np.array(test_ids, dtype=object), args.train), args.checkpoints), pa.string()),
            "train_id": pa.array(np.tile(np.array(train_ids, dtype=object), args.test * args.checkpoints), pa.string()),
            "score": np.concatenate([term.ravel() for _, term in terms]),
        }), _table_file(old, "influence"))
        seal(task_dir(old, KEY), {})
        started = time.perf_counter()
        for name, table in influence_tables(0, "full", test_ids, train_ids, terms).items():
            write_arrow(task_dir(new, KEY), name, table)
        in_task = time.perf_counter() - started
        seal(task_dir(new, KEY), {})
        seconds = {}
        for label, root in (("old", old), ("new", new)):
            writer = StoreWriter(root)
            started = time.perf_counter()
            counts = writer.ingest(KEY, "tracin", "tracin[seed=0,variant=full]")
            seconds[label] = time.perf_counter() - started
            writer.close()
            assert counts["influence"] == rows, counts
        same = {table: _rows(old, table) == _rows(new, table) for table in INFLUENCE_TABLES}
    assert all(same.values()), same
    print(f"{rows:,} scores, {args.test} test x {args.train} train x {args.checkpoints} checkpoints; the two stores hold the same rows")
    print(f"old ingest (text ids, numbered and ranked by the driver): {seconds['old']:.2f} s = {rows / seconds['old'] / 1e6:.2f} M scores/s")
    print(f"new ingest (the task's numbered, ranked tables copied):    {seconds['new']:.2f} s = {rows / seconds['new'] / 1e6:.2f} M scores/s")
    print(f"  the TracIn task's added work (numbering, TracInCP, ranks, Parquet): {in_task:.2f} s")


def _table_file(root: Path, table: str) -> Path:
    path = table_path(task_dir(root, KEY), table)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _rows(root: Path, table: str) -> list[tuple]:
    with duckdb.connect(str(root / DB_FILE), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


if __name__ == "__main__":
    main()
