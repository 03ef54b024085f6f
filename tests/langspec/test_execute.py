"""Both executors on real tasks: results in DuckDB, failures skip only their dependents, caching."""

from __future__ import annotations

import json

import pytest

from langspec.compile import compile_spec
from langspec.errors import PlanError
from langspec.execute import execute
from langspec.load import load_spec
from runners.methods import toy
from store.artifacts import is_complete
from store.connections import connect_read_only

FILES_SPEC = """\
    name: branches
    data: {{source: files, path: {good}, languages: [ka, la], train_per_language: 40,
           validation_per_language: 10, test_per_language: 10}}
    model: {{tiny: {{layers: 1, heads: 2, hidden: 16, intermediate: 32, vocab_size: 200}}}}
    finetune: {{epochs: 1, lr: 1.0e-3, batch_size: 16, max_length: 32}}
    prune: {{enabled: false}}
    sparse_finetune: {{enabled: false}}
    tracin: {{enabled: false}}
    sweep: {{data.path: [{good}, {bad}]}}
"""


def write_files_source(root, languages=("ka", "la"), corrupt=False, seed=0):
    sizes = {"train": 40, "validation": 10, "test": 10}
    rows = toy.generate(list(languages), sizes, parallel=True, lexicon_overlap=0.5, seed=seed)
    for language in languages:
        for split in sizes:
            path = root / language / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = [json.dumps(r) for r in rows if r["language"] == language and r["split"] == split]
            if corrupt and split == "test":
                lines[3] = "{not json"
            path.write_text("\n".join(lines) + "\n")
    return root


def query(root, sql):
    with connect_read_only(root) as con:
        return con.sql(sql).fetchall()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_executor_runs_the_graph_into_the_store(executor, small_spec, tmp_path, request):
    if executor == "ray":
        request.getfixturevalue("ray_session")
    loaded = load_spec(small_spec)
    graph = compile_spec(loaded)
    result = execute(graph, loaded, tmp_path / "store", executor=executor)
    assert result.status == "completed"
    assert [r.outcome for r in result.records.values()] == ["ran", "ran"]
    store = tmp_path / "store"
    assert query(store, "SELECT DISTINCT language FROM metrics WHERE metric = 'accuracy' ORDER BY 1") == [("ka",), ("la",)]
    assert query(store, "SELECT count(*) FROM examples") == [(200,)]
    assert query(store, "SELECT epoch FROM checkpoints ORDER BY epoch") == [(1,), (2,)]
    assert query(store, "SELECT count(*) FROM tasks WHERE outcome = 'ran' AND device = 'cpu'") == [(2,)]
    assert all(is_complete(store, t.key) for t in graph.tasks)
    assert not list((store / "tasks").glob(".tmp-*"))

    again = execute(graph, loaded, store, executor=executor)
    assert [r.outcome for r in again.records.values()] == ["cached", "cached"]
    assert query(store, "SELECT count(*) FROM metrics") == query(store, "SELECT count(*) FROM metrics WHERE task_key IN "
                                                                       "(SELECT task_key FROM results)")


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_failed_task_skips_only_its_dependents(executor, tmp_path, spec_file, request):
    if executor == "ray":
        request.getfixturevalue("ray_session")
    good = write_files_source(tmp_path / "good")
    bad = write_files_source(tmp_path / "bad", corrupt=True)
    loaded = load_spec(spec_file(FILES_SPEC.format(good=good, bad=bad)))
    graph = compile_spec(loaded)
    assert len(graph.tasks) == 4
    result = execute(graph, loaded, tmp_path / "store", executor=executor)
    outcomes = {r.name: r.outcome for r in result.records.values()}
    assert result.status == "failed"
    assert sorted(outcomes.values()) == ["failed", "ran", "ran", "skipped"]
    [failed] = result.failed
    assert failed.name == f"data[data.path={bad}]" and "JSONDecodeError" in failed.error and "Traceback" in failed.error
    assert outcomes[f"finetune[seed=0,data.path={bad}]"] == "skipped"
    assert query(tmp_path / "store", "SELECT count(DISTINCT task_key) FROM metrics") == [(1,)]

    # After the fix only what is missing runs (other examples: data with the good data's content would be
    # the good data's task, whose key follows the content, not the directory).
    write_files_source(tmp_path / "bad", seed=1)
    fixed = load_spec(spec_file(FILES_SPEC.format(good=good, bad=bad), name="fixed.yaml"))
    rerun = execute(compile_spec(fixed), fixed, tmp_path / "store", executor=executor)
    assert sorted(r.outcome for r in rerun.records.values()) == ["cached", "cached", "ran", "ran"]


