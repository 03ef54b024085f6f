"""`langspec status` shows a running task's progress under either executor (#39): the local executor's
tasks write the progress file that status reads, as Ray's workers do, besides updating its own display."""

from __future__ import annotations

from langspec.compile import compile_spec
from langspec.execute import task_call
from langspec.load import load_spec
from langspec.progress import read_progress
from langspec.worker import run_task
from store import artifacts
from store.db import StoreWriter


def test_a_task_run_in_process_writes_the_progress_that_status_reads(tmp_path, small_spec):
    store = tmp_path / "store"
    graph = compile_spec(load_spec(small_spec))
    with StoreWriter(store):
        token = artifacts.new_token()
        artifacts.set_fence(store, token)
    seen_by_status, shown = [], []

    def display(done: int, total: int, note: str) -> None:  # as the local executor's display is told
        shown.append((done, total, note))
        seen_by_status.append(read_progress(store, key))

    for task in graph.tasks:  # data, then fine-tuning
        key = task.key
        assert run_task(task_call(task, store, token), report=display)["ok"]
    assert shown and shown[-1][0] == shown[-1][1]  # the display saw the task to its end
    assert any(seen and seen.startswith(f"{done}/{total}") for seen, (done, total, _) in zip(seen_by_status, shown))
    assert read_progress(store, key) is None  # gone once the task is done: status then shows its outcome
