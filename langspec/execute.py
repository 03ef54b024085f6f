"""Run a task graph: one driver loop, two backends (Ray tasks, or in-process for debugging).

The driver submits a task once all its inputs are done, ingests each result into DuckDB as it
finishes, skips the dependents of a failed task while independent branches finish, and records
every task's outcome. Weights never travel through Ray: a task writes its artifact directory and
returns a small manifest.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
from pydantic import BaseModel

from langspec.compile import Task, TaskGraph, stage_tables
from langspec.errors import PlanError
from langspec.load import LoadedSpec
from langspec.spec import ResourcesSpec
from langspec.preflight import check_hub_access
from langspec.progress import ProgressFile, RunDisplay
from runners.context import TaskContext
from runners.inputs import Inputs
from runners.stage import stage
from store import artifacts
from store.db import StoreWriter, TaskRecord, damaged_database, is_damage, package_version
from store.errors import StoreError


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


ORPHANED_EXIT = 70  # a worker whose run is gone ends itself with this code
# The priority of the tasks of a Ray langspec starts: the work the user asked for, so that of any of
# their processes (0), not Ray's default 15, which left a task 6% of a CPU beside one busy process.
WORKER_NICENESS = 0


def run_task(call: TaskCall, report=None) -> dict:
    """Run one stage in an attempt directory of its own, then commit it into place; `_SUCCESS.json` last.

    Runs in the worker. An error in the stage is returned with its traceback, not raised, so the
    driver records it the same way under every backend. In a worker process of its own, a watchdog
    ends the process within seconds once the run that started it is gone.
    """
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
        workdir, _ = artifacts.start_attempt(root, call.key, call.token, resumable)
        if (os.getpid(), socket.gethostname()) != (call.driver_pid, call.driver_host):
            watchdog = _Watchdog(root, call, workdir, resumable)
            watchdog.start()
        inputs = Inputs({role: artifacts.task_dir(root, key) for role, key in call.inputs.items()})
        ctx = TaskContext(device=device, num_cpus=threads, report=report or progress.write)
        summary = module.run(call.params, inputs, workdir, ctx)
        missing = [t for t in call.tables if not artifacts.table_path(workdir, t).is_file()]
        if missing:
            raise RuntimeError(f"stage {call.stage} did not write its table(s) {', '.join(missing)}")
        finished = datetime.now()
        manifest = {
            "key": call.key, "name": call.name, "stage": call.stage, "summary": summary,
            "tables": list(call.tables), "device": device, "host": socket.gethostname(), "pid": os.getpid(),
            "threads": torch.get_num_threads(), "niceness": os.nice(0), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "token": call.token, "started_at": started.isoformat(), "finished_at": finished.isoformat(),
            "seconds": (finished - started).total_seconds(),
        }
        artifacts.commit(workdir, root, call.key, call.token, manifest)  # FencedOut if the run is gone
        return {"ok": True, **manifest}
    except Exception as err:
        finished = datetime.now()
        if workdir is not None and resumable and (artifacts.no_space(err) or artifacts.disk_nearly_full(root)):
            artifacts.release(workdir)  # the next run resumes from the last finished epoch
        elif workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        return {
            "ok": False, "error": _error_text(call, err, device), "traceback": _traceback_below(err),
            "device": device, "started_at": started.isoformat(), "finished_at": finished.isoformat(),
            "seconds": (finished - started).total_seconds(),
        }
    except BaseException:  # an interrupt: what a resumable stage finished stays for the next run
        if workdir is not None and resumable:
            artifacts.release(workdir)
        elif workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        if watchdog is not None:
            watchdog.stop()
        progress.remove()


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
            artifacts.heartbeat(self._attempt)
            token = artifacts.fence_token(self._root)
            if (token and token != self._call.token) or (local and not artifacts.pid_alive(self._call.driver_pid)):
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
                "then run again: finished tasks are kept and fine-tuning resumes from its last finished epoch")
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


# --- backends ---------------------------------------------------------------------------------


class LocalBackend:
    """Runs each task in this process, in submission order; the same semantics as Ray, no Ray."""

    name = "local"

    def __init__(self, display: RunDisplay):
        self._queue: list[TaskCall] = []
        self._display = display

    def check_fits(self, pending: list[Task]) -> None:
        import torch

        _check_gpus(pending, torch.cuda.device_count(), "this machine")

    def submit(self, call: TaskCall, max_retries: int = 0) -> None:
        self._queue.append(call)  # nothing to retry: a crash here ends the driver too

    def wait(self) -> list[tuple[str, dict]]:
        call = self._queue.pop(0)
        return [(call.key, run_task(call, report=self._display.reporter(call.key)))]

    def close(self, interrupted: bool = False) -> None:
        pass


class RayBackend:
    """Plain `ray.remote` tasks with the spec's resources; a local Ray unless `address` is given."""

    name = "ray"

    def __init__(self, root: Path, display: RunDisplay, address: str | None = None, queued_report_s: float = 60.0):
        import ray

        self._ray = ray
        self._root = root
        self._display = display
        self._owned = False
        if not ray.is_initialized():
            term = signal.getsignal(signal.SIGTERM)
            if address:  # the cluster's authentication is its administrator's: the user's settings stand
                ray.init(address=address, log_to_driver=False)
            else:
                start_private_ray(root)
            self._owned = True
            if callable(term) and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, term)  # Ray's own handler exits on the spot, leaving the run "running"
        self._remote = ray.remote(run_task)
        self._pending: dict = {}  # ObjectRef -> (task call, submitted at)
        self._reported: set[str] = set()
        self._queued_report_s = queued_report_s

    def check_fits(self, pending: list[Task]) -> None:
        """Every task's request fits on at least one live node; otherwise Ray would queue it forever."""
        nodes = [node["Resources"] for node in self._ray.nodes() if node.get("Alive")]
        _check_gpus(pending, max((node.get("GPU", 0) for node in nodes), default=0), "the largest node of the Ray cluster")
        for task in pending:
            request = _request(task)
            if not any(all(node.get(name, 0) >= amount for name, amount in request.items()) for node in nodes):
                largest = max(nodes, key=lambda node: (node.get("CPU", 0), node.get("GPU", 0)), default={})
                raise PlanError(
                    f"stage {task.stage} asks for {_describe(request)} per task, but no node of the Ray cluster has that: "
                    f"the largest of its {len(nodes)} node(s) has {_describe({k: largest.get(k, 0) for k in request})}; "
                    f"lower resources.{task.stage}.num_cpus (or num_gpus; or resources.default) in the spec, or add a bigger node"
                )

    def submit(self, call: TaskCall, max_retries: int = 1) -> None:
        options = {"num_cpus": call.num_cpus, "num_gpus": call.num_gpus, "max_retries": max_retries}
        self._pending[self._remote.options(**options).remote(call)] = (call, time.monotonic())

    def wait(self) -> list[tuple[str, dict]]:
        while True:
            ready, _ = self._ray.wait(list(self._pending), num_returns=1, timeout=0.25)
            self._display.poll_files(self._root)
            if ready:
                break
            self._report_queued()
        results = []
        for ref in ready:
            call, _ = self._pending.pop(ref)
            try:
                results.append((call.key, self._ray.get(ref)))
            except self._ray.exceptions.RayError as err:  # the worker died, retries used up
                error = f"{type(err).__name__}: {err}".rstrip() + f"\nRay's logs: {self._logs()}"
                results.append((call.key, {"ok": False, "error": error, "traceback": ""}))
        return results

    def _report_queued(self) -> None:
        """While none of the run's tasks is running, say what a task that has not started after
        resources.queued_report_s waits for: never a silent wait."""
        now = time.monotonic()
        # Begun: its worker made its attempt directory (a task may load a model for a while before its
        # first progress report).
        started = {call.key for call, _ in self._pending.values() if artifacts.attempt_started(self._root, call.key, call.token)}
        if started:  # the run's own tasks hold the nodes: an ordinary queue, not a stall
            return
        for call, submitted in self._pending.values():
            if call.key in self._reported or now - submitted < self._queued_report_s:
                continue
            self._reported.add(call.key)
            free = self._ray.available_resources()
            self._display.note(
                f"{call.name} has waited {now - submitted:.0f} s for a node with {call.num_cpus:g} CPU(s) and "
                f"{call.num_gpus:g} GPU(s); free in the cluster now: {free.get('CPU', 0):g} CPU(s), {free.get('GPU', 0):g} GPU(s)"
            )

    def _logs(self) -> str:
        try:
            session = self._ray._private.worker._global_node.get_session_dir_path()
            return f"{Path(session).resolve() / 'logs'} (raylet.out, worker-*.err)"
        except Exception:  # a client connection has no local session
            return "session_latest/logs/raylet.out under the head node's Ray temp dir"

    def close(self, interrupted: bool = False) -> None:
        if interrupted:  # tasks already running on a cluster that stays up must stop too
            for ref in self._pending:
                self._ray.cancel(ref, force=True)
        if self._owned:
            self._ray.shutdown()