def test_too_few_gpus_is_an_error_before_anything_runs(small_spec, tmp_path):
    loaded = load_spec(small_spec, ["resources.finetune={num_gpus: 1}"])
    with pytest.raises(PlanError, match=r"finetune ask for 1 GPU\(s\) per task, but this machine has 0"):
        execute(compile_spec(loaded), loaded, tmp_path / "store", executor="local")
    assert query(tmp_path / "store", "SELECT count(*) FROM runs") == [(0,)]
    assert [p for p in (tmp_path / "store" / "tasks").iterdir() if not p.name.startswith(".")] == []  # lock files only


def test_same_spec_gives_bit_identical_weights_and_metrics(small_spec, tmp_path):
    loaded = load_spec(small_spec)
    graph = compile_spec(loaded)
    for store in ("a", "b"):
        execute(graph, loaded, tmp_path / store, executor="local")
    sql = "SELECT language, split, epoch, value FROM metrics ORDER BY ALL"
    assert query(tmp_path / "a", sql) == query(tmp_path / "b", sql)
    weights = f"tasks/{graph.tasks[1].key}/checkpoints/epoch-2/model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()


@pytest.mark.parametrize("executor", ["ray", "local"])
def test_a_task_runs_with_the_intended_threads_priority_and_wait_policy(executor, small_spec, tmp_path):
    """Read back from inside each task (its manifest): as many torch threads as its num_cpus, the
    OpenMP wait policy the user set (recorded, not changed), and, in the Ray a run starts, the
    priority of the user's own processes (Ray's default is 15) and workers that had imported torch
    and the methods before their first task. A run of its own: the suite's Ray is not langspec's."""
    import os
    import subprocess
    import sys

    from store import artifacts

    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k != "RAY_worker_niceness"} | {"OMP_WAIT_POLICY": "ACTIVE"}
    done = subprocess.run([sys.executable, "-m", "langspec", "run", str(small_spec), "--store", str(store), "--executor", executor],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    manifests = [artifacts.read_manifest(store, task.key) for task in compile_spec(load_spec(small_spec)).tasks]
    assert [(m["threads"], m["omp_wait_policy"]) for m in manifests] == [(1, "ACTIVE")] * len(manifests)
    assert all(m["niceness"] == os.nice(0) for m in manifests)  # 0, or the user's own, never Ray's 15
    # Ray: every worker imported them as it started. Local: the driver imports them as its tasks need them.
    preloaded = [m["preloaded"] for m in manifests]
    assert all(preloaded) if executor == "ray" else not preloaded[0]


def test_the_cluster_docs_give_the_modules_a_worker_preloads():
    """docs/paper-study.md tells a cluster's administrator the setting langspec's own Ray gets."""
    from pathlib import Path

    from langspec.worker import WORKER_PRELOAD

    page = (Path(__file__).resolve().parents[2] / "docs" / "paper-study.md").read_text()
    assert f"`RAY_preload_python_modules={','.join(WORKER_PRELOAD)}`" in page


def test_a_tasks_chain_is_its_longest_path_of_dependents(everyday_study):
    """Against the definition, by recursion over each task's dependents."""
    from functools import cache

    from langspec.execute import _chain_lengths

    graph = compile_spec(load_spec(everyday_study["spec"]))

    @cache
    def longest(key: str) -> int:
        return 1 + max((longest(task.key) for task in graph.dependents(key)), default=0)

    chain = _chain_lengths(graph)
    assert chain == {task.key: longest(task.key) for task in graph.tasks}
    assert {task.stage: chain[task.key] for task in graph.tasks if task.stage in ("sparse_finetune", "mask_transfer")} == {
        "sparse_finetune": 2, "mask_transfer": 1}  # sft's TracIn waits on it


def test_of_the_tasks_ready_together_the_longest_chain_starts_first(everyday_study):
    """Once the last prune is done, sparse fine-tuning (then its TracIn) and mask_transfer are ready
    together: the local executor runs tasks in the order it gets them, and it got sparse fine-tuning
    first, though mask_transfer comes first in the graph."""
    with connect_read_only(everyday_study["store"]) as con:
        started = [name.split("[")[0] for (name,) in con.execute("SELECT name FROM tasks ORDER BY started_at").fetchall()]
    in_graph = [task.stage for task in compile_spec(load_spec(everyday_study["spec"])).tasks]
    assert in_graph.index("mask_transfer") < in_graph.index("sparse_finetune")
    assert started.index("sparse_finetune") < started.index("mask_transfer")
