"""The artifact layout of a store, and the rules that keep it safe when processes die.

    <root>/tasks/<key>/                  a complete task: its files, `_SUCCESS.json` last
    <root>/tasks/.attempts/<key>.<id>/   one attempt at a task while it runs (one per attempt, never shared)
    <root>/tasks/.progress/<key>.json    a running task's progress
    <root>/tasks/.fence                  the token of the run that owns the store now
    <root>/tasks/.run                    the driver that runs the store now (host, pid); its mtime the heartbeat

A run writes a fresh token into `.fence` when it starts. An attempt commits (renames its directory
into place) only while `.fence` still holds its run's token, under a lock on that file, and never
over a complete directory: a worker left behind by a killed driver can never commit. A task counts
as complete only when its manifest matches the disk and lists every table its stage declares.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from store.errors import StoreError

SUCCESS_FILE = "_SUCCESS.json"
OWNER_FILE = "_OWNER.json"  # in an attempt directory: who works there; its mtime is the heartbeat
RESUME_FILE = "resume.pt"  # a resumable stage's state; an attempt holding it can be taken over
# What a TracIn task hands to the store since #13 (store/influence.py: its example numbers, TracInCP
# and ranks computed in the task, where the scores already are), each in the task's own numbers from 0.
INFLUENCE_TABLES = ("influence_examples", "influence", "tracin_cp", "proponents")
HASH_LIMIT = 256 * 1024**2  # files up to this size get a sha256 in the manifest; larger ones a size
STALE_S = 30.0  # an attempt on another host whose heartbeat is older than this is dead
# An attempt on another host that Ray has given up on (its node dead, or its Ray task retried) is dead once
# its heartbeat (every second) has also been silent this long: Ray's view can be wrong about a worker cut
# off from the cluster but still writing to the shared store, and that worker's beats keep its attempt.
QUIET_S = 3.0


# A task's key: the sha256 its compiler gives it. A name read from disk is used as a key only if it is
# one: it names directories and is bound into SQL, and a planted directory name must be neither.
TASK_KEY = re.compile(r"[0-9a-f]{64}")


def is_task_key(name: str) -> bool:
    return TASK_KEY.fullmatch(name) is not None


def task_dir(root: Path, key: str) -> Path:
    return Path(root) / "tasks" / key


def open_private(path: Path):
    """`open(path, "a+")`, a new file created readable and writable by its owner alone: a lock file
    that other users can neither open nor hold (holding a shared store's lock stalls its runs). Never
    through a link: one planted in its place would have its target emptied."""
    return open(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600), "a+")


# What flock(2) gives where a filesystem has no working locks: NFS without its lock service, Lustre
# mounted without `flock`, some FUSE and SMB mounts.
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def lock(handle, operation: int, path: Path) -> None:
    """fcntl.flock on one of the store's lock files (the writer's lock, the gate, the fence). One run
    per store, and readers that wait for a write to end, rest on these locks, so a filesystem without
    them is refused (StoreError, exit 2) rather than used unguarded. BlockingIOError (another process
    holds the lock) passes through to the caller."""
    try:
        fcntl.flock(handle, operation)
    except BlockingIOError:
        raise
    except OSError as err:
        if err.errno not in NO_LOCKS:
            raise
        raise StoreError(f"the filesystem holding {path} gives no working file locks ({err.strerror}): langspec keeps one "
                         "run per store, and lets readers wait for a write, through them. Put the store on a local disk, or "
                         "on a mount with locking (NFS with its lock service, Lustre mounted with -o flock): docs/store.md, "
                         "\"A store on a shared filesystem\"") from None


def tables_dir(root: Path, key: str) -> Path:
    return task_dir(root, key) / "tables"


def table_path(task: Path, table: str) -> Path:
    """Where a task directory keeps a table for the store."""
    return Path(task) / "tables" / f"{table}.parquet"


def progress_path(root: Path, key: str) -> Path:
    return Path(root) / "tasks" / ".progress" / f"{key}.json"


def attempts_dir(root: Path) -> Path:
    return Path(root) / "tasks" / ".attempts"


def attempt_started(root: Path, key: str, token: str) -> bool:
    """Whether a worker of the run with this token has begun the task (made its attempt directory)."""
    return any(attempts_dir(root).glob(f"{_attempt_prefix(key, token)}-*"))


def _attempt_prefix(key: str, token: str) -> str:
    """The start of the name of every attempt directory of a task in one run."""
    return f"{key}.{token[:8]}"


def new_token() -> str:
    return uuid.uuid4().hex


# --- the fence ------------------------------------------------------------------------------


@contextmanager
def _fence_locked(root: Path):
    path = Path(root) / "tasks" / ".fence"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_private(path) as handle:
        lock(handle, fcntl.LOCK_EX, path)
        try:
            handle.seek(0)
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def set_fence(root: Path, token: str) -> None:
    """Make `token`'s run the store's owner: attempts of every earlier run can no longer commit."""
    with _fence_locked(root) as handle:
        handle.truncate(0)
        handle.write(token)
        handle.flush()
        os.fsync(handle.fileno())


def fence_token(root: Path) -> str:
    try:
        return (Path(root) / "tasks" / ".fence").read_text().strip()
    except OSError:
        return ""


# --- the run's owner ------------------------------------------------------------------------
# One run per store, across hosts: the writer's lock (`.lock`) sits beside the database, which may be
# on the driver's own disk (--db-dir), so the shared tasks/ holds who runs the store now, taken and
# given back under the fence's lock. Its mtime is the driver's heartbeat. A record whose driver is
# gone is taken over: on this host when its pid is gone, on any host once its heartbeat is older
# than RUN_STALE_S. That bound covers a heartbeat missed, NFS attribute caching (an open revalidates
# them, and a stat may lag up to `acregmax`, 60 s) and clocks of the hosts up to half a minute apart.
RUN_OWNER_FILE = ".run"
RUN_HEARTBEAT_S = 10.0
RUN_STALE_S = 120.0


@dataclass(frozen=True)
class RunOwner:
    """The driver that runs a store now: `tasks/.run`."""

    host: str
    pid: int
    token: str  # this driver's own: a record is given back only by the driver that wrote it
    heartbeat: float = 0.0  # the record's mtime

    def gone(self) -> bool:
        aged = time.time() - self.heartbeat > RUN_STALE_S
        return aged or (self.host == socket.gethostname() and not pid_alive(self.pid))

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, its heartbeat {max(0.0, time.time() - self.heartbeat):.0f} s ago"


def _run_owner_path(root: Path) -> Path:
    return Path(root) / "tasks" / RUN_OWNER_FILE


def read_run_owner(root: Path) -> RunOwner | None:
    try:
        with open(_run_owner_path(root)) as handle:  # an open revalidates NFS's cached attributes
            data = json.loads(handle.read())
            return RunOwner(str(data["host"]), int(data["pid"]), str(data["token"]), os.fstat(handle.fileno()).st_mtime)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def claim_run(root: Path) -> RunOwner:
    """Make this process the store's run owner, taking over a record whose driver is gone. Raises
    StoreError naming the other driver while one runs the store, from this host or another."""
    with _fence_locked(root):
        found = read_run_owner(root)
        if found is not None and not found.gone():
            raise StoreError(f"the store {root} is in use by another langspec run ({found.describe()}); wait for it to "
                             "finish or use another --store DIR. A driver that died is taken over once its pid is gone "
                             f"(same host) or its heartbeat is {RUN_STALE_S:.0f} s old (another host): docs/store.md")
        me = RunOwner(socket.gethostname(), os.getpid(), new_token())
        _write_atomic(_run_owner_path(root), json.dumps({"host": me.host, "pid": me.pid, "token": me.token}))
    return me


def beat_run(root: Path, me: RunOwner) -> bool:
    """Refresh the owner's heartbeat; False once the record is no longer this driver's (taken over)."""
    found = read_run_owner(root)
    if found is None or found.token != me.token:
        return False
    try:
        os.utime(_run_owner_path(root))
    except OSError:
        pass  # a missed beat: RUN_STALE_S allows for several
    return True


def release_run(root: Path, me: RunOwner) -> None:
    with _fence_locked(root):
        found = read_run_owner(root)
        if found is not None and found.token == me.token:
            _run_owner_path(root).unlink(missing_ok=True)


class FencedOut(Exception):
    """The attempt's run no longer owns the store (its driver died, another run started)."""


