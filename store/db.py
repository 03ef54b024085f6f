"""The store on disk: `<root>/langspec.duckdb` and one artifact directory per task, `<root>/tasks/<key>/`.

Only the driver of a run writes the database, holding `<root>/.lock` for the whole run; each finished
task is ingested in one transaction that first deletes that task's rows, so ingesting twice is
harmless. Readers open the file read-only.

DuckDB locks its file per process: while one process has it open read-write, no other can open it,
even read-only, and the other way round. So the writer opens the database only for each write
(begin a run, record or ingest a task, end the run) and closes it after, and a store can be read
while a run writes it: readers and the writer wait briefly for each other. `<root>/.writing` is the
gate: the writer holds it exclusively while it opens, writes and closes the database, a reader holds
it shared only while it opens its connection, so a stream of readers never starves the writer.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from store import artifacts
from store.artifacts import INFLUENCE_TABLES
from store.errors import StoreError

SCHEMA_VERSION = 6
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
    from store.influence import insert_influence

    keys = [row[0] for row in con.sql("SELECT DISTINCT task_key FROM influence_v2 ORDER BY 1").fetchall()]
    for key in keys:
        scores = con.sql("SELECT seed, variant, checkpoint, test_id, train_id, score FROM influence_v2 WHERE task_key = $key",
                         params={"key": key}).to_arrow_table()
        insert_influence(con, key, scores)
    con.execute("DROP TABLE influence_v2")


def _scores_to_v5(con: duckdb.DuckDBPyConnection) -> None:
    """Version 4's score tables, each row with its task's key, seed and variant, become version 5's,
    which name the task by number (`influence_tasks`); rows keep their order. A version-2 store has
    none: its migration ingested its scores into version 5's tables already."""
    if not con.sql("SELECT 1 FROM duckdb_tables() WHERE table_name = 'proponents'").fetchall():
        return
    for view in ("influence_by_language", "tracin_cp_by_language"):  # version 4's, on the old tables
        con.execute(f"DROP VIEW IF EXISTS {view}")
    # Numbered in the order the tasks were ingested (their example numbers'), so the rows keep their order.
    con.execute("INSERT INTO influence_tasks SELECT row_number() OVER (ORDER BY first_example) - 1, task_key, seed, variant "
                "FROM (SELECT DISTINCT task_key, seed, variant FROM proponents) "
                "JOIN (SELECT task_key, min(example_no) AS first_example FROM influence_examples GROUP BY task_key) USING (task_key)")
    tasks = con.sql("SELECT task_no, task_key FROM influence_tasks ORDER BY task_no").fetchall()
    for old, columns in (("influence", "checkpoint, test_no, train_no, score"), ("tracin_cp", "test_no, train_no, score"),
                         ("proponents", "checkpoint, test_no, side, rank, train_no")):
        for task_no, key in tasks:
            con.execute(f"INSERT INTO {old}_numbered SELECT $no, {columns} FROM {old} WHERE task_key = $key", {"no": task_no, "key": key})
        con.execute(f"DROP TABLE {old}")