def _request(task: Task) -> dict[str, float]:
    request = {"CPU": task.resources.num_cpus}
    if task.resources.num_gpus:
        request["GPU"] = task.resources.num_gpus
    return request


def _describe(resources: dict[str, float]) -> str:
    return ", ".join(f"{amount:g} {name}" + ("s" if name in ("CPU", "GPU") and amount != 1 else "") for name, amount in resources.items())


def _check_gpus(pending: list[Task], available: float, where: str) -> None:
    needed = max((task.resources.num_gpus for task in pending), default=0)
    if needed > available:
        stages = sorted({task.stage for task in pending if task.resources.num_gpus > available})
        raise PlanError(
            f"stage(s) {', '.join(stages)} ask for {needed:g} GPU(s) per task, but {where} has {available:g}; "
            "set resources.<stage>.num_gpus: 0 to run on CPU, or join a cluster with GPUs via --address"
        )


def start_private_ray(root: Path) -> None:
    """Start a local Ray that only this run can use: every port on loopback, and token authentication
    with a fresh token that lives only in the environment of this process and the Ray processes it
    starts (never on disk). Ray 2.60 binds its servers to the node's address on every interface
    unless that address is loopback, and resolves a `_node_ip_address` of 127.0.0.1 back to the
    network's: `ENABLE_RAY_CLUSTER`, the switch its laptop mode reads, makes loopback the node's
    address, and is put back once Ray has started (a later `--address` in this process joins as usual)."""
    import ray
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ["RAY_worker_niceness"] = str(WORKER_NICENESS)  # read by the raylet it starts
    Config.initialize("")  # Ray read both when it was imported; as its own switch to token mode does
    AuthenticationTokenLoader.instance().reset_cache()
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=128 * 1024**2,
                 _temp_dir=_ray_temp_dir(root), log_to_driver=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode


def _ray_temp_dir(root: Path) -> str:
    """Ray's temp dir under the store (private with it), unless that path is too long for Ray's unix
    sockets: then the user's own directory in the system's temp dir, 0700. Its name can be guessed,
    so one that someone else made first (or a link) is passed over for a fresh private one."""
    preferred = (root / "ray").resolve()
    if len(str(preferred)) <= 40:
        return str(preferred)
    own = Path(tempfile.gettempdir()) / f"langspec-ray-{os.getuid()}"
    try:
        own.mkdir(mode=0o700)
    except FileExistsError:
        pass
    found = own.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        return tempfile.mkdtemp(prefix="langspec-ray-")
    own.chmod(0o700)  # earlier langspec versions left it open to every user
    return str(own)


# --- the driver -------------------------------------------------------------------------------


@dataclass
class RunResult:
    run_id: int
    status: str  # completed | failed
    records: dict[str, TaskRecord] = field(default_factory=dict)

    @property
    def failed(self) -> list[TaskRecord]:
        return [r for r in self.records.values() if r.outcome == "failed"]


def execute(
    graph: TaskGraph,
    loaded: LoadedSpec,
    root: Path,
    *,
    executor: str = "ray",
    address: str | None = None,
    display: RunDisplay | None = None,
) -> RunResult:
    display = display or RunDisplay(quiet=True)
    root = Path(root).absolute()  # workers, on this node or another, find the store by this path
    pending = [task for task in graph.tasks if not artifacts.is_complete(root, task.key, stage_tables(task.stage))]
    check_hub_access(pending)  # before the store is touched: a run that cannot start writes nothing
    try:
        return _execute(graph, loaded, root, pending, executor, address, display)
    except duckdb.Error as err:  # DuckDB reads lazily: a truncated file may open and fail later
        if is_damage(err):
            raise damaged_database(root, err) from None
        if artifacts.no_space(err) or artifacts.disk_nearly_full(root):  # the ingest was one transaction: it is rolled back whole
            raise StoreError(f"no space left on the device holding the store {root}; free space there, then run again: "
                             "finished tasks are kept and ingested then") from None
        raise


