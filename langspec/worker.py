"""What runs in a worker (a Ray task, or the driver itself with the local executor): one task in an
attempt directory of its own, watched by a heartbeat that ends it when its run is gone, committed
into place when it succeeds, its error returned with the traceback when it fails."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from langspec.progress import ProgressFile
from runners.context import TaskContext
from runners.inputs import Inputs
from runners.stage import stage
from store import artifacts, attempts


@dataclass(frozen=True)
class TaskCall:
    """What travels to a worker: small and picklable."""

    key: str
    name: str
    stage: str
    params: BaseModel
    inputs: dict[str, str]  # role -> upstream key
    store_root: str
    num_cpus: float
    num_gpus: float
    tables: tuple[str, ...]  # what the stage must hand to the store
    token: str  # the run's: the attempt commits only while the store's fence holds it
    driver_pid: int
    driver_host: str
    env: tuple[str, ...] = ()  # the environment variables the driver passes: recorded in the manifest


ORPHANED_EXIT = 70  # a worker whose run is gone ends itself with this code
# The priority of the tasks of a Ray langspec starts: the work the user asked for, so that of any of
# their processes (0), not Ray's default 15, which left a task 6% of a CPU beside one busy process.
WORKER_NICENESS = 0
# What the stages import (torch, transformers' models, the methods: about 2.4 s of a worker's CPU),
# imported by each worker of the Ray langspec starts as Ray starts it, not inside its first task:
# Ray prestarts a worker per CPU while the driver plans the run, so a worker that takes its first
# task later (a second prune beside the first) takes it warm. The cost: an idle worker holds 277 MB
# of its own instead of 40 (one per CPU, whether the run has that many tasks at once or not), so a
# host of more CPUs keeps at most langspec.backends.IDLE_WORKERS_MAX of them.
WORKER_PRELOAD = ("torch", "runners.methods.models", "runners.methods.training", "runners.methods.pruning",
                  "runners.methods.influence")


def run_task(call: TaskCall, report=None) -> dict:
    """Run one stage in an attempt directory of its own, then commit it into place; `_SUCCESS.json` last.

    Runs in the worker. An error in the stage is returned with its traceback, not raised, so the
    driver records it the same way under every backend. In a worker process of its own, a watchdog
    ends the process within seconds once the run that started it is gone.
    """
    preloaded = all(name in sys.modules for name in WORKER_PRELOAD)  # before this task imported anything
    import torch

    root = Path(call.store_root)
    started = datetime.now()
    threads = max(1, int(call.num_cpus))
    torch.set_num_threads(threads)  # an oversubscribed 2-core machine runs 50x slower
    device = "cuda:0" if call.num_gpus > 0 and torch.cuda.is_available() else "cpu"
    progress = ProgressFile(root, call.key)
    progress.write(0, 0, "started")  # the driver now knows the task left the queue
    module = stage(call.stage)
    resumable = module.RESUMABLE
    workdir = None
    watchdog = None
    try:
        # An attempt that died (a killed driver or worker) may have left state a resumable stage
        # goes on from; it is taken over only once its owner is provably dead.
        workdir, _ = attempts.start_attempt(root, call.key, call.token, resumable)
        if (os.getpid(), socket.gethostname()) != (call.driver_pid, call.driver_host):
            watchdog = _Watchdog(root, call, workdir, resumable)
            watchdog.start()
        inputs = Inputs({role: artifacts.task_dir(root, key) for role, key in call.inputs.items()})
        ctx = TaskContext(device=device, num_cpus=threads, report=_both(progress.write, report) if report else progress.write)
        summary = module.run(call.params, inputs, workdir, ctx)
        missing = [t for t in call.tables if not artifacts.table_path(workdir, t).is_file()]
        if missing:
            raise RuntimeError(f"stage {call.stage} did not write its table(s) {', '.join(missing)}")
        finished = datetime.now()
        manifest = {
            "key": call.key, "name": call.name, "stage": call.stage, "summary": summary,
            "tables": list(call.tables), "device": device, "host": socket.gethostname(), "pid": os.getpid(),
            "threads": torch.get_num_threads(), "niceness": os.nice(0), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "preloaded": preloaded, **artifacts.env_record(call.env),
            "token": call.token, "started_at": started.isoformat(), "finished_at": finished.isoformat(),
            "seconds": (finished - started).total_seconds(),
        }
        artifacts.commit(workdir, root, call.key, call.token, manifest)  # FencedOut if the run is gone
        return {"ok": True, **manifest}
    except Exception as err:
        finished = datetime.now()
        if workdir is not None and resumable and (artifacts.no_space(err) or artifacts.disk_nearly_full(root)):
            attempts.release(workdir)  # the next run resumes from the last finished epoch
        elif workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        return {
            "ok": False, "error": _error_text(call, err, device), "traceback": _traceback_below(err),
            "device": device, "started_at": started.isoformat(), "finished_at": finished.isoformat(),
            "seconds": (finished - started).total_seconds(),
        }
    except BaseException:  # an interrupt: what a resumable stage finished stays for the next run
        if workdir is not None and resumable:
            attempts.release(workdir)
        elif workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        if watchdog is not None:
            watchdog.stop()
        progress.remove()


def _both(to_file, to_display):
    """A report for the file that `langspec status` reads and for this process's display (the local executor)."""

    def report(done: int, total: int, note: str) -> None:
        to_file(done, total, note)
        to_display(done, total, note)

    return report