# How a store of an older version becomes the current one, run after tables.sql has created what is
# new (an SQL statement, or a function of the connection). 1 -> 2: the `points` table. A version-1
# run without a sweep is its one point ''; a swept one gets no points (which of its tasks formed
# which point was not recorded), and the analyses ask for a new run of its spec (cached, seconds).
# The version-1 macros, renamed since, go. 2 -> 3: integer example ids in `influence`, TracInCP and
# the ranked `proponents` stored at ingest. 3 -> 4: the tables `mask_transfer` and `ablation_examples`
# (tables.sql creates them) and the views that read them (`subnetwork_masks` gained `model`), which
# every writer open replaces anyway: nothing more to do. 4 -> 5: the score tables name their task by
# number; `influence`, `tracin_cp` and `proponents` become views with the same columns. 5 -> 6: the
# tables `gradient_norms` (TracIn) and `planted_heads` (fine-tuning with planted modules), which
# tables.sql creates: nothing more to do.
MIGRATIONS = {
    1: [
        "INSERT INTO points SELECT DISTINCT t.run_id, '', t.task_key FROM tasks AS t JOIN runs AS r USING (run_id) "
        "WHERE coalesce(CAST(r.spec -> 'sweep' AS VARCHAR), '{}') IN ('{}', 'null')",
        "DROP MACRO TABLE IF EXISTS language_shares",
        "DROP MACRO TABLE IF EXISTS run_influence",
    ],
    2: [_influence_to_v3],
    3: [],
    4: [_scores_to_v5],
    5: [],
}
DB_FILE = "langspec.duckdb"
COMPACTING_FILE = "langspec.duckdb.compacting"  # the new file a rewrite of the database fills (StoreWriter._compact)
LOCK_FILE = ".lock"
GATE_FILE = ".writing"
# How long a reader waits for the writer's transaction (ingesting a paper-size TracIn task takes seconds),
# and the writer for readers (`langspec report` at paper size: under 30 s) before either says who holds
# the store. The writer waits much longer than it could ever need: a reader must not make a run fail.
READ_WAIT_S = 120.0
WRITE_WAIT_S = 1800.0
WRITE_NOTE_S = 10.0  # after this long, and every minute then, the writer says what it waits for
# Tables a task fills from `<task dir>/tables/<table>.parquet`; a fixed list, never user input. A TracIn
# task fills the four of store/influence.py (or, written before #13, `influence` with text ids alone).
STAGE_TABLES = ("examples", "metrics", "checkpoints", "subnetworks", "prune_steps", "mask_transfer", "ablation_examples",
                "gradient_norms", "planted_heads")
