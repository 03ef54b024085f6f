"""Connections to a store's database: the read-only one every reader uses (it reaches no file but
the database), the wait for a file another process holds, the gate that keeps a stream of readers
from starving the writer, and what a damaged file looks like.

DuckDB locks its file per process: while one process has it open read-write, no other can open it,
even read-only, and the other way round. `.writing`, beside the database (in the store, or where
`run --db-dir` put it: database_dir), is the gate: the writer holds it
exclusively while it opens, writes and closes the database, a reader holds it shared only while it
opens its connection.

The gate is also the writer's mark: the writer writes its pid into `.writing` before it opens the
database and empties it after a clean close. A write-ahead log (`langspec.duckdb.wal*`) is
replayed into the store by the next open, and DuckDB lets any connection write one, even a read-only
one with no file access (`COPY ... TO '<db>.wal' (FORMAT blob)`). A log beside an empty mark was
left by no writer of langspec, and every open, reader or writer, refuses it (check_wal): a writer
killed after a commit leaves its mark, so its log is replayed as it must be."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from store import artifacts
from store.errors import StoreError
from store.migrations import SCHEMA_VERSION, migratable, schema_version

DB_FILE = "langspec.duckdb"
LOCK_FILE = ".lock"
GATE_FILE = ".writing"
# In a store whose database lives outside it (`langspec run --db-dir DIR`): on which host, in which
# directory. Every command finds the database through it, so only `run` takes the option.
DB_RECORD = ".database"
# How long a reader waits for the writer's transaction (ingesting a paper-size TracIn task takes
# seconds) before it says who holds the store.
READ_WAIT_S = 120.0


def first_row(con: duckdb.DuckDBPyConnection, sql: str, **params) -> tuple | None:
    """The first row of a query (DuckDB 2.0 relations have no fetchone())."""
    rows = con.sql(sql, params=params or None).limit(1).fetchall()
    return rows[0] if rows else None


def quoted(root: str | Path) -> str:
    """A store's path as a shell word: hints are pasted into a shell."""
    return shlex.quote(str(root))


def not_a_directory(root: str | Path) -> str:
    """What to say of a --store that names a file (the database itself, most often)."""
    return (f"--store {root} is a file: --store takes the store's directory, the one that holds {DB_FILE} and tasks/ "
            f"(e.g. --store {quoted(Path(root).parent)})")


def database_dir(root: str | Path) -> Path:
    """The directory of a store's database and of its writer's lock and gate: the store's own, or the
    one its runs keep on the driver's disk (`run --db-dir`, DB_RECORD). A database on another host
    cannot be opened from here, and is refused with where it is."""
    found = read_database_record(root)
    if found is None:
        return Path(root)
    host, directory = found
    if host != socket.gethostname():
        raise StoreError(database_elsewhere(root, host, directory))
    return directory