class _Watchdog(threading.Thread):
    """Ends a worker process whose run is gone: its driver died, or another run owns the store.

    Ray workers have their own process group, so they outlive a driver killed with its group; left
    alone they would go on writing. Also keeps the attempt's heartbeat."""

    def __init__(self, root: Path, call: TaskCall, attempt: Path, resumable: bool, period: float = 1.0):
        super().__init__(name=f"langspec-watchdog-{call.key[:8]}", daemon=True)
        self._root, self._call, self._attempt, self._resumable = root, call, attempt, resumable
        self._period = period
        self._stopped = threading.Event()

    def run(self) -> None:
        local = self._call.driver_host == socket.gethostname()
        while not self._stopped.wait(self._period):
            attempts.heartbeat(self._attempt)
            token = artifacts.fence_token(self._root)
            if (token and token != self._call.token) or (local and not attempts.pid_alive(self._call.driver_pid)):
                if not self._resumable:  # nothing here is worth keeping; a resumable state is taken over
                    shutil.rmtree(self._attempt, ignore_errors=True)
                os._exit(ORPHANED_EXIT)

    def stop(self) -> None:
        self._stopped.set()


def _error_text(call: TaskCall, err: BaseException, device: str) -> str:
    error = f"{type(err).__name__}: {err}"
    if _out_of_memory(err):
        fields = stage(call.stage).MEMORY_FIELDS
        return (f"{call.name} ran out of memory on {device} ({' '.join(error.split())}); it needs less with smaller "
                + " or ".join(fields) + (", or a smaller model" if call.stage != "data" else ""))
    if artifacts.no_space(err) or artifacts.disk_nearly_full(Path(call.store_root)):
        where = f" writing {err.filename}" if getattr(err, "filename", None) else ""
        return (f"{call.name}: no space left on the device{where}; free space on the store's disk ({call.store_root}), "
                "then run again: finished tasks are kept, fine-tuning resumes from its last finished epoch and TracIn "
                "from its last checkpoint")
    return error


def _traceback_below(err: BaseException) -> str:
    """The traceback without its last line, which repeats the error the record already holds."""
    lines = traceback.format_exception(err)
    return "".join(lines[:-1]).rstrip()


def _out_of_memory(err: BaseException) -> bool:
    """A GPU or CPU allocation that failed (torch raises a RuntimeError for the CPU)."""
    import torch

    text = str(err)
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text or "out of memory" in text
