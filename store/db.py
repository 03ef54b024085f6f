"""The store on disk: `<root>/langspec.duckdb` and one artifact directory per task, `<root>/tasks/<key>/`.

Only the driver of a run writes the database, holding `<root>/.lock` for the whole run; each finished
task is ingested in one transaction that first deletes that task's rows, so ingesting twice is
harmless. Readers open the file read-only.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from store import artifacts
from store.errors import StoreError
from store.influence import insert_influence

SCHEMA_VERSION = 3
# The schema, run in this order on every run: tables (CREATE IF NOT EXISTS), then the migrations of
# an older store, then the views and macros (CREATE OR REPLACE), which DuckDB binds to the tables.
SCHEMA_DIR = Path(__file__).with_name("schema")
SCHEMA_FILES = tuple(SCHEMA_DIR / f"{part}.sql" for part in ("tables", "views", "macros"))


def schema_sql() -> str:
    """The whole schema as one script, for a new database."""
    return "\n".join(path.read_text() for path in SCHEMA_FILES)


def _influence_to_v3(con: duckdb.DuckDBPyConnection) -> None:
    """Version 2's `influence` (text ids, every query summing and ranking) becomes version 3's:
    each task's scores go through the same ingest as a new task's (numbered ids, `tracin_cp`,
    `proponents`)."""
    con.execute("DROP VIEW IF EXISTS influence_by_language")  # version 2's, on the old columns
    con.execute("ALTER TABLE influence RENAME TO influence_v2")
    for path in SCHEMA_FILES:  # the new `influence`, and the views and macros that ingest uses
        con.execute(path.read_text())
    keys = [row[0] for row in con.sql("SELECT DISTINCT task_key FROM influence_v2 ORDER BY 1").fetchall()]
    for key in keys:
        scores = con.sql("SELECT seed, variant, checkpoint, test_id, train_id, score FROM influence_v2 WHERE task_key = $key",
                         params={"key": key}).to_arrow_table()
        insert_influence(con, key, scores)
    con.execute("DROP TABLE influence_v2")


# How a store of an older version becomes the current one, run after tables.sql has created what is
# new (an SQL statement, or a function of the connection). 1 -> 2: the `points` table. A version-1
# run without a sweep is its one point ''; a swept one gets no points (which of its tasks formed
# which point was not recorded), and the analyses ask for a new run of its spec (cached, seconds).
# The version-1 macros, renamed since, go. 2 -> 3: integer example ids in `influence`, TracInCP and
# the ranked `proponents` stored at ingest.
MIGRATIONS = {
    1: [
        "INSERT INTO points SELECT DISTINCT t.run_id, '', t.task_key FROM tasks AS t JOIN runs AS r USING (run_id) "
        "WHERE coalesce(CAST(r.spec -> 'sweep' AS VARCHAR), '{}') IN ('{}', 'null')",
        "DROP MACRO TABLE IF EXISTS language_shares",
        "DROP MACRO TABLE IF EXISTS run_influence",
    ],
    2: [_influence_to_v3],
}
DB_FILE = "langspec.duckdb"
LOCK_FILE = ".lock"
# Tables a task fills from `<task dir>/tables/<table>.parquet`; a fixed list, never user input.
TASK_TABLES = ("examples", "metrics", "checkpoints", "subnetworks", "prune_steps", "mask_transfer", "influence")
# Tables the store derives from a task's tables at ingest (store/influence.py), keyed by task_key too.
DERIVED_TABLES = ("influence_examples", "tracin_cp", "proponents")
# The oldest storage format that DuckDB clients of every version since 1.1 read (the CLI, DBeaver, R), with
# everything the schema uses. 'v1.0.0' is no older on disk (both are format 64), and 1.0 readers reject the
# primary keys that duckdb 2.0 writes there. Applies when the file is created; an existing store keeps its format.
STORAGE_VERSION = "v1.1.0"


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


def lock_holder(root: Path) -> str:
    try:
        return (Path(root) / LOCK_FILE).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


class StoreWriter:
    """The one writer of a store, for the length of a run."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        try:
            (self.root / "tasks").mkdir(parents=True, exist_ok=True)
            self._lock = open(self.root / LOCK_FILE, "a+")
        except OSError as err:
            raise StoreError(f"cannot write the store at {self.root}: {err.strerror}; choose a writable --store DIR") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreError(
                f"the store {self.root} is in use by another langspec run (pid {lock_holder(self.root)}); "
                "wait for it to finish or use another --store DIR"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        try:
            self.con = duckdb.connect(str(self.root / DB_FILE), config={"storage_compatibility_version": STORAGE_VERSION})
        except duckdb.Error as err:
            self._release()
            if is_damage(err):
                raise damaged_database(self.root, err) from None
            raise StoreError(f"the store {self.root} is open in another process ({err}); close it and retry") from None
        self._create_schema()

    def _create_schema(self) -> None:
        # The version first: the schema replaces views and macros, which must not happen to a store
        # this langspec cannot read.
        found = _schema_version(self.con)
        if found is not None and found != SCHEMA_VERSION and not _migratable(found):
            self.close()
            raise StoreError(
                f"the store {self.root} has schema version {found}, this langspec reads version {SCHEMA_VERSION}; "
                "use a new --store DIR (or the langspec version that wrote it)"
            )
        self.con.execute("BEGIN TRANSACTION")
        try:
            tables, *views_and_macros = SCHEMA_FILES
            self.con.execute(tables.read_text())
            if found is None:
                versions = {"schema_version": str(SCHEMA_VERSION), "langspec_version": package_version("langspec"),
                            "duckdb_version": duckdb.__version__}
                self.con.executemany("INSERT INTO meta VALUES (?, ?)", list(versions.items()))
            for version in range(SCHEMA_VERSION if found is None else found, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    statement(self.con) if callable(statement) else self.con.execute(statement)
            for path in views_and_macros:
                self.con.execute(path.read_text())
            self.con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            self.close()
            raise

    # --- runs and tasks -------------------------------------------------------------------------

    def begin_run(self, *, spec_name: str, spec_path: str, spec_text: str, overrides: list[str], spec_json: str,
                  spec_hash: str, git_commit: str | None, versions: dict, host: str, executor: str,
                  points: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> int:
        """A new run (status running) and the tasks of each of its sweep points; returns its run_id."""
        # The lock guarantees that a run still marked running was ended by a crash or a kill.
        self.con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
        run_id = _first(self.con, "SELECT coalesce(max(run_id), 0) + 1 FROM runs")[0]
        self.con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), NULL, 'running')",
            [run_id, spec_name, spec_path, spec_text, overrides, spec_json, spec_hash, git_commit, json.dumps(versions), host,
             os.getpid(), executor],
        )
        rows = [[run_id, label, key] for label, keys in points for key in keys]
        if rows:
            self.con.executemany("INSERT INTO points VALUES (?, ?, ?)", rows)
        return run_id

    def finish_run(self, run_id: int, status: str) -> None:
        self.con.execute("UPDATE runs SET status = ?, finished_at = now() WHERE run_id = ?", [status, run_id])

    def record_task(self, run_id: int, record: TaskRecord) -> None:
        self.con.execute("DELETE FROM tasks WHERE run_id = ? AND task_key = ?", [run_id, record.task_key])
        self.con.execute(
            "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run_id, record.task_key, record.name, record.stage, record.params, record.inputs, record.outcome, record.reason,
             record.started_at, record.finished_at, record.seconds, record.device, record.error, record.summary],
        )

    # --- results --------------------------------------------------------------------------------

    def is_ingested(self, key: str) -> bool:
        return _first(self.con, "SELECT count(*) FROM results WHERE task_key = $key", key=key)[0] > 0

    def ingest(self, key: str, stage: str, name: str, tables: tuple[str, ...] = ()) -> dict[str, int]:
        """Replace the task's rows in every task table by the Parquet tables its manifest lists; one
        transaction. `tables`: what its stage declares; a missing one is an error, never absent rows."""
        manifest = artifacts.read_manifest(self.root, key)
        if manifest is None:
            raise StoreError(f"task {name} has no readable {artifacts.SUCCESS_FILE}; `langspec verify --repair` sets it aside")
        listed = [Path(entry["path"]) for entry in manifest["files"]]
        files = {path.stem: artifacts.task_dir(self.root, key) / path for path in listed
                 if path.parent == Path("tables") and path.suffix == ".parquet"}
        missing = [table for table in tables if table not in files]
        if missing:
            raise StoreError(f"task {name} lacks its table(s) {', '.join(missing)}; `langspec verify --repair` sets it aside")
        unknown = set(files) - set(TASK_TABLES)
        if unknown:
            raise StoreError(f"task {name} wrote tables the store does not know: {', '.join(sorted(unknown))}")
        counts = {}
        self.con.execute("BEGIN TRANSACTION")
        try:
            for table in TASK_TABLES:
                self.con.execute(f"DELETE FROM {table} WHERE task_key = ?", [key])
            for table, path in files.items():
                counts[table] = self._insert(table, key, path)
            self.con.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, now())", [key, stage, name])
            self.con.execute("COMMIT")
        except BaseException:  # an interrupt too: no half-ingested task
            self.con.execute("ROLLBACK")
            raise
        return counts

    def forget(self, key: str) -> None:
        """Delete a task's rows from every task table: its result is gone or damaged."""
        self.con.execute("BEGIN TRANSACTION")
        for table in TASK_TABLES + DERIVED_TABLES:
            self.con.execute(f"DELETE FROM {table} WHERE task_key = ?", [key])
        self.con.execute("DELETE FROM results WHERE task_key = ?", [key])
        self.con.execute("COMMIT")

    def _insert(self, table: str, key: str, path: Path) -> int:
        if table == "influence":  # numbered ids, TracInCP and the ranked proponents: store/influence.py
            return insert_influence(self.con, key, pq.read_table(path, read_dictionary=["test_id", "train_id", "variant"]))
        columns = pq.read_schema(path).names
        # A `path` column is relative to the task directory; rows store it relative to the store root.
        select = f"* REPLACE ('tasks/{key}/' || path AS path)" if "path" in columns else "*"
        self.con.execute(f"INSERT INTO {table} BY NAME SELECT ? AS task_key, {select} FROM read_parquet(?)", [key, str(path)])
        return _first(self.con, f"SELECT count(*) FROM {table} WHERE task_key = $key", key=key)[0]

    def close(self) -> None:
        if getattr(self, "con", None) is not None:
            self.con.close()
            self.con = None
        self._release()

    def _release(self) -> None:
        if not self._lock.closed:
            self._lock.seek(0)
            self._lock.truncate()
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first(con: duckdb.DuckDBPyConnection, sql: str, **params) -> tuple | None:
    """The first row of a query (DuckDB 2.0 relations have no fetchone())."""
    rows = con.sql(sql, params=params or None).limit(1).fetchall()
    return rows[0] if rows else None