# --- attempts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    token: str  # the run's
    pid: int
    host: str
    ray_node: str | None = None  # the Ray node and task the owner ran in (hex ids), if it ran in Ray
    ray_task: str | None = None

    def alive(self, heartbeat: float, retrying: str | None = None) -> bool:
        """False only when provably dead: a gone process on this host; elsewhere one that Ray has given up
        on (lost_in_ray) and that has been silent QUIET_S, or one silent STALE_S (Ray cannot tell)."""
        if self.pid < 0:  # released
            return False
        if self.host == socket.gethostname():
            return pid_alive(self.pid)
        silent = time.time() - heartbeat
        return silent < STALE_S and (silent < QUIET_S or not self.lost_in_ray(retrying))

    def lost_in_ray(self, retrying: str | None = None) -> bool:
        """Whether Ray, as this process sees it, has given up on the owner: its node is dead, or `retrying`
        (the Ray task this process runs) is the owner's task, which Ray retries only once its worker is gone
        (the owner learns that within a second, the cluster a node's death only after its health checks
        fail, about 15 s). False when Ray cannot tell: no Ray here, or a node of another cluster."""
        if self.ray_task is not None and self.ray_task == retrying:
            return True
        return self.ray_node is not None and ray_node_alive(self.ray_node) is False


