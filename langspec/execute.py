"""Run a task graph: one driver loop, two backends (langspec.backends: Ray tasks, or in-process for
debugging), each running a task with langspec.worker.

The driver submits a task once all its inputs are done (the critical path first, and only as many
as the backend has room for), ingests each result into DuckDB as it finishes, skips the dependents
of a failed task while independent branches finish, and records every task's outcome. Weights
never travel through Ray: a task writes its artifact directory and returns a small manifest.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from langspec.backends import LocalBackend, RayBackend
from langspec.compile import Task, TaskGraph, stage_tables
from langspec.load import LoadedSpec
from langspec import preflight
from langspec.progress import RunDisplay
from langspec.spec import ResourcesSpec
from langspec.worker import TaskCall
from store import artifacts, attempts
from store.connections import damaged_database, is_damage
from store.db import StoreWriter, package_version
from store.errors import StoreError
from store.task_rows import TaskRecord


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
    db_dir: Path | None = None,
) -> RunResult:
    display = display or RunDisplay(quiet=True)
    root = Path(root).absolute()  # workers, on this node or another, find the store by this path
    pending = [task for task in graph.tasks if not artifacts.is_complete(root, task.key, stage_tables(task.stage))]
    if executor != "ray" or address is None:  # tasks run on this machine: its cache and hub access count
        preflight.check_hub_access(pending)  # before the store is touched: a run that cannot start writes nothing
    try:
        return _execute(graph, loaded, root, pending, executor, address, display, db_dir)
    except duckdb.Error as err:  # DuckDB reads lazily: a truncated file may open and fail later
        if is_damage(err):
            raise damaged_database(root, err) from None
        if artifacts.no_space(err) or artifacts.disk_nearly_full(root):  # the ingest was one transaction: it is rolled back whole
            raise StoreError(f"no space left on the device holding the store {root}; free space there, then run again: "
                             "finished tasks are kept and ingested then") from None
        raise


def _execute(graph: TaskGraph, loaded: LoadedSpec, root: Path, pending: list[Task], executor: str,
             address: str | None, display: RunDisplay, db_dir: Path | None = None) -> RunResult:
    with StoreWriter(root, notify=display.note, db_dir=db_dir) as writer:  # db_dir: `run --db-dir`, the database on this host
        # Start the backend (and check that every task fits on a node) before the run is recorded:
        # a spec that cannot run here writes nothing. A fully cached run starts no Ray at all.
        backend = _start_backend(pending, root, executor, address, display, loaded.spec.resources) if pending else None
        token = artifacts.new_token()
        artifacts.set_fence(root, token)  # from here on, no attempt of an earlier run can commit
        attempts.clean_attempts(root, lambda key: artifacts.is_complete(root, key))
        run_id = writer.begin_run(
            spec_name=loaded.spec.name, spec_path=str(loaded.path), spec_text=loaded.text,
            overrides=list(loaded.overrides), spec_json=loaded.spec.model_dump_json(), spec_hash=loaded.spec_hash, git_commit=_git_commit(),
            versions=_versions(), host=socket.gethostname(), executor=executor, points=graph.points,
            queued=tuple(_task_record(task, "queued", "waiting for its turn") for task in graph.tasks),
        )
        interrupted = True
        try:
            result = _drive(graph, root, writer, run_id, backend, display, token, loaded.spec.resources.env_vars)
            interrupted = False
        except BaseException:
            writer.finish_run(run_id, "interrupted")
            raise
        finally:
            display.stop()
            if backend is not None:
                backend.close(interrupted)
        writer.finish_run(run_id, result.status)
        attempts.clean_attempts(root, lambda key: artifacts.is_complete(root, key))
        return result


def _drive(graph: TaskGraph, root: Path, writer: StoreWriter, run_id: int, backend, display: RunDisplay, token: str,
           env_vars: list[str]) -> RunResult:
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
    critical, chain = _critical_paths(graph), _chain_lengths(graph)
    while len(state) < len(graph.tasks) or "submitted" in state.values():
        ready = []
        for task in graph.tasks:  # topological order: a task's inputs are decided before it
            if task.key in state:
                continue
            unfinished = [graph[key].name for _, key in task.inputs if state.get(key) in ("failed", "skipped")]
            if unfinished:
                _record(writer, result, task, "skipped", f"input {unfinished[0]} did not finish")
                state[task.key] = "skipped"
                display.finish(task, "skipped")
            elif all(state.get(key) in ("cached", "ran") for _, key in task.inputs):
                ready.append(task)
        # The critical path first: both backends start tasks in the order they get them. A task the
        # backend has no room for waits here, where one ready later may still go before it.
        for task in sorted(ready, key=lambda task: (-critical[task.key], -chain[task.key])):
            if not backend.has_room(task.resources):
                continue  # a smaller task after it may still fit
            backend.submit(task_call(task, root, token, env_vars), max_retries=task.resources.max_retries)
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


# A task's expected cost by its stage, in fine-tunings of the same model and data: weights to order
# tasks by, not predictions. From the task times in benchmarks/RESULTS.md (the demo's run, "Warm
# workers"; specs/ablation.yaml at a load average of 1-3.5): sparse fine-tuning costs what fine-tuning
# does (14.1 against 12.8 s), an ablation 0.64 of it (it trains on (L-1)/L of the rows), TracIn 0.6-1.6
# of it (more at the paper's size, where it dominates), a prune, mask_transfer or data task a few
# percent. head_effects evaluates each language's validation set layers x heads + 1 times: 4.3 s against
# the fine-tuning's 58.1 s on the demo's model and data (16 heads, 2026-12-06, busy 2 cores), 0.07; it
# grows with the heads, to about one fine-tuning at 12 x 12 (real-text: 725 evaluations at mask_transfer's
# 4-5 s each against 2,642 s). A stage not listed (a new one) counts as one fine-tuning.
STAGE_COST = {"data": 0.05, "finetune": 1.0, "ablation": 0.6, "prune": 0.05, "mask_transfer": 0.05,
              "head_effects": 0.1, "sparse_finetune": 1.0, "tracin": 1.0}


def _critical_paths(graph: TaskGraph) -> dict[str, float]:
    """Each task's costliest chain of tasks that wait on it, itself included, in STAGE_COST's units:
    the least the study still takes once it starts, however many nodes run it."""
    return _longest_chains(graph, lambda task: STAGE_COST.get(task.stage, 1.0))


def _chain_lengths(graph: TaskGraph) -> dict[str, int]:
    """Each task's longest chain of tasks that wait on it, itself included: 1 for a task nothing needs."""
    return _longest_chains(graph, lambda task: 1)