def connect_read_only(root: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection for queries and analyses; writes through it fail."""
    path = Path(root) / DB_FILE
    if not path.is_file():
        raise StoreError(f"no store at {root}: run `langspec run SPEC --store {root}` first")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:  # damaged, or another process's lock, or this one's writer
        if is_damage(err):
            raise damaged_database(Path(root), err) from None
        raise StoreError(
            f"the store {root} is busy: a langspec run (pid {lock_holder(Path(root))}) is writing it; retry when it finishes"
        ) from None
    found = _schema_version(con)
    if found is not None and found != SCHEMA_VERSION:
        con.close()
        how = (f"`langspec run SPEC --store {root}` upgrades it (a cached run takes seconds)" if _migratable(found)
               else "read it with the langspec version that wrote it, or use a new --store DIR")
        raise StoreError(f"the store {root} has schema version {found}, this langspec reads version {SCHEMA_VERSION}: {how}")
    return con


# What DuckDB says of a truncated or overwritten file (measured with duckdb 2.0).
DAMAGE_SIGNS = ("could not read enough bytes", "not a valid duckdb database", "corrupt database", "checksum")


def is_damage(err: Exception) -> bool:
    return any(sign in str(err).lower() for sign in DAMAGE_SIGNS)


def read_every_block(con: duckdb.DuckDBPyConnection) -> None:
    """Read every column of every table: DuckDB opens a truncated file and fails only on the
    blocks that are gone, so this is the check that a whole database is readable."""
    for (table,) in con.sql("SELECT table_name FROM duckdb_tables() WHERE NOT internal").fetchall():
        con.sql(f'SELECT bit_xor(hash(COLUMNS(*))) FROM "{table}"').fetchall()


def damaged_database(root: Path, err: Exception) -> StoreError:
    return StoreError(
        f"the database {Path(root) / DB_FILE} is damaged ({' '.join(str(err).split())[:200]}); "
        f"`langspec verify --repair --store {root}` rebuilds it from the task directories (results are kept, the run history is not)"
    )


def _schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The store's schema version; None for a new, empty database."""
    if not con.sql("SELECT 1 FROM duckdb_tables() WHERE table_name = 'meta'").fetchall():
        return None
    found = _first(con, "SELECT value FROM meta WHERE key = 'schema_version'")
    return int(found[0]) if found else None


def _migratable(version: int) -> bool:
    return version < SCHEMA_VERSION and all(v in MIGRATIONS for v in range(version, SCHEMA_VERSION))


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"