TASK_TABLES = STAGE_TABLES + INFLUENCE_TABLES
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

    def __init__(self, root: str | Path, notify=None):
        """notify(text): told when the writer waits long for a reader to close the store."""
        self.root = Path(root)
        try:
            # A new store is its user's alone (0700): it holds the spec, the datasets' text and the results.
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.root / "tasks").mkdir(exist_ok=True)
            self._lock = artifacts.open_private(self.root / LOCK_FILE)
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
        self._notify = notify or (lambda text: None)
        self._noted = -1  # the minute of the writer's wait last noted
        self.con: duckdb.DuckDBPyConnection | None = None  # open only inside `_open()`
        try:
            self._create_schema()  # on the first open only: a reopen costs no schema work
        except BaseException:
            self._release()
            raise

    @contextmanager
    def _open(self):
        """The database, opened read-write for one write and closed after (DuckDB then checkpoints):
        between writes any process may read it. Waits for readers, saying for whom after a while."""
        started, self._noted = time.monotonic(), -1
        with _gate(self.root, fcntl.LOCK_EX, lambda: self._waited(started, "another process"), create=True):
            self.con = _connect(self.root, lambda holder: self._waited(started, holder),
                                config={"storage_compatibility_version": STORAGE_VERSION})
            try:
                yield self.con
            finally:
                con, self.con = self.con, None
                con.close()

    def _waited(self, started: float, holder: str) -> bool:
        """Called while a reader holds the store: True to go on waiting. Notes now and then, and
        gives up only after WRITE_WAIT_S (a reader left open for half an hour, not a query)."""
        waited = time.monotonic() - started
        if waited > WRITE_WAIT_S:
            raise StoreError(
                f"the store {self.root} has been held open by {holder} for over {WRITE_WAIT_S:.0f} s, so this run "
                "cannot record its results; close that connection and run the same command again (finished tasks are kept)"
            )
        if waited > WRITE_NOTE_S and waited // 60 != self._noted:
            self._noted = waited // 60
            self._notify(f"waiting for {holder}, which has the store's database open, to close it ({waited:.0f} s so far)")
        return True

    def _create_schema(self) -> None:
        with self._open() as con:
            # The version first: the schema replaces views and macros, which must not happen to a store
            # this langspec cannot read.
            found = _schema_version(con)
            if found is not None and found != SCHEMA_VERSION and not _migratable(found):
                raise StoreError(
                    f"the store {self.root} has schema version {found}, this langspec reads version {SCHEMA_VERSION}; "
                    "use a new --store DIR (or the langspec version that wrote it)"
                )
            with _transaction(con):
                tables, *views_and_macros = SCHEMA_FILES
                con.execute(tables.read_text())
                if found is None:
                    versions = {"schema_version": str(SCHEMA_VERSION), "langspec_version": package_version("langspec"),
                                "duckdb_version": duckdb.__version__}
                    con.executemany("INSERT INTO meta VALUES (?, ?)", list(versions.items()))
                for version in range(SCHEMA_VERSION if found is None else found, SCHEMA_VERSION):
                    for statement in MIGRATIONS[version]:
                        statement(con) if callable(statement) else con.execute(statement)
                for path in views_and_macros:
                    con.execute(path.read_text())
                con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
                if found is not None and found < SCHEMA_VERSION:  # the rewrite to do, kept until it is done
                    con.execute("INSERT OR REPLACE INTO meta VALUES ('compact', ?)", [f"after the migration from version {found}"])
            pending = _first(con, "SELECT value FROM meta WHERE key = 'compact'") is not None
        if pending:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the database into a new file and put that in its place. DuckDB reuses the blocks of
        the tables a migration dropped but never gives them back to the disk (a 135M-score store of
        version 4 was 1.74 GB after its migration, 0.96 GB of it free; 0.78 GB once rewritten: 27 s for both).
        The migration marks the rewrite to do in `meta` and the new file is put in place without the
        mark, so a rewrite that is killed or fails (a full disk) is done by the next writer; until
        then the store works as it is. A reader that opened the store before the rename keeps reading
        the old file, which holds the same rows."""
        path, fresh = self.root / DB_FILE, self.root / COMPACTING_FILE
        started = time.monotonic()
        with _gate(self.root, fcntl.LOCK_EX, lambda: self._waited(started, "another process"), create=True):
            try:
                fresh.unlink(missing_ok=True)  # a copy that a killed rewrite left
                con = duckdb.connect(str(fresh), config={"storage_compatibility_version": STORAGE_VERSION})
                try:
                    con.execute("ATTACH ? AS migrated (READ_ONLY)", [str(path)])
                    con.execute(f'COPY FROM DATABASE migrated TO "{_first(con, "SELECT current_database()")[0]}"')
                    con.execute("DETACH migrated")
                    con.execute("DELETE FROM meta WHERE key = 'compact'")
                finally:
                    con.close()
                os.chmod(fresh, path.stat().st_mode)
                os.replace(fresh, path)
                directory = os.open(self.root, os.O_RDONLY)
                try:
                    os.fsync(directory)  # the rename itself on disk
                finally:
                    os.close(directory)
            except (duckdb.Error, OSError) as err:
                self._notify(f"could not rewrite the store's database after its upgrade ({' '.join(str(err).split())[:200]}); "
                             "it works as it is, with the space of the dropped tables still in the file, and the next run tries again")

    # --- runs and tasks -------------------------------------------------------------------------

    def begin_run(self, *, spec_name: str, spec_path: str, spec_text: str, overrides: list[str], spec_json: str,
                  spec_hash: str, git_commit: str | None, versions: dict, host: str, executor: str,
                  points: tuple[tuple[str, tuple[str, ...]], ...] = (), queued: tuple[TaskRecord, ...] = ()) -> int:
        """A new run (status running), the tasks of each of its sweep points, and a `queued` row in
        `tasks` for each task it will run or take from the cache; returns its run_id."""
        with self._open() as con, _transaction(con):
            # The lock guarantees that a run still marked running was ended by a crash or a kill.
            for (ended,) in con.sql("SELECT run_id FROM runs WHERE status = 'running'").fetchall():
                _leave_queued(con, ended)
            con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
            run_id = _first(con, "SELECT coalesce(max(run_id), 0) + 1 FROM runs")[0]
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), NULL, 'running')",
                [run_id, spec_name, spec_path, spec_text, overrides, spec_json, spec_hash, git_commit, json.dumps(versions), host,
                 os.getpid(), executor],
            )
            rows = [[run_id, label, key] for label, keys in points for key in keys]
            if rows:
                con.executemany("INSERT INTO points VALUES (?, ?, ?)", rows)
            for record in queued:
                _insert_task(con, run_id, record)
        return run_id

    def finish_run(self, run_id: int, status: str) -> None:
        with self._open() as con, _transaction(con):
            _leave_queued(con, run_id)
            con.execute("UPDATE runs SET status = ?, finished_at = now() WHERE run_id = ?", [status, run_id])

    def record_task(self, run_id: int, record: TaskRecord) -> None:
        with self._open() as con, _transaction(con):
            _insert_task(con, run_id, record)

    # --- results --------------------------------------------------------------------------------

    def ingested(self) -> set[str]:
        """The keys of the tasks whose results are in the tables."""
        with self._open() as con:
            return {row[0] for row in con.sql("SELECT task_key FROM results").fetchall()}

    def is_ingested(self, key: str) -> bool:
        return key in self.ingested()

    def ingest(self, key: str, stage: str, name: str, tables: tuple[str, ...] = (), *, run_id: int | None = None,
               record: TaskRecord | None = None) -> dict[str, int]:
        """Replace the task's rows in every task table by the Parquet tables its manifest lists; one
        transaction, with the task's `record` in `run_id` when given, so a reader sees the task whole
        or not at all. `tables`: what its stage declares; a missing one is an error, never absent rows."""
        _check_key(key)
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
        from store.influence import insert_influence, insert_tables  # numpy and pyarrow: a reader of the store never needs them

        counts = {}
        with self._open() as con, _transaction(con):  # an interrupt too rolls back: no half-ingested task
            _delete_task(con, key)
            scores = {table: files.pop(table) for table in INFLUENCE_TABLES if table in files}
            for table, path in files.items():
                counts[table] = _insert(con, table, key, path)
            if set(scores) == set(INFLUENCE_TABLES):  # as a TracIn task writes them: copied
                counts.update(insert_tables(con, key, {table: ("parquet", path) for table, path in scores.items()}))
            elif set(scores) == {"influence"}:  # a task directory from before #13: text ids, numbered and ranked here
                counts["influence"] = insert_influence(con, key, _text_scores(scores["influence"]))
            elif scores:
                raise StoreError(f"task {name} lacks its table(s) {', '.join(sorted(set(INFLUENCE_TABLES) - set(scores)))}; "
                                 "`langspec verify --repair` sets it aside")
            con.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, now())", [key, stage, name])
            if record is not None:
                _insert_task(con, run_id, record)
        return counts

    def forget(self, key: str) -> None:
        """Delete a task's rows from every task table: its result is gone or damaged."""
        _check_key(key)
        with self._open() as con, _transaction(con):
            _delete_task(con, key)
            con.execute("DELETE FROM results WHERE task_key = ?", [key])

    def close(self) -> None:
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