def _longest_chains(graph: TaskGraph, cost: Callable[[Task], float]) -> dict[str, float]:
    longest = {task.key: 0 for task in graph.tasks}  # until a task's turn: the longest of its dependents' chains
    for task in reversed(graph.tasks):  # its dependents come later in topological order: its chain is final
        longest[task.key] += cost(task)
        for _, upstream in task.inputs:
            longest[upstream] = max(longest[upstream], longest[task.key])
    return longest


def _start_backend(pending: list[Task], root: Path, executor: str, address: str | None, display: RunDisplay,
                   resources: ResourcesSpec):
    backend = (RayBackend(root, display, address, resources.queued_report_s, preflight.task_env(resources.env_vars))
               if executor == "ray" else LocalBackend(display))
    try:
        backend.check_fits(pending)
        if executor == "ray" and address is not None:  # nodes of a cluster; the Ray langspec starts is this machine
            _check_nodes(backend, pending, root)
    except BaseException:
        backend.close()
        raise
    return backend


def _check_nodes(backend: RayBackend, pending: list[Task], root: Path) -> None:
    """Each node that could run a task sees its inputs, runs the driver's versions and holds the store;
    otherwise the run is refused before any task, each such node named with what it lacks."""
    mark = (f".preflight-{artifacts.new_token()}", artifacts.new_token())
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    (root / "tasks" / mark[0]).write_text(mark[1])
    try:
        found = backend.on_every_node(preflight.check_node, preflight.node_needs(pending, root, mark), pending,
                                      preflight.NODE_TIMEOUT_S)
    finally:
        (root / "tasks" / mark[0]).unlink(missing_ok=True)
    lacking = {node: (result if isinstance(result, list) else [f"a working langspec check ({type(result).__name__}: "
                                                              f"{' '.join(str(result).split())[:500]})"])
               for node, result in found.items() if result != []}
    if lacking:
        raise preflight.refusal(lacking, len(found), Path.cwd())


