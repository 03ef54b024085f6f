"""The store on disk: `<root>/langspec.duckdb` and one artifact directory per task, `<root>/tasks/<key>/`.

The database and its lock files may live outside the store, on the driver's disk (`run --db-dir`; the
store records where: store.connections.database_dir), with `tasks/` on a shared filesystem; one run per
store across hosts is then the run record in `tasks/` (store.run_owner.claim_run).

Only the driver of a run writes the database, holding `.lock` beside it for the whole run; each finished
task is ingested in one transaction that first deletes that task's rows, so ingesting twice is
harmless (store.task_rows: a task's rows and the statements that write them). Readers open the file
read-only.

DuckDB locks its file per process (store.connections), so the writer opens the database only for each write
(begin a run, record or ingest a task, end the run) and closes it after, and a store can be read
while a run writes it: readers and the writer wait briefly for each other. `<root>/.writing` is the
gate: the writer holds it exclusively while it opens, writes and closes the database, a reader holds
it shared only while it opens its connection, so a stream of readers never starves the writer.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from store import artifacts, run_owner, task_rows
from store.artifacts import INFLUENCE_TABLES
from store.connections import (DB_FILE, LOCK_FILE, check_wal, clear_mark, connect_waiting, database_dir, first_row, gate,
                               lock_holder, mark_writing, network_filesystem, not_a_directory, read_database_record,
                               record_database, wal_files)
from store.errors import StoreError
from store.guards import check_tables, keep_private, reach_tasks_only
from store.migrations import MIGRATIONS, SCHEMA_FILES, SCHEMA_VERSION, migratable, schema_version
from store.task_rows import TaskRecord

COMPACTING_FILE = "langspec.duckdb.compacting"  # the new file a rewrite of the database fills (StoreWriter._compact)
# How long the writer waits for readers (`langspec report` at paper size: under 30 s) before it says
# who holds the store (store.connections.READ_WAIT_S: a reader's wait for the writer). It waits much
# longer than it could ever need: a reader must not make a run fail.
WRITE_WAIT_S = 1800.0
WRITE_NOTE_S = 10.0  # after this long, and every minute then, the writer says what it waits for
# The oldest storage format that DuckDB clients of every version since 1.1 read (the CLI, DBeaver, R), with
# everything the schema uses. 'v1.0.0' is no older on disk (both are format 64), and 1.0 readers reject the
# primary keys that duckdb 2.0 writes there. Applies when the file is created; an existing store keeps its format.
STORAGE_VERSION = "v1.1.0"


class StoreWriter:
    """The one writer of a store, for the length of a run."""

    def __init__(self, root: str | Path, notify=None, db_dir: str | Path | None = None):
        """notify(text): told when the writer waits long for a reader to close the store. db_dir: where
        the database and its lock files live, when not in the store (`run --db-dir`: the driver's disk,
        with tasks/ on a shared filesystem); by default where the store's last run kept them."""
        self.root = Path(root)
        self._notify = notify or (lambda text: None)
        if self.root.is_file():
            raise StoreError(not_a_directory(self.root))
        self.db = database_dir(self.root) if db_dir is None else Path(db_dir).absolute()
        if self.db.absolute() == self.root.absolute():
            self.db = self.root
        try:
            # A new store is its user's alone (0700): it holds the spec, the datasets' text and the results.
            for directory in dict.fromkeys((self.root, self.db)):
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                keep_private(directory, self._notify)
            (self.root / "tasks").mkdir(exist_ok=True)
            self._lock = artifacts.open_private(self.db / LOCK_FILE)
        except OSError as err:
            raise StoreError(f"cannot write the store at {self.root}{self._in_db()}: {err.strerror}; "
                             "choose a writable --store DIR (or --db-dir DIR)") from None
        try:
            artifacts.lock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB, self.db / LOCK_FILE)
        except StoreError:  # a filesystem without locks
            self._lock.close()
            raise
        except BlockingIOError:
            self._lock.close()
            raise StoreError(
                f"the store {self.root}{self._in_db()} is in use by another langspec run (pid {lock_holder(self.db)}); "
                "wait for it to finish or use another --store DIR"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        self._owner = None
        self._stop_beating = threading.Event()
        try:
            self._own_run()
        except BaseException:
            self._release()
            raise
        self._noted = -1  # the minute of the writer's wait last noted
        self.con: duckdb.DuckDBPyConnection | None = None  # open only inside `_open()`
        try:
            self._create_schema()  # on the first open only: a reopen costs no schema work
        except BaseException:
            self._release()
            raise

    def _in_db(self) -> str:
        return "" if self.db == self.root else f" (database in {self.db})"

    def _own_run(self) -> None:
        """Become the store's one run across hosts (tasks/.run, beside the fence), with a heartbeat; then
        record where the database is, so every command finds it."""
        self._owner = run_owner.claim_run(self.root)
        threading.Thread(target=self._beat, name="langspec-run-heartbeat", daemon=True).start()
        before = read_database_record(self.root)
        if before is not None and before[1] != self.db:
            self._notify(f"the store's database was in {before[1]} on {before[0]}; this run keeps it in {self.db}, "
                         "and ingests the results already in tasks/ there")
        record_database(self.root, None if self.db == self.root else self.db)
        kind = network_filesystem(self.db)
        if kind is not None and self.db == self.root:
            self._notify(f"the store's database is on a network filesystem ({kind}): readers on other hosts wait for this "
                         "run's writes only where its locks reach across hosts; `--db-dir DIR` keeps it on this host's "
                         "disk (docs/store.md, \"A store on a shared filesystem\")")

    def _beat(self) -> None:
        while not self._stop_beating.wait(run_owner.RUN_HEARTBEAT_S):
            if not run_owner.beat_run(self.root, self._owner):
                self._notify(f"another run has taken the store {self.root} over: this run's tasks can no longer commit")
                return

    @contextmanager
    def _open(self):
        """The database, opened read-write for one write and closed after (DuckDB then checkpoints):
        between writes any process may read it. Waits for readers, saying for whom after a while."""
        started, self._noted = time.monotonic(), -1
        with gate(self.db, fcntl.LOCK_EX, lambda: self._waited(started, "another process"), create=True) as mark:
            check_wal(self.db, mark)
            mark_writing(mark)
            try:
                self.con = connect_waiting(self.root, self.db, lambda holder: self._waited(started, holder),
                                           config={"storage_compatibility_version": STORAGE_VERSION})
                reach_tasks_only(self.con, self.root)
            except BaseException:
                if self.con is not None:
                    self.con.close()
                    self.con = None
                self._closed(mark)
                raise
            try:
                yield self.con
            finally:
                con, self.con = self.con, None
                con.close()
                self._closed(mark)

    def _closed(self, mark) -> None:
        """The database is closed: the mark goes unless DuckDB left its log (a checkpoint that failed,
        on a full disk say), which the next open must replay."""
        if not wal_files(self.db):
            clear_mark(mark)

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
            found = schema_version(con)
            if found is not None and found != SCHEMA_VERSION and not migratable(found):
                raise StoreError(
                    f"the store {self.root} has schema version {found}, this langspec reads version {SCHEMA_VERSION}; "
                    "use a new --store DIR (or the langspec version that wrote it)"
                )
            with task_rows.transaction(con):
                tables, *views_and_macros = SCHEMA_FILES
                check_tables(con, self.root, self.db)  # before any statement reads them: a migration trusts what it finds
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
            pending = first_row(con, "SELECT value FROM meta WHERE key = 'compact'") is not None
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
        path, fresh = self.db / DB_FILE, self.db / COMPACTING_FILE
        started = time.monotonic()
        with gate(self.db, fcntl.LOCK_EX, lambda: self._waited(started, "another process"), create=True):
            try:
                fresh.unlink(missing_ok=True)  # a copy that a killed rewrite left
                con = duckdb.connect(str(fresh), config={"storage_compatibility_version": STORAGE_VERSION})
                try:
                    con.execute("ATTACH ? AS migrated (READ_ONLY)", [str(path)])
                    con.execute(f'COPY FROM DATABASE migrated TO "{first_row(con, "SELECT current_database()")[0]}"')
                    con.execute("DETACH migrated")
                    con.execute("DELETE FROM meta WHERE key = 'compact'")
                finally:
                    con.close()
                os.chmod(fresh, path.stat().st_mode)
                os.replace(fresh, path)
                directory = os.open(self.db, os.O_RDONLY)
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
        with self._open() as con, task_rows.transaction(con):
            # The lock guarantees that a run still marked running was ended by a crash or a kill.
            for (ended,) in con.sql("SELECT run_id FROM runs WHERE status = 'running'").fetchall():
                task_rows.leave_queued(con, ended)
            con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
            run_id = first_row(con, "SELECT coalesce(max(run_id), 0) + 1 FROM runs")[0]
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), NULL, 'running')",
                [run_id, spec_name, spec_path, spec_text, overrides, spec_json, spec_hash, git_commit, json.dumps(versions), host,
                 os.getpid(), executor],
            )
            rows = [[run_id, label, key] for label, keys in points for key in keys]
            if rows:
                con.executemany("INSERT INTO points VALUES (?, ?, ?)", rows)
            for record in queued:
                task_rows.insert_task(con, run_id, record)
        return run_id

    def finish_run(self, run_id: int, status: str) -> None:
        with self._open() as con, task_rows.transaction(con):
            task_rows.leave_queued(con, run_id)
            con.execute("UPDATE runs SET status = ?, finished_at = now() WHERE run_id = ?", [status, run_id])

    def record_task(self, run_id: int, record: TaskRecord) -> None:
        with self._open() as con, task_rows.transaction(con):
            task_rows.insert_task(con, run_id, record)

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
        task_rows.check_key(key)
        manifest = artifacts.read_manifest(self.root, key)
        if manifest is None:
            raise StoreError(f"task {name} has no readable {artifacts.SUCCESS_FILE}; `langspec verify --repair` sets it aside")
        listed = [Path(entry["path"]) for entry in manifest["files"]]
        files = {path.stem: artifacts.task_dir(self.root, key) / path for path in listed
                 if path.parent == Path("tables") and path.suffix == ".parquet"}
        missing = [table for table in tables if table not in files]
        if missing:
            raise StoreError(f"task {name} lacks its table(s) {', '.join(missing)}; `langspec verify --repair` sets it aside")
        unknown = set(files) - set(task_rows.STAGE_TABLES) - set(INFLUENCE_TABLES)
        if unknown:
            raise StoreError(f"task {name} wrote tables the store does not know: {', '.join(sorted(unknown))}")
        from store.influence import insert_influence, insert_tables  # numpy and pyarrow: a reader of the store never needs them

        counts = {}
        with self._open() as con, task_rows.transaction(con):  # an interrupt too rolls back: no half-ingested task
            task_rows.delete_task_rows(con, key)
            scores = {table: files.pop(table) for table in INFLUENCE_TABLES if table in files}
            for table, path in files.items():
                counts[table] = task_rows.insert_table(con, table, key, path)
            if set(scores) == set(INFLUENCE_TABLES):  # as a TracIn task writes them: copied
                counts.update(insert_tables(con, key, {table: ("parquet", path) for table, path in scores.items()}))
            elif set(scores) == {"influence"}:  # a task directory from before #13: text ids, numbered and ranked here
                counts["influence"] = insert_influence(con, key, task_rows.text_scores(scores["influence"]))
            elif scores:
                raise StoreError(f"task {name} lacks its table(s) {', '.join(sorted(set(INFLUENCE_TABLES) - set(scores)))}; "
                                 "`langspec verify --repair` sets it aside")
            con.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, now())", [key, stage, name])
            if record is not None:
                task_rows.insert_task(con, run_id, record)
        return counts

    def forget(self, key: str) -> None:
        """Delete a task's rows from every task table: its result is gone or damaged."""
        task_rows.check_key(key)
        with self._open() as con, task_rows.transaction(con):
            task_rows.delete_task_rows(con, key)
            con.execute("DELETE FROM results WHERE task_key = ?", [key])

    def close(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._owner is not None:
            self._stop_beating.set()
            run_owner.release_run(self.root, self._owner)
            self._owner = None
        if not self._lock.closed:
            self._lock.seek(0)
            self._lock.truncate()
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()



def package_version(name: str) -> str:
    from importlib import metadata  # here, not at the top: a reader of the store need not load it

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"