def _check_key(key: str) -> None:
    if not artifacts.is_task_key(key):
        raise StoreError(f"{key!r} is not a task key (64 hexadecimal digits); a directory of that name in tasks/ is none of langspec's")


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection):
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _delete_task(con: duckdb.DuckDBPyConnection, key: str) -> None:
    """Delete a task's rows from every task table."""
    from store.influence import delete_task

    for table in STAGE_TABLES:
        con.execute(f"DELETE FROM {table} WHERE task_key = ?", [key])
    delete_task(con, key)


def _insert_task(con: duckdb.DuckDBPyConnection, run_id: int, record: TaskRecord) -> None:
    """A task's row in a run, replacing the one it had (`queued`, until it is done)."""
    con.execute("DELETE FROM tasks WHERE run_id = ? AND task_key = ?", [run_id, record.task_key])
    con.execute(
        "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, record.task_key, record.name, record.stage, record.params, record.inputs, record.outcome, record.reason,
         record.started_at, record.finished_at, record.seconds, record.device, record.error, record.summary],
    )


def _leave_queued(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """The tasks a run still had queued when it ended were not run by it."""
    con.execute("UPDATE tasks SET outcome = 'not run', reason = 'its run ended first' WHERE run_id = ? AND outcome = 'queued'",
                [run_id])


def _text_scores(path: Path):
    import pyarrow.parquet as pq  # heavy: only ingest reads task tables, a reader of the store never

    return pq.read_table(path, read_dictionary=["test_id", "train_id", "variant"])


def _insert(con: duckdb.DuckDBPyConnection, table: str, key: str, path: Path) -> int:
    import pyarrow.parquet as pq

    columns = pq.read_schema(path).names
    # A `path` column is relative to the task directory; rows store it relative to the store root.
    select = "* REPLACE ($task_dir || path AS path)" if "path" in columns else "*"
    params = {"key": key, "parquet": str(path)} | ({"task_dir": f"tasks/{key}/"} if "path" in columns else {})
    con.execute(f"INSERT INTO {table} BY NAME SELECT $key AS task_key, {select} FROM read_parquet($parquet)", params)
    return _first(con, f"SELECT count(*) FROM {table} WHERE task_key = $key", key=key)[0]


def _first(con: duckdb.DuckDBPyConnection, sql: str, **params) -> tuple | None:
    """The first row of a query (DuckDB 2.0 relations have no fetchone())."""
    rows = con.sql(sql, params=params or None).limit(1).fetchall()
    return rows[0] if rows else None


# A read-only connection protects the database, not the disk: DuckDB's `read_only` alone still runs
# `COPY ... TO` any file (the database itself included), `read_csv` of any file, and INSTALL/LOAD of
# extensions from the network. These close that, and `lock_configuration` keeps a query from reopening it.
READ_ONLY_CONFIG = {"enable_external_access": False, "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False, "allow_community_extensions": False, "lock_configuration": True}


def connect_read_only(root: str | Path, wait_s: float = READ_WAIT_S) -> duckdb.DuckDBPyConnection:
    """A read-only connection for queries and analyses: writes through it fail, and it reaches no file
    but the database (no COPY TO, no read_csv, no extensions). While a run writes
    the store, waits for its transaction (up to `wait_s`). The connection sees the store as of its
    opening, whole tasks only, for as long as it stays open; and the run waits while it is open, so
    close it when done (`with connect_read_only(root) as con:`)."""
    path = Path(root) / DB_FILE
    if not path.is_file():
        raise StoreError(f"no store at {root}: run `langspec run SPEC --store {root}` first")
    deadline = time.monotonic() + wait_s

    def waiting(holder: str) -> bool:
        if time.monotonic() < deadline:
            return True
        raise StoreError(f"the store {root} is busy: {holder} has been writing it for over {wait_s:.0f} s; "
                         "retry later (a langspec run writes it only while it ingests a task)")

    with _gate(Path(root), fcntl.LOCK_SH, lambda: waiting(f"a langspec run (pid {lock_holder(Path(root))})")):
        con = _connect(Path(root), waiting, read_only=True, config=READ_ONLY_CONFIG)
    found = _schema_version(con)
    if found is not None and found != SCHEMA_VERSION:
        con.close()
        how = (f"`langspec run SPEC --store {root}` upgrades it (a cached run takes seconds)" if _migratable(found)
               else "read it with the langspec version that wrote it, or use a new --store DIR")
        raise StoreError(f"the store {root} has schema version {found}, this langspec reads version {SCHEMA_VERSION}: {how}")
    return con


# DuckDB's words (1.1 to 2.0) when another process has the file open: "Could not set lock on file ...:
# Conflicting lock is held in /usr/bin/python3 (PID 1234) ..."
LOCK_CONFLICT = re.compile(r"could not set lock on file", re.IGNORECASE)
LOCK_HOLDER = re.compile(r"Conflicting lock is held in (\S+) \(PID (\d+)\)")


def _connect(root: Path, keep_waiting, **options) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried with backoff while another process holds the file; keep_waiting(holder)
    says whether to go on (or raises). A damaged file is reported as such."""
    pause = 0.01
    while True:
        try:
            return duckdb.connect(str(root / DB_FILE), **options)
        except duckdb.Error as err:
            if is_damage(err):
                raise damaged_database(root, err) from None
            if not LOCK_CONFLICT.search(str(err)):
                raise StoreError(f"cannot open the store {root}: {err}") from None
            found = LOCK_HOLDER.search(str(err))
            keep_waiting(f"process {found[2]} ({Path(found[1]).name})" if found else "another process")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)


@contextmanager
def _gate(root: Path, mode: int, keep_waiting, create: bool = False):
    """Hold `<root>/.writing` in `mode` (LOCK_EX: the writer, LOCK_SH: a reader), polling with
    backoff; keep_waiting() says whether to go on. A reader of a store it cannot write, or one that no
    langspec of this version wrote yet, goes without: DuckDB's own lock still keeps it safe."""
    try:
        handle = artifacts.open_private(root / GATE_FILE) if create else open(root / GATE_FILE)
    except OSError:
        if create:
            raise
        yield
        return
    with handle:
        pause = 0.005
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                keep_waiting()
                time.sleep(pause)
                pause = min(pause * 1.5, 0.25)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    from importlib import metadata  # here, not at the top: a reader of the store need not load it

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"