def ray_node_alive(node: str) -> bool | None:
    """Ray's view of whether a node of its cluster is alive; None when this process is in no Ray cluster
    (the local executor) or the cluster does not know the node."""
    ray = sys.modules.get("ray")  # a Ray worker has it; a process that never used Ray has no view to ask
    if ray is None or not ray.is_initialized():
        return None
    try:
        return {found["NodeID"]: found["Alive"] for found in ray.nodes()}.get(node)
    except Exception:  # the cluster's control service is unreachable: it cannot tell
        return None


def ray_place() -> dict:
    """This process's Ray node and task (hex ids) for its owner record; empty outside a Ray worker."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    context = ray.get_runtime_context()
    return {"ray_node": context.get_node_id(), "ray_task": context.get_task_id()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has finished: nothing will write any more
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def read_owner(attempt: Path) -> tuple[Owner, float] | None:
    try:
        path = attempt / OWNER_FILE
        data = json.loads(path.read_text())
        if data.get("released"):
            return Owner(data["token"], -1, data["host"]), 0.0
        return Owner(data["token"], data["pid"], data["host"], data.get("ray_node"), data.get("ray_task")), path.stat().st_mtime
    except (OSError, ValueError, KeyError):
        return None


def is_dead(attempt: Path, retrying: str | None = None) -> bool:
    """Whether an attempt's owner is provably dead; `retrying`: the Ray task asking, if any (Owner.alive)."""
    found = read_owner(attempt)
    if found is None:  # set aside to be deleted, or its owner died between mkdir and claiming it
        try:
            return ".discarded-" in attempt.name or time.time() - attempt.stat().st_mtime > STALE_S
        except OSError:
            return True
    owner, heartbeat = found
    return not owner.alive(heartbeat, retrying)