def _execute(graph: TaskGraph, loaded: LoadedSpec, root: Path, pending: list[Task], executor: str,
             address: str | None, display: RunDisplay) -> RunResult:
    with StoreWriter(root, notify=display.note) as writer:
        # Start the backend (and check that every task fits on a node) before the run is recorded:
        # a spec that cannot run here writes nothing. A fully cached run starts no Ray at all.
        backend = _start_backend(pending, root, executor, address, display, loaded.spec.resources) if pending else None
        token = artifacts.new_token()
        artifacts.set_fence(root, token)  # from here on, no attempt of an earlier run can commit
        artifacts.clean_attempts(root, lambda key: artifacts.is_complete(root, key))
        run_id = writer.begin_run(
            spec_name=loaded.spec.name, spec_path=str(loaded.path), spec_text=loaded.text,
            overrides=list(loaded.overrides), spec_json=loaded.spec.model_dump_json(), spec_hash=loaded.spec_hash, git_commit=_git_commit(),
            versions=_versions(), host=socket.gethostname(), executor=executor, points=graph.points,
            queued=tuple(_task_record(task, "queued", "waiting for its turn") for task in graph.tasks),
        )
        interrupted = True
        try:
            result = _drive(graph, root, writer, run_id, backend, display, token)
            interrupted = False
        except BaseException:
            writer.finish_run(run_id, "interrupted")
            raise
        finally:
            display.stop()
            if backend is not None:
                backend.close(interrupted)
        writer.finish_run(run_id, result.status)
        artifacts.clean_attempts(root, lambda key: artifacts.is_complete(root, key))
        return result


