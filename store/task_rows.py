"""A task's rows in the database: the tables a task fills from its Parquet files, its row in `tasks`
for each run (TaskRecord), and the statements that insert and delete them inside one transaction
of the writer's (store.db.StoreWriter)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from store import artifacts
from store.artifacts import INFLUENCE_TABLES
from store.connections import first_row
from store.errors import StoreError

# Tables a task fills from `<task dir>/tables/<table>.parquet`; a fixed list, never user input. A TracIn
# task fills the four of store/influence.py (or, written before #13, `influence` with text ids alone).
STAGE_TABLES = ("examples", "metrics", "checkpoints", "subnetworks", "prune_steps", "mask_transfer", "ablation_examples",
                "gradient_norms", "planted_heads", "head_effects")
TASK_TABLES = STAGE_TABLES + INFLUENCE_TABLES


@dataclass(frozen=True)
class TaskRecord:
    """What happened to one task in one run (a row of `tasks`)."""

    task_key: str
    name: str
    stage: str
    params: str  # JSON
    inputs: str  # JSON: {role: upstream task_key}
    outcome: str  # cached | ran | failed | skipped
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    device: str | None = None
    error: str | None = None
    summary: str | None = None  # JSON


def check_key(key: str) -> None:
    if not artifacts.is_task_key(key):
        raise StoreError(f"{key!r} is not a task key (64 hexadecimal digits); a directory of that name in tasks/ is none of langspec's")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection):
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def delete_task_rows(con: duckdb.DuckDBPyConnection, key: str) -> None:
    """Delete a task's rows from every task table."""
    from store.influence import delete_task

    for table in STAGE_TABLES:
        con.execute(f"DELETE FROM {table} WHERE task_key = ?", [key])
    delete_task(con, key)


def insert_task(con: duckdb.DuckDBPyConnection, run_id: int, record: TaskRecord) -> None:
    """A task's row in a run, replacing the one it had (`queued`, until it is done)."""
    con.execute("DELETE FROM tasks WHERE run_id = ? AND task_key = ?", [run_id, record.task_key])
    con.execute(
        "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, record.task_key, record.name, record.stage, record.params, record.inputs, record.outcome, record.reason,
         record.started_at, record.finished_at, record.seconds, record.device, record.error, record.summary],
    )


def leave_queued(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """The tasks a run still had queued when it ended were not run by it."""
    con.execute("UPDATE tasks SET outcome = 'not run', reason = 'its run ended first' WHERE run_id = ? AND outcome = 'queued'",
                [run_id])


def text_scores(path: Path):
    """The `influence` table of a task directory from before #13, its text ids read as dictionaries."""
    import pyarrow.parquet as pq  # heavy: only ingest reads task tables, a reader of the store never

    return pq.read_table(path, read_dictionary=["test_id", "train_id", "variant"])


def insert_table(con: duckdb.DuckDBPyConnection, table: str, key: str, path: Path) -> int:
    """One of a task's Parquet tables into its table of the store; returns the task's rows there."""
    import pyarrow.parquet as pq

    columns = pq.read_schema(path).names
    # A `path` column is relative to the task directory; rows store it relative to the store root.
    select = "* REPLACE ($task_dir || path AS path)" if "path" in columns else "*"
    params = {"key": key, "parquet": str(path)} | ({"task_dir": f"tasks/{key}/"} if "path" in columns else {})
    con.execute(f"INSERT INTO {table} BY NAME SELECT $key AS task_key, {select} FROM read_parquet($parquet)", params)
    return first_row(con, f"SELECT count(*) FROM {table} WHERE task_key = $key", key=key)[0]
