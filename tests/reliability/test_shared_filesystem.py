"""A store on a shared filesystem (#40): a manifest that a worker on another node committed can show on
the driver's host only later (NFS caches a directory's attributes for up to a minute). The driver looks
again before it gives up, and then fails that task alone, never the run."""

from __future__ import annotations

import os
import threading

from langspec import execute
from langspec.compile import compile_spec
from langspec.load import load_spec
from langspec.worker import run_task
from store import artifacts
from store.connections import connect_read_only
from store.db import StoreWriter


def finished_data_task(tmp_path, small_spec):
    """The data task of the small spec, run by a worker into a new store: (store, task, the worker's outcome)."""
    store = tmp_path / "store"
    graph = compile_spec(load_spec(small_spec))
    task = next(task for task in graph.tasks if task.stage == "data")
    with StoreWriter(store):
        token = artifacts.new_token()
        artifacts.set_fence(store, token)
    outcome = run_task(execute.task_call(task, store, token))
    assert outcome["ok"], outcome
    return store, task, outcome


def test_a_manifest_that_shows_late_is_ingested(tmp_path, small_spec):
    store, task, outcome = finished_data_task(tmp_path, small_spec)
    final = artifacts.task_dir(store, task.key)
    away = final.with_name(final.name + ".not-yet")
    os.rename(final, away)  # as the driver's host sees it: not there yet
    threading.Timer(1.5, os.rename, (away, final)).start()
    with StoreWriter(store) as writer:
        result = execute.RunResult(1, "completed")
        assert execute._finish(writer, result, task, outcome, "no result with this key yet") == "ran"
    with connect_read_only(store) as con:
        assert con.sql("SELECT count(*) FROM examples").fetchall()[0][0] > 0


def test_a_manifest_that_never_shows_fails_its_task_alone(tmp_path, small_spec, monkeypatch):
    store, task, outcome = finished_data_task(tmp_path, small_spec)
    final = artifacts.task_dir(store, task.key)
    os.rename(final, final.with_name(final.name + ".elsewhere"))
    monkeypatch.setattr(execute, "MANIFEST_WAIT_S", 1.0)
    with StoreWriter(store) as writer:
        result = execute.RunResult(1, "completed")
        assert execute._finish(writer, result, task, outcome, "no result with this key yet") == "failed"  # no exception
    error = result.records[task.key].error
    assert "did not appear here within 1 s" in error and "acdirmax" in error