def _drive(graph: TaskGraph, root: Path, writer: StoreWriter, run_id: int, backend, display: RunDisplay, token: str) -> RunResult:
    result = RunResult(run_id, "completed")
    state: dict[str, str] = {}  # key -> cached | ran | failed | skipped | submitted
    why: dict[str, str] = {}  # key -> why it runs
    ingested = writer.ingested()
    for task in graph.tasks:
        problem = artifacts.check_complete(root, task.key, stage_tables(task.stage))
        if problem is None:
            record = _task_record(task, "cached", "a result with this key exists")
            if task.key in ingested:
                writer.record_task(run_id, record)
            else:
                writer.ingest(task.key, task.stage, task.name, stage_tables(task.stage), run_id=run_id, record=record)
            result.records[task.key] = record
            state[task.key] = "cached"
        elif problem != "no result":  # damaged: never used, never counted as done
            display.note(f"task {task.name}: {problem}, running it again")
            artifacts.discard(root, task.key)
            writer.forget(task.key)
            why[task.key] = f"its result was damaged ({problem})"
    display.start(graph, done=len(state))
    while len(state) < len(graph.tasks) or "submitted" in state.values():
        for task in graph.tasks:  # topological order: a task's inputs are decided before it
            if task.key in state:
                continue
            unfinished = [graph[key].name for _, key in task.inputs if state.get(key) in ("failed", "skipped")]
            if unfinished:
                _record(writer, result, task, "skipped", f"input {unfinished[0]} did not finish")
                state[task.key] = "skipped"
                display.finish(task, "skipped")
            elif all(state.get(key) in ("cached", "ran") for _, key in task.inputs):
                backend.submit(task_call(task, root, token), max_retries=task.resources.max_retries)
                state[task.key] = "submitted"
                display.begin(task)
        if "submitted" in state.values():
            for key, outcome in backend.wait():
                task = graph[key]
                state[key] = _finish(writer, result, task, outcome, why.get(key, "no result with this key yet"))
                display.finish(task, state[key], outcome.get("error"))
    if "failed" in state.values():
        result.status = "failed"
    return result


def _start_backend(pending: list[Task], root: Path, executor: str, address: str | None, display: RunDisplay,
                   resources: ResourcesSpec):
    backend = (RayBackend(root, display, address, resources.queued_report_s) if executor == "ray"
               else LocalBackend(display))
    try:
        backend.check_fits(pending)
    except BaseException:
        backend.close()
        raise
    return backend


def task_call(task: Task, root: Path, token: str) -> TaskCall:
    """What a worker needs to run `task` into the store at `root` for the run holding `token`, as from
    this process (the driver): run_task(task_call(...)) runs one task by hand."""
    return TaskCall(
        key=task.key, name=task.name, stage=task.stage, params=task.params, inputs=dict(task.inputs),
        store_root=str(root), num_cpus=task.resources.num_cpus, num_gpus=task.resources.num_gpus,
        tables=stage_tables(task.stage), token=token, driver_pid=os.getpid(), driver_host=socket.gethostname(),
    )


def _finish(writer: StoreWriter, result: RunResult, task: Task, outcome: dict, reason: str) -> str:
    timing = {
        "started_at": _parse_time(outcome.get("started_at")), "finished_at": _parse_time(outcome.get("finished_at")),
        "seconds": outcome.get("seconds"), "device": outcome.get("device"),
    }
    if outcome["ok"]:
        record = _task_record(task, "ran", reason, summary=json.dumps(outcome["summary"]), **timing)
        # One transaction: a reader sees the task's rows and its record together, or neither.
        writer.ingest(task.key, task.stage, task.name, stage_tables(task.stage), run_id=result.run_id, record=record)
        result.records[task.key] = record
        return "ran"
    error = f"{outcome['error']}\n{outcome.get('traceback', '')}".strip()
    _record(writer, result, task, "failed", "the task raised an error", error=error, **timing)
    return "failed"


def _record(writer: StoreWriter, result: RunResult, task: Task, outcome: str, reason: str, **fields) -> None:
    record = _task_record(task, outcome, reason, **fields)
    writer.record_task(result.run_id, record)
    result.records[task.key] = record


def _task_record(task: Task, outcome: str, reason: str, **fields) -> TaskRecord:
    inputs = json.dumps(dict(task.inputs))
    return TaskRecord(task.key, task.name, task.stage, task.params.model_dump_json(), inputs, outcome, reason, **fields)


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _git_commit() -> str | None:
    head = Path(__file__).resolve().parent.parent / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (head.parent / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def _versions() -> dict[str, str]:
    names = ("langspec", "torch", "transformers", "tokenizers", "datasets", "duckdb", "ray", "pydantic")
    return {name: package_version(name) for name in names}
