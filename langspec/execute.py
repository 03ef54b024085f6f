"""Run a task graph: one driver loop, two backends (Ray tasks, or in-process for debugging).

The driver submits a task once all its inputs are done, ingests each result into DuckDB as it
finishes, skips the dependents of a failed task while independent branches finish, and records
every task's outcome. Weights never travel through Ray: a task writes its artifact directory and
returns a small manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from langspec.compile import Task, TaskGraph
from langspec.errors import PlanError
from langspec.load import LoadedSpec
from langspec.preflight import check_hub_access
from langspec.progress import ProgressFile, RunDisplay
from runners.context import RESUME_FILE, TaskContext
from runners.stage import stage
from store.db import SUCCESS_FILE, StoreWriter, TaskRecord, artifact_dir, is_complete, package_version


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


def run_task(call: TaskCall, report=None) -> dict:
    """Run one stage into a temporary directory and rename it into place; `_SUCCESS.json` last.

    Runs in the worker. An error in the stage is returned with its traceback, not raised, so the
    driver records it the same way under every backend.
    """
    import torch

    root = Path(call.store_root)
    started = datetime.now()
    threads = max(1, int(call.num_cpus))
    torch.set_num_threads(threads)  # an oversubscribed 2-core machine runs 50x slower
    device = "cuda:0" if call.num_gpus > 0 and torch.cuda.is_available() else "cpu"
    progress = ProgressFile(root, call.key)
    workdir = partial_dir(root, call.key)
    try:
        module = stage(call.stage)
        # An earlier attempt that died (a killed driver or worker) may have left its work here: a
        # stage that can resume continues from it, any other starts afresh.
        if workdir.exists() and not module.RESUMABLE:
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        inputs = {role: artifact_dir(root, key) for role, key in call.inputs.items()}
        ctx = TaskContext(device=device, num_cpus=threads, report=report or progress.write)
        summary = module.run(call.params, inputs, workdir, ctx)
        finished = datetime.now()
        files = [
            {"path": str(p.relative_to(workdir)), "bytes": p.stat().st_size}
            for p in sorted(workdir.rglob("*")) if p.is_file()
        ]
        manifest = {
            "key": call.key, "name": call.name, "stage": call.stage, "summary": summary, "files": files,
            "device": device, "host": socket.gethostname(), "started_at": started.isoformat(),
            "finished_at": finished.isoformat(), "seconds": (finished - started).total_seconds(),
        }
        (workdir / SUCCESS_FILE).write_text(json.dumps(manifest, indent=1))
        _move_into_place(workdir, artifact_dir(root, call.key))
        return {"ok": True, **manifest}
    except Exception as err:
        shutil.rmtree(workdir, ignore_errors=True)
        finished = datetime.now()
        error = f"{type(err).__name__}: {err}"
        if _out_of_memory(err):
            fields = stage(call.stage).MEMORY_FIELDS
            error = (f"{call.name} ran out of memory on {device} ({' '.join(error.split())}); it needs less with smaller "
                     + " or ".join(fields) + (", or a smaller model" if call.stage != "data" else ""))
        return {
            "ok": False, "error": error, "traceback": traceback.format_exc(),
            "device": device, "started_at": started.isoformat(), "finished_at": finished.isoformat(),
            "seconds": (finished - started).total_seconds(),
        }
    finally:
        progress.remove()


def _out_of_memory(err: BaseException) -> bool:
    """A GPU or CPU allocation that failed (torch raises a RuntimeError for the CPU)."""
    import torch

    text = str(err)
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text or "out of memory" in text


def partial_dir(root: Path, key: str) -> Path:
    """Where a task works until it is complete: one place per key, so a retry can find it."""
    return root / "tasks" / f".tmp-{key}"


def _clean_leftovers(root: Path) -> None:
    """Progress files and partial directories of attempts that died with an earlier driver; a
    partial directory that a stage can resume from (it holds RESUME_FILE) is kept. Runs under the
    store's lock, so no other run is using them."""
    tasks = root / "tasks"
    shutil.rmtree(tasks / ".progress", ignore_errors=True)
    for partial in tasks.glob(".tmp-*"):
        if not (partial / RESUME_FILE).is_file():
            shutil.rmtree(partial, ignore_errors=True)


def _move_into_place(workdir: Path, final: Path) -> None:
    if final.exists():  # an earlier attempt left an incomplete directory, or a twin finished first
        if (final / SUCCESS_FILE).is_file():
            shutil.rmtree(workdir)
            return
        shutil.rmtree(final)
    os.rename(workdir, final)


# --- backends ---------------------------------------------------------------------------------


class LocalBackend:
    """Runs each task in this process, in submission order; the same semantics as Ray, no Ray."""

    name = "local"

    def __init__(self, display: RunDisplay):
        self._queue: list[TaskCall] = []
        self._display = display

    def gpus(self) -> float:
        import torch

        return torch.cuda.device_count()

    def submit(self, call: TaskCall, max_retries: int = 0) -> None:
        self._queue.append(call)  # nothing to retry: a crash here ends the driver too

    def wait(self) -> list[tuple[str, dict]]:
        call = self._queue.pop(0)
        return [(call.key, run_task(call, report=self._display.reporter(call.key)))]

    def close(self) -> None:
        pass