def read_database_record(root: str | Path) -> tuple[str, Path] | None:
    try:
        data = json.loads((Path(root) / DB_RECORD).read_text())
        return str(data["host"]), Path(data["dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_database(root: Path, directory: Path | None) -> None:
    """Record where the store's database lives (None: in the store itself, and no record)."""
    path = Path(root) / DB_RECORD
    if directory is None:
        path.unlink(missing_ok=True)
        return
    fresh = path.with_name(DB_RECORD + ".tmp")
    fresh.unlink(missing_ok=True)
    with artifacts.open_private(fresh) as handle:
        handle.write(json.dumps({"host": socket.gethostname(), "dir": str(Path(directory).absolute())}))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(fresh, path)


def database_elsewhere(root: str | Path, host: str, directory: Path) -> str:
    return (f"the database of the store {root} is on host {host}, in {directory} (its runs' driver keeps it there: "
            f"`langspec run --db-dir`); run this command on {host}, or give it a copy: copy {quoted(directory / DB_FILE)} "
            f"into a directory here while no run writes it, and name that directory with --store. A run from this host "
            f"takes --db-dir DIR for a database of its own here (it ingests the results in {Path(root) / 'tasks'} again)")


# Filesystems whose files other hosts see too (/proc/self/mountinfo's type field).
NETWORK_FILESYSTEMS = re.compile(r"nfs4?|lustre|cifs|smb3?|gpfs|beegfs|ceph|glusterfs|fuse\..*|9p|afs|panfs|wekafs")


def network_filesystem(path: str | Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """The type of the network filesystem that holds `path` (nfs4, lustre, ...), or None for a local one."""
    target, best = os.path.realpath(path), ("", "")
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:  # "36 35 98:0 /mnt1 /mnt/parent rw,noatime - ext3 /dev/root rw,errors=continue"
        fields, _, rest = line.partition(" - ")
        mount = fields.split()[4].replace("\\040", " ") if len(fields.split()) > 4 else ""
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]) and rest.split():
            best = (mount, rest.split()[0])
    return best[1] if NETWORK_FILESYSTEMS.fullmatch(best[1]) else None


def lock_holder(root: Path) -> str:
    try:
        return (Path(root) / LOCK_FILE).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


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
    if Path(root).is_file():
        raise StoreError(not_a_directory(root))
    database = database_dir(root)
    if not (database / DB_FILE).is_file():
        where = "" if database == Path(root) else f" (its database, in {database})"
        raise StoreError(f"no store at {root}{where}: run `langspec run SPEC --store {quoted(root)}` first")
    deadline = time.monotonic() + wait_s

    def waiting(holder: str) -> bool:
        if time.monotonic() < deadline:
            return True
        raise StoreError(f"the store {root} is busy: {holder} has been writing it for over {wait_s:.0f} s; "
                         "retry later (a langspec run writes it only while it ingests a task)")

    with gate(database, fcntl.LOCK_SH, lambda: waiting(f"a langspec run (pid {lock_holder(database)})")) as handle:
        check_wal(database, handle)
        con = connect_waiting(Path(root), database, waiting, read_only=True, config=READ_ONLY_CONFIG)
    found = schema_version(con)
    if found is not None and found != SCHEMA_VERSION:
        con.close()
        how = (f"`langspec run SPEC --store {quoted(root)}` upgrades it (a cached run takes seconds)" if migratable(found)
               else "read it with the langspec version that wrote it, or use a new --store DIR")
        raise StoreError(f"the store {root} has schema version {found}, this langspec reads version {SCHEMA_VERSION}: {how}")
    return con


# DuckDB's words (1.1 to 2.0) when another process has the file open: "Could not set lock on file ...:
# Conflicting lock is held in /usr/bin/python3 (PID 1234) ..."
LOCK_CONFLICT = re.compile(r"could not set lock on file", re.IGNORECASE)
LOCK_HOLDER = re.compile(r"Conflicting lock is held in (\S+) \(PID (\d+)\)")


def connect_waiting(root: Path, database: Path, keep_waiting, **options) -> duckdb.DuckDBPyConnection:
    """duckdb.connect to the store `root`'s database, in the directory `database` (database_dir),
    retried with backoff while another process holds the file; keep_waiting(holder) says whether to
    go on (or raises). A damaged file is reported as such."""
    pause = 0.01
    while True:
        try:
            return duckdb.connect(str(database / DB_FILE), **options)
        except duckdb.Error as err:
            if is_damage(err):
                raise damaged_database(root, err, database) from None
            if not LOCK_CONFLICT.search(str(err)):
                raise StoreError(f"cannot open the store {root}: {err}") from None
            found = LOCK_HOLDER.search(str(err))
            keep_waiting(f"process {found[2]} ({Path(found[1]).name})" if found else "another process")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)