def start_attempt(root: Path, key: str, token: str, resumable: bool) -> tuple[Path, bool]:
    """A directory of this attempt's own; for a resumable stage, a dead attempt's state taken over.

    Returns (directory, resumed). Taking over is a rename, so two attempts never share one."""
    base = attempts_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    mine = base / f"{_attempt_prefix(key, token)}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    place = ray_place()
    resumed = False
    if resumable:
        candidates = [earlier for earlier in base.glob(f"{key}.*") if (earlier / RESUME_FILE).is_file()]
        for earlier in sorted(candidates, key=lambda path: _mtime(path / RESUME_FILE), reverse=True):
            _wait_until_quiet(earlier, place.get("ray_task"))
            if is_dead(earlier, place.get("ray_task")):
                try:
                    os.rename(earlier, mine)
                    resumed = True
                    break
                except OSError:  # another attempt took it first
                    continue
    mine.mkdir(exist_ok=resumed)
    (mine / OWNER_FILE).write_text(json.dumps({"token": token, "pid": os.getpid(), "host": socket.gethostname(), **place}))
    return mine, resumed


def _wait_until_quiet(attempt: Path, retrying: str | None) -> None:
    """An attempt on another host that Ray has given up on: wait (at most QUIET_S) until its heartbeat has
    been silent QUIET_S. Ray retries a task within a second or two of its node's loss, often sooner."""
    found = read_owner(attempt)
    if found is None or found[0].pid < 0 or found[0].host == socket.gethostname() or not found[0].lost_in_ray(retrying):
        return
    time.sleep(min(QUIET_S, max(0.0, found[1] + QUIET_S - time.time())))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def heartbeat(attempt: Path) -> None:
    try:
        os.utime(attempt / OWNER_FILE)
    except OSError:
        pass


def release(attempt: Path) -> None:
    """Give up an attempt whose process lives on (in-process runs): its state may be taken over."""
    try:
        data = json.loads((attempt / OWNER_FILE).read_text())
        (attempt / OWNER_FILE).write_text(json.dumps({**data, "released": True}))
    except (OSError, ValueError):
        pass


def clean_attempts(root: Path, complete) -> list[Path]:
    """Remove attempts whose owner is dead, except resumable state of a task not yet complete.

    complete(key) says whether a task is done. Attempts of live owners (an orphan still stopping)
    are left alone. Returns what was removed."""
    removed = []
    for attempt in sorted(attempts_dir(root).glob("*")):
        key = attempt.name.split(".", 1)[0]
        if not is_dead(attempt):
            continue
        if (attempt / RESUME_FILE).is_file() and not complete(key):
            continue
        shutil.rmtree(attempt, ignore_errors=True)
        removed.append(attempt)
    shutil.rmtree(Path(root) / "tasks" / ".progress", ignore_errors=True)
    return removed


# --- the manifest and the commit ------------------------------------------------------------


def file_entries(directory: Path) -> list[dict]:
    """Every file with its size, and its sha256 where that is cheap."""
    entries = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name in (SUCCESS_FILE, OWNER_FILE):
            continue
        size = path.stat().st_size
        entries.append({"path": str(path.relative_to(directory)), "bytes": size,
                        "sha256": _sha256(path) if size <= HASH_LIMIT else None})
    return entries


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# A name with one of these in it holds a secret (HF_TOKEN, WANDB_API_KEY, AWS_SECRET_ACCESS_KEY): its value
# never goes into the store, which other users may read.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH|PRIVATE|COOKIE|SESSION", re.IGNORECASE)


def env_record(names: tuple[str, ...] | list[str]) -> dict:
    """The manifest's record of the environment a task ran with: `env`, each variable's value here (None when
    unset), and `env_withheld`, the secret-looking names, whose values are never recorded."""
    withheld = [name for name in names if SECRET_NAME.search(name)]
    return {"env": {name: os.environ.get(name) for name in names if name not in withheld}, "env_withheld": withheld}


def seal(directory: Path, manifest: dict) -> dict:
    """Write `_SUCCESS.json`: the manifest's fields plus every file of the directory; returns it."""
    (directory / OWNER_FILE).unlink(missing_ok=True)
    manifest = {**manifest, "files": file_entries(directory)}
    _write_atomic(directory / SUCCESS_FILE, json.dumps(manifest, indent=1))
    return manifest


