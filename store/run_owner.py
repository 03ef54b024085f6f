"""Who runs a store now: the driver's record `tasks/.run` (host, pid, its own token), its mtime the
driver's heartbeat, taken and given back under the fence's lock (store.artifacts)."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from store.artifacts import fence_locked, new_token, write_atomic
from store.attempts import pid_alive
from store.errors import StoreError

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
    with fence_locked(root):
        found = read_run_owner(root)
        if found is not None and not found.gone():
            raise StoreError(f"the store {root} is in use by another langspec run ({found.describe()}); wait for it to "
                             "finish or use another --store DIR. A driver that died is taken over once its pid is gone "
                             f"(same host) or its heartbeat is {RUN_STALE_S:.0f} s old (another host): docs/store.md")
        me = RunOwner(socket.gethostname(), os.getpid(), new_token())
        write_atomic(_run_owner_path(root), json.dumps({"host": me.host, "pid": me.pid, "token": me.token}))
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
    with fence_locked(root):
        found = read_run_owner(root)
        if found is not None and found.token == me.token:
            _run_owner_path(root).unlink(missing_ok=True)