def task_call(task: Task, root: Path, token: str, env_vars: list[str] | tuple[str, ...] = ()) -> TaskCall:
    """What a worker needs to run `task` into the store at `root` for the run holding `token`, as from
    this process (the driver): run_task(task_call(...)) runs one task by hand. Its input paths are
    absolute (a worker on another node has another working directory); its manifest records the
    environment variables that the driver passes (preflight.ENV_ALWAYS and `env_vars`)."""
    return TaskCall(
        key=task.key, name=task.name, stage=task.stage, params=preflight.for_execution(task.params), inputs=dict(task.inputs),
        store_root=str(root), num_cpus=task.resources.num_cpus, num_gpus=task.resources.num_gpus,
        tables=stage_tables(task.stage), token=token, driver_pid=os.getpid(), driver_host=socket.gethostname(),
        env=tuple(dict.fromkeys([*preflight.ENV_ALWAYS, *env_vars])),
    )


def _finish(writer: StoreWriter, result: RunResult, task: Task, outcome: dict, reason: str) -> str:
    timing = {
        "started_at": _parse_time(outcome.get("started_at")), "finished_at": _parse_time(outcome.get("finished_at")),
        "seconds": outcome.get("seconds"), "device": outcome.get("device"),
    }
    if outcome["ok"] and not _manifest_arrives(writer.root, task.key):
        outcome = {"ok": False, "traceback": "", "error": (
            f"its worker finished it, but {artifacts.task_dir(writer.root, task.key) / artifacts.SUCCESS_FILE} did not appear "
            f"here within {MANIFEST_WAIT_S:.0f} s: on a shared filesystem this host's view may lag the worker's (NFS caches "
            "attributes for up to acdirmax, 60 s by default), or the worker's node writes another directory than this "
            "one reads; run the same command again to take its result if it is there by then")}
    if outcome["ok"]:
        record = _task_record(task, "ran", reason, summary=json.dumps(outcome["summary"]), **timing)
        # One transaction: a reader sees the task's rows and its record together, or neither.
        writer.ingest(task.key, task.stage, task.name, stage_tables(task.stage), run_id=result.run_id, record=record)
        result.records[task.key] = record
        return "ran"
    error = f"{outcome['error']}\n{outcome.get('traceback', '')}".strip()
    _record(writer, result, task, "failed", "the task raised an error", error=error, **timing)
    return "failed"


# How long the driver waits for a finished task's manifest to show on its own host: beyond NFS's default
# attribute cache (acdirmax, 60 s), looking again with a backoff. Then the task alone fails, not the run.
MANIFEST_WAIT_S = 90.0


def _manifest_arrives(root: Path, key: str) -> bool:
    deadline, pause = time.monotonic() + MANIFEST_WAIT_S, 0.05
    while artifacts.read_manifest(root, key) is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
        try:
            os.listdir(artifacts.task_dir(root, key).parent)  # a fresh look at tasks/ (NFS revalidates a directory it lists)
        except OSError:
            pass
    return True


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