@contextmanager
def gate(root: Path, mode: int, keep_waiting, create: bool = False):
    """Hold `<root>/.writing` in `mode` (LOCK_EX: the writer, LOCK_SH: a reader), polling with
    backoff; keep_waiting() says whether to go on. Yields the open file (the writer's mark), or None:
    a reader of a store it cannot write, or one that no langspec of this version wrote yet, goes
    without: DuckDB's own lock still keeps it safe. Never through a link."""
    try:
        handle = artifacts.open_private(root / GATE_FILE) if create else open(os.open(root / GATE_FILE, os.O_RDONLY | os.O_NOFOLLOW))
    except OSError as err:
        if create:
            raise StoreError(f"cannot write the store at {root}: {root / GATE_FILE}: {err.strerror}; "
                             "a store's lock files are langspec's own (never links): remove it, or choose another --store DIR") from None
        yield None
        return
    with handle:
        pause = 0.005
        while True:
            try:
                artifacts.lock(handle, mode | fcntl.LOCK_NB, root / GATE_FILE)
                break
            except BlockingIOError:
                keep_waiting()
                time.sleep(pause)
                pause = min(pause * 1.5, 0.25)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


WAL_SUFFIXES = (".wal", ".wal.recovery", ".wal.checkpoint")  # the logs DuckDB replays, and lets any connection write


def wal_files(root: Path) -> list[Path]:
    """The database's write-ahead logs that exist (links included: they are looked at, not followed)."""
    return [root / (DB_FILE + suffix) for suffix in WAL_SUFFIXES if os.path.lexists(root / (DB_FILE + suffix))]


def check_wal(root: Path, mark) -> None:
    """Refuse a write-ahead log that no writer of langspec left: one beside an empty mark (the open
    gate file, held). Without a readable mark (a reader of another user's store) there is nothing to
    tell by, and DuckDB's own rules stand."""
    logs = wal_files(root)
    if not logs or mark is None:
        return
    mark.seek(0)
    if mark.read().strip():
        return  # a writer was killed with the database open: its log holds committed results
    log = logs[0]
    raise StoreError(
        f"the store {root} has a write-ahead log that no langspec run left ({log.name}, {log.lstat().st_size} bytes): "
        "a connection other than langspec's writer wrote it (SQL through langspec.connect() can), and opening the store "
        f"would replay it into the results. Look at it (`xxd {quoted(log)} | less`); unless you know where it came from, "
        f"move it away (`mv {quoted(log)} {quoted(str(log) + '.suspect')}`) and the store opens as its last run left it"
    )


def mark_writing(mark) -> None:
    """Before the writer opens the database: a log it leaves, killed, is its own (check_wal)."""
    mark.seek(0)
    mark.truncate()
    mark.write(f"{os.getpid()} {os.uname().nodename}")
    mark.flush()
    os.fsync(mark.fileno())


def clear_mark(mark) -> None:
    """After the writer closed the database cleanly (DuckDB checkpointed and removed its log)."""
    mark.seek(0)
    mark.truncate()
    mark.flush()
    os.fsync(mark.fileno())


# What DuckDB says of a truncated or overwritten file (measured with duckdb 2.0).
DAMAGE_SIGNS = ("could not read enough bytes", "not a valid duckdb database", "corrupt database", "checksum")


def is_damage(err: Exception) -> bool:
    return any(sign in str(err).lower() for sign in DAMAGE_SIGNS)


def read_every_block(con: duckdb.DuckDBPyConnection) -> None:
    """Read every column of every table: DuckDB opens a truncated file and fails only on the
    blocks that are gone, so this is the check that a whole database is readable."""
    for (table,) in con.sql("SELECT table_name FROM duckdb_tables() WHERE NOT internal").fetchall():
        con.sql(f'SELECT bit_xor(hash(COLUMNS(*))) FROM "{table}"').fetchall()


def damaged_database(root: Path, err: Exception, database: Path | None = None) -> StoreError:
    """What to say of the store `root`'s damaged database file, in the directory `database`: by default
    where the store's record puts it (`run --db-dir`), else the store itself."""
    if database is None:
        found = read_database_record(root)
        database = Path(root) if found is None else found[1]
    return StoreError(
        f"the database {Path(database) / DB_FILE} is damaged ({' '.join(str(err).split())[:200]}); "
        f"`langspec verify --repair --store {quoted(root)}` rebuilds it from the task directories (results are kept, the run history is not)"
    )
