"""Promises 1, 2 and 4 with real processes and signals: a driver killed with SIGKILL mid-run, then
the same `langspec run`; a Ray worker killed mid-task. Finished work is reused, the interrupted
fine-tuning resumes from its last epoch, and the store ends as if nothing had happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import duckdb
import torch
from safetensors.torch import load_file

from waiting import wait_for
from langspec.compile import compile_spec
from langspec.execute import execute
from langspec.load import load_spec
from runners.context import RESUME_FILE
from store.artifacts import attempts_dir, is_complete

SPEC = """\
    name: kill
    data: {source: toy, languages: [ka, la], train_per_language: 300, validation_per_language: 20, test_per_language: 20}
    model: {tiny: {layers: 2, heads: 2, hidden: 32, intermediate: 64, vocab_size: 300}}
    seeds: [0, 1]
    finetune: {epochs: 4, lr: 1.0e-3, batch_size: 16, max_length: 32}
    prune: {enabled: false}
    sparse_finetune: {enabled: false}
    tracin: {enabled: false}
    resources: {default: {num_cpus: 1}}
"""



def resume_state(store, key):
    """Whether an attempt at the task has finished an epoch (holds resumable state)."""
    return any(attempts_dir(store).glob(f"{key}.*/{RESUME_FILE}"))


def final_weights(root, key, epochs=4):
    return load_file(root / "tasks" / key / "checkpoints" / f"epoch-{epochs}" / "model.safetensors")


def test_a_killed_driver_loses_nothing_and_the_rerun_resumes(spec_file, tmp_path):
    spec = spec_file(SPEC)
    graph = compile_spec(load_spec(spec))
    keys = {task.name: task.key for task in graph.tasks}
    store = tmp_path / "store"
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "langspec", "run", str(spec), "--store", str(store), "--executor", "local"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        # Kill once seed 0 is done and seed 1 has finished at least one epoch, but not all.
        wait_for(lambda: is_complete(store, keys["finetune[seed=0]"])
                 and resume_state(store, keys["finetune[seed=1]"]), what="seed 1's first epoch")
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.wait()
        log.close()
    assert not is_complete(store, keys["finetune[seed=1]"])

    result = execute(graph, load_spec(spec), store, executor="local")
    outcomes = {record.name: record.outcome for record in result.records.values()}
    assert outcomes == {"data": "cached", "finetune[seed=0]": "cached", "finetune[seed=1]": "ran"}
    resumed = json.loads(result.records[keys["finetune[seed=1]"]].summary)["resumed_from_epoch"]
    assert 1 <= resumed < 4

    with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as con:
        assert con.sql("SELECT run_id, status FROM runs ORDER BY run_id").fetchall() == [(1, "interrupted"), (2, "completed")]
        per_task = dict(con.sql("SELECT task_key, count(*) FROM metrics WHERE metric = 'accuracy' GROUP BY 1").fetchall())
        assert per_task == {keys["finetune[seed=0]"]: 2 * 2 * 4, keys["finetune[seed=1]"]: 2 * 2 * 4}  # no duplicates
        assert con.sql("SELECT count(*), count(DISTINCT task_key) FROM results").fetchall() == [(3, 3)]
        orphans = con.sql("SELECT count(*) FROM checkpoints WHERE task_key NOT IN (SELECT task_key FROM results)").fetchall()
        assert orphans == [(0,)]
    assert not list(attempts_dir(store).iterdir())

    # The same study without the kill ends with the same weights, bit for bit.
    clean = tmp_path / "clean"
    execute(graph, load_spec(spec), clean, executor="local")
    for name in ("finetune[seed=0]", "finetune[seed=1]"):
        a, b = final_weights(store, keys[name]), final_weights(clean, keys[name])
        assert all(torch.equal(a[k], b[k]) for k in a), name


def kill_the_finetune_worker(spec, tmp_path, started):
    """Run the spec on Ray; SIGKILL the worker of its fine-tuning once started(progress) holds.
    Returns the run's result and the fine-tuning's key."""
    loaded = load_spec(spec)
    graph = compile_spec(loaded)
    key = next(task.key for task in graph.tasks if task.stage == "finetune")
    store = tmp_path / "store"
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=execute(graph, loaded, store, executor="ray")))
    runner.start()
    progress = store / "tasks" / ".progress" / f"{key}.json"
    wait_for(lambda: progress.is_file() and started(store, key, json.loads(progress.read_text())), what="the fine-tuning")
    worker = json.loads(progress.read_text())["pid"]
    assert worker != os.getpid()
    os.kill(worker, signal.SIGKILL)
    runner.join(timeout=300)
    return outcome["result"], key


def test_a_killed_ray_worker_is_retried_and_the_run_completes(spec_file, tmp_path, ray_session):
    spec = spec_file(SPEC.replace("seeds: [0, 1]", "seeds: [0]"))
    result, key = kill_the_finetune_worker(spec, tmp_path, lambda store, key, progress: resume_state(store, key))
    assert result.status == "completed"
    record = result.records[key]
    assert record.outcome == "ran" and json.loads(record.summary)["resumed_from_epoch"] >= 1


def test_a_worker_that_dies_without_retries_names_rays_logs(spec_file, tmp_path, ray_session):
    spec = spec_file(SPEC.replace("seeds: [0, 1]", "seeds: [0]").replace("{default: {num_cpus: 1}}",
                                                                       "{default: {num_cpus: 1, max_retries: 0}}"))
    result, key = kill_the_finetune_worker(spec, tmp_path, lambda store, key, progress: progress["done"] > 0)
    record = result.records[key]
    assert record.outcome == "failed"
    logs = record.error.split("Ray's logs: ")[1].split(" (")[0]
    assert os.path.isabs(logs) and os.path.isfile(os.path.join(logs, "raylet.out")), record.error