class RayBackend:
    """Plain `ray.remote` tasks with the spec's resources; a local Ray unless `address` is given."""

    name = "ray"

    def __init__(self, root: Path, display: RunDisplay, address: str | None = None, max_retries: int = 1):
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # Ray >= 2.59 otherwise writes an auth token
        import ray

        self._ray = ray
        self._root = root
        self._display = display
        self._owned = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=128 * 1024**2,
                    _temp_dir=_ray_temp_dir(root), log_to_driver=False,
                )
            self._owned = True
        self._remote = ray.remote(run_task)
        self._pending: dict = {}  # ObjectRef -> task key

    def gpus(self) -> float:
        return self._ray.cluster_resources().get("GPU", 0)

    def submit(self, call: TaskCall, max_retries: int = 1) -> None:
        options = {"num_cpus": call.num_cpus, "num_gpus": call.num_gpus, "max_retries": max_retries}
        self._pending[self._remote.options(**options).remote(call)] = call.key

    def wait(self) -> list[tuple[str, dict]]:
        while True:
            ready, _ = self._ray.wait(list(self._pending), num_returns=1, timeout=0.25)
            self._display.poll_files(self._root)
            if ready:
                break
        results = []
        for ref in ready:
            key = self._pending.pop(ref)
            try:
                results.append((key, self._ray.get(ref)))
            except self._ray.exceptions.RayError as err:  # the worker died, retries used up
                results.append((key, {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": str(err)}))
        return results

    def close(self) -> None:
        if self._owned:
            self._ray.shutdown()


def _ray_temp_dir(root: Path) -> str:
    """Ray's temp dir under the store, unless that path is too long for Ray's unix sockets."""
    preferred = (root / "ray").resolve()
    if len(str(preferred)) <= 40:
        return str(preferred)
    return f"/tmp/langspec-ray-{os.getuid()}"


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
    pending = [task for task in graph.tasks if not is_complete(root, task.key)]
    check_hub_access(pending)  # before the store is touched: a run that cannot start writes nothing
    with StoreWriter(root) as writer:
        _clean_leftovers(root)
        # Start the backend (and check its GPUs) before the run is recorded: a spec that cannot
        # run here writes nothing. A fully cached run starts no Ray at all.
        backend = _start_backend(pending, root, executor, address, display) if pending else None
        run_id = writer.begin_run(
            spec_name=loaded.spec.name, spec_path=str(loaded.path), spec_text=loaded.text,
            overrides=list(loaded.overrides), spec_json=loaded.spec.model_dump_json(), spec_hash=loaded.spec_hash, git_commit=_git_commit(),
            versions=_versions(), host=socket.gethostname(), executor=executor, points=graph.points,
        )
        try:
            result = _drive(graph, root, writer, run_id, backend, display)
        except BaseException:
            writer.finish_run(run_id, "interrupted")
            raise
        finally:
            display.stop()
            if backend is not None:
                backend.close()
        writer.finish_run(run_id, result.status)
        return result


def _drive(graph: TaskGraph, root: Path, writer: StoreWriter, run_id: int, backend, display: RunDisplay) -> RunResult:
    result = RunResult(run_id, "completed")
    state: dict[str, str] = {}  # key -> cached | ran | failed | skipped | submitted
    for task in graph.tasks:
        if is_complete(root, task.key):
            if not writer.is_ingested(task.key):
                writer.ingest(task.key, task.stage, task.name)
            _record(writer, result, task, "cached", "a result with this key exists")
            state[task.key] = "cached"
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
                backend.submit(_call(task, root), max_retries=task.resources.max_retries)
                state[task.key] = "submitted"
                display.begin(task)
        if "submitted" in state.values():
            for key, outcome in backend.wait():
                task = graph[key]
                state[key] = _finish(writer, result, task, outcome)
                display.finish(task, state[key], outcome.get("error"))
    if "failed" in state.values():
        result.status = "failed"
    return result


def _start_backend(pending: list[Task], root: Path, executor: str, address: str | None, display: RunDisplay):
    backend = RayBackend(root, display, address) if executor == "ray" else LocalBackend(display)
    needed = max((task.resources.num_gpus for task in pending), default=0)
    if needed > 0:
        available = backend.gpus()
        if available < needed:
            backend.close()
            stages = sorted({task.stage for task in pending if task.resources.num_gpus > available})
            raise PlanError(
                f"stage(s) {', '.join(stages)} ask for {needed:g} GPU(s) per task, but {backend.name} has {available:g}; "
                "set resources.<stage>.num_gpus: 0 to run on CPU, or join a cluster with GPUs via --address"
            )
    return backend


def _call(task: Task, root: Path) -> TaskCall:
    return TaskCall(
        key=task.key, name=task.name, stage=task.stage, params=task.params, inputs=dict(task.inputs),
        store_root=str(root), num_cpus=task.resources.num_cpus, num_gpus=task.resources.num_gpus,
    )


def _finish(writer: StoreWriter, result: RunResult, task: Task, outcome: dict) -> str:
    timing = {
        "started_at": _parse_time(outcome.get("started_at")), "finished_at": _parse_time(outcome.get("finished_at")),
        "seconds": outcome.get("seconds"), "device": outcome.get("device"),
    }
    if outcome["ok"]:
        writer.ingest(task.key, task.stage, task.name)
        _record(writer, result, task, "ran", "no result with this key yet", summary=json.dumps(outcome["summary"]), **timing)
        return "ran"
    error = f"{outcome['error']}\n{outcome.get('traceback', '')}".strip()
    _record(writer, result, task, "failed", "the task raised an error", error=error, **timing)
    return "failed"


def _record(writer: StoreWriter, result: RunResult, task: Task, outcome: str, reason: str, **fields) -> None:
    inputs = json.dumps(dict(task.inputs))
    record = TaskRecord(task.key, task.name, task.stage, task.params.model_dump_json(), inputs, outcome, reason, **fields)
    writer.record_task(result.run_id, record)
    result.records[task.key] = record


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
