"""Attempts at a task, `tasks/.attempts/<key>.<id>/` (one directory per attempt, never shared), and
their owners (`_OWNER.json`: run token, pid, host, Ray node and task; its mtime the heartbeat): when an
owner is provably dead, how a resumable stage takes a dead attempt's state over, and clearing them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from store.artifacts import OWNER_FILE, RESUME_FILE, attempts_dir

STALE_S = 30.0  # an attempt on another host whose heartbeat is older than this is dead
# An attempt on another host that Ray has given up on (its node dead, or its Ray task retried) is dead once
# its heartbeat (every second) has also been silent this long: Ray's view can be wrong about a worker cut
# off from the cluster but still writing to the shared store, and that worker's beats keep its attempt.
QUIET_S = 3.0


def attempt_started(root: Path, key: str, token: str) -> bool:
    """Whether a worker of the run with this token has begun the task (made its attempt directory)."""
    return any(attempts_dir(root).glob(f"{_attempt_prefix(key, token)}-*"))


def _attempt_prefix(key: str, token: str) -> str:
    """The start of the name of every attempt directory of a task in one run."""
    return f"{key}.{token[:8]}"


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
