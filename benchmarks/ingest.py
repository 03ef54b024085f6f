"""Ingesting one TracIn task's scores into DuckDB: the issue's size, 5 languages x 2,000 train x
100 test x 3 checkpoints = 3M rows, written as the stage writes them and ingested as the driver does.

Run: .venv/bin/python benchmarks/ingest.py [--rows-train 10000 --rows-test 100 --checkpoints 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from runners.tables import write_arrow
from store.artifacts import seal, task_dir
from store.db import StoreWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--checkpoints", type=int, default=3)
    args = parser.parse_args()
    rows = args.train * args.test * args.checkpoints
    train_ids = np.array([f"ka-train-{i:06d}" for i in range(args.train)], dtype=object)
    test_ids = np.array([f"ka-test-{i:06d}" for i in range(args.test)], dtype=object)
    with tempfile.TemporaryDirectory() as root:
        key = "0" * 64
        workdir = task_dir(Path(root), key)
        started = time.perf_counter()
        write_arrow(workdir, "influence", pa.table({
            "seed": pa.repeat(pa.scalar(0, pa.int32()), rows),
            "variant": pa.repeat(pa.scalar("full"), rows),
            "checkpoint": np.repeat(np.arange(args.checkpoints, dtype=np.int32), args.train * args.test),
            "test_id": pa.array(np.tile(np.repeat(test_ids, args.train), args.checkpoints), type=pa.string()),
            "train_id": pa.array(np.tile(train_ids, args.test * args.checkpoints), type=pa.string()),
            "score": np.random.default_rng(0).standard_normal(rows, dtype=np.float32),
        }))
        seal(workdir, {})
        written = time.perf_counter() - started
        writer = StoreWriter(Path(root))
        started = time.perf_counter()
        counts = writer.ingest(key, "tracin", "tracin[seed=0,variant=full]")
        ingested = time.perf_counter() - started
        writer.close()
    assert counts["influence"] == rows
    print(f"{rows:,} rows: written to Parquet in {written:.2f} s, ingested into DuckDB in {ingested:.2f} s "
          f"({rows / ingested / 1e6:.1f} M rows/s)")


if __name__ == "__main__":
    main()