def commit(attempt: Path, root: Path, key: str, token: str, manifest: dict) -> bool:
    """Seal the attempt and rename it into place, if this run still owns the store.

    Returns False when a complete directory was already there (a twin finished first); raises
    FencedOut when another run owns the store."""
    manifest = seal(attempt, manifest)
    final = task_dir(root, key)
    with _fence_locked(root) as fence:
        if fence.read().strip() != token:
            raise FencedOut(f"the store {root} belongs to another run now; this attempt's result is discarded")
        if final.exists():
            if check_complete(root, key, manifest.get("tables", ())) is None:
                shutil.rmtree(attempt)
                return False
            discard(root, key)  # damaged: the driver set it aside already, or a crash left it half-moved
        os.rename(attempt, final)
    return True


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def discard(root: Path, key: str) -> None:
    """Move a task's directory out of the way (then delete it): it no longer counts as done."""
    final = task_dir(root, key)
    trash = attempts_dir(root) / f"{key}.discarded-{uuid.uuid4().hex[:6]}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(final, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


# --- checking what is on disk ---------------------------------------------------------------


def read_manifest(root: Path, key: str) -> dict | None:
    try:
        return json.loads((task_dir(root, key) / SUCCESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def check_complete(root: Path, key: str, tables=(), hashes: bool = False) -> str | None:
    """None if the task is complete; else why not, in words ("file tables/x.parquet is missing").

    Sizes are always compared; contents (sha256) only with hashes=True (`langspec verify`)."""
    directory = task_dir(root, key)
    if not directory.is_dir():
        return "no result"
    manifest_path = directory / SUCCESS_FILE
    if not manifest_path.is_file():
        return f"{SUCCESS_FILE} is missing"
    manifest = read_manifest(root, key)
    if manifest is None or not isinstance(manifest.get("files"), list):
        return f"{SUCCESS_FILE} is damaged"
    for entry in manifest["files"]:
        wrong = _wrong_entry(entry)
        if wrong:
            return f"{SUCCESS_FILE} is damaged: {wrong}"
    listed = {entry["path"] for entry in manifest["files"]}
    for table in tables:
        if f"tables/{table}.parquet" not in listed:
            return f"table {table} is not in its manifest"
    for entry in manifest["files"]:
        path = directory / entry["path"]
        try:
            found = path.lstat()
        except FileNotFoundError:
            return f"file {entry['path']} is missing"
        if not stat.S_ISREG(found.st_mode) or not path.resolve().is_relative_to(directory.resolve()):
            return f"{entry['path']} is not a regular file of the task's"  # a link or a device: never read
        size = found.st_size
        if size != entry["bytes"]:
            return f"file {entry['path']} has {size} bytes, its manifest says {entry['bytes']}"
        if hashes and entry.get("sha256") and _sha256(path) != entry["sha256"]:
            return f"file {entry['path']} does not match its sha256"
    return None


def _wrong_entry(entry: object) -> str | None:
    """Why a manifest entry is none a task writes, or None: a path relative to its task directory and
    inside it, with a size. A tampered manifest must not make `verify` read `/dev/zero` or `../..`."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not isinstance(entry.get("bytes"), int):
        return "an entry without a path and a size"
    path = entry["path"]
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts or "\x00" in path:
        return f"the entry {path!r} names a file outside its task directory"
    return None


def is_complete(root: Path, key: str, tables=()) -> bool:
    return check_complete(root, key, tables) is None


def disk_nearly_full(path: Path) -> bool:
    """Less than 1% or 64 MiB free: torch reports a short write as "unexpected pos", not ENOSPC."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return False
    return usage.free < max(64 * 1024**2, usage.total // 100)


def no_space(err: BaseException) -> bool:
    """A full disk, however the library that wrote reports it (OSError, or a RuntimeError of torch,
    safetensors or DuckDB that carries the system's message)."""
    return (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or "no space left on device" in str(err).lower()
