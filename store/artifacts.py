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

Attempts and when their owners are dead: store.attempts; the `.run` record: store.run_owner.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path

from store.errors import StoreError

SUCCESS_FILE = "_SUCCESS.json"
OWNER_FILE = "_OWNER.json"  # in an attempt directory: who works there; its mtime is the heartbeat
RESUME_FILE = "resume.pt"  # a resumable stage's state; an attempt holding it can be taken over
# What a TracIn task hands to the store since #13 (store/influence.py: its example numbers, TracInCP
# and ranks computed in the task, where the scores already are), each in the task's own numbers from 0.
INFLUENCE_TABLES = ("influence_examples", "influence", "tracin_cp", "proponents")
HASH_LIMIT = 256 * 1024**2  # files up to this size get a sha256 in the manifest; larger ones a size


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


def new_token() -> str:
    return uuid.uuid4().hex


# --- the fence ------------------------------------------------------------------------------


@contextmanager
def fence_locked(root: Path):
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
    with fence_locked(root) as handle:
        handle.truncate(0)
        handle.write(token)
        handle.flush()
        os.fsync(handle.fileno())


def fence_token(root: Path) -> str:
    try:
        return (Path(root) / "tasks" / ".fence").read_text().strip()
    except OSError:
        return ""


class FencedOut(Exception):
    """The attempt's run no longer owns the store (its driver died, another run started)."""


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
    write_atomic(directory / SUCCESS_FILE, json.dumps(manifest, indent=1))
    return manifest


def commit(attempt: Path, root: Path, key: str, token: str, manifest: dict) -> bool:
    """Seal the attempt and rename it into place, if this run still owns the store.

    Returns False when a complete directory was already there (a twin finished first); raises
    FencedOut when another run owns the store."""
    manifest = seal(attempt, manifest)
    final = task_dir(root, key)
    with fence_locked(root) as fence:
        if fence.read().strip() != token:
            raise FencedOut(f"the store {root} belongs to another run now; this attempt's result is discarded")
        if final.exists():
            if check_complete(root, key, manifest.get("tables", ())) is None:
                shutil.rmtree(attempt)
                return False
            discard(root, key)  # damaged: the driver set it aside already, or a crash left it half-moved
        os.rename(attempt, final)
    return True


def write_atomic(path: Path, text: str) -> None:
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
