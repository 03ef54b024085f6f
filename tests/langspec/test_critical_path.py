"""The driver starts the critical path first (each task's costliest chain of work, by stage weights)
and submits to Ray only what the cluster can run at once plus a few (#40 item 5): a task found ready
later can still go before the rest."""

from __future__ import annotations

from functools import cache

from langspec.backends import RayBackend
from langspec.compile import compile_spec
from langspec.execute import execute
from langspec.load import load_spec
from store.connections import connect_read_only

# Four languages, an ablation per language (cheap, nothing waits on them) and TracIn of the full model
# (as costly as a fine-tuning): five tasks ready together once fine-tuning is done.
ABLATIONS = """\
    name: ablations
    data: {source: toy, languages: [ka, kb, la, lb], train_per_language: 20, validation_per_language: 4,
           test_per_language: 4, seed: 0}
    model: {tiny: {layers: 1, heads: 2, hidden: 16, intermediate: 32, vocab_size: 100}}
    finetune: {epochs: 1, lr: 1.0e-3, batch_size: 16, max_length: 16}
    ablation: {enabled: true, mode: only}
    prune: {enabled: false}
    sparse_finetune: {enabled: false}
    tracin: {enabled: true, variants: [full], train_per_language: 4, test_per_language: 2}
    analysis: {top_k: 2}
    resources: {default: {num_cpus: 1}}
"""

# Every stage: once the last prune is done, sparse fine-tuning (then its TracIn) is the critical path,
# while TracIn of the full model has been ready since fine-tuning.
STUDY = """\
    name: study
    data: {source: toy, languages: [ka, la], train_per_language: 30, validation_per_language: 10,
           test_per_language: 4, seed: 0}
    model: {tiny: {layers: 1, heads: 2, hidden: 16, intermediate: 32, vocab_size: 100}}
    finetune: {epochs: 1, lr: 1.0e-3, batch_size: 16, max_length: 16}
    ablation: {enabled: true}
    prune: {enabled: true, batch_size: 5}
    sparse_finetune: {enabled: true}
    tracin: {enabled: true, train_per_language: 4, test_per_language: 2}
    analysis: {top_k: 2}
    resources: {default: {num_cpus: 1}}
"""


def started(store) -> list[str]:
    with connect_read_only(store) as con:
        return [name for (name,) in con.sql("SELECT name FROM tasks WHERE outcome = 'ran' ORDER BY started_at").fetchall()]


def test_a_tasks_critical_path_is_its_costliest_chain_of_dependents(spec_file):
    """Against the definition, by recursion over each task's dependents; and the order it gives the study."""
    from langspec.execute import STAGE_COST, _critical_paths

    graph = compile_spec(load_spec(spec_file(STUDY)))

    @cache
    def costliest(key: str) -> float:
        return STAGE_COST[graph[key].stage] + max((costliest(task.key) for task in graph.dependents(key)), default=0)

    critical = _critical_paths(graph)
    assert critical == {task.key: costliest(task.key) for task in graph.tasks}
    by_name = {task.name: critical[task.key] for task in graph.tasks}
    # Ready together after fine-tuning: the prunes lead to SFT and its TracIn, then TracIn alone, then an ablation.
    assert by_name["prune[seed=0,language=ka]"] > by_name["tracin[seed=0,variant=full]"] > by_name["ablation[seed=0,without=ka]"]
    # Ready together after the prunes: the count of dependents ties TracIn and mask_transfer (1 each); cost does not.
    assert by_name["sparse_finetune[seed=0]"] > by_name["tracin[seed=0,variant=subnetwork]"] > by_name["mask_transfer[seed=0]"]


def test_ray_gets_at_most_the_free_slots_and_two_more_the_costliest_first(ray_session, spec_file, tmp_path, monkeypatch):
    """On 2 CPUs, 1 CPU a task: never more than 4 tasks submitted and unfinished, though 5 are ready
    together, and TracIn (ready with four ablations, after them in the graph) submitted first. Ray
    starts a task on the next worker free, so the order of submission, not of start, is compared."""
    submitted = []
    submit = RayBackend.submit

    def counted(backend, call, max_retries=3):
        submit(backend, call, max_retries)
        submitted.append((call.name, len(backend._pending)))

    monkeypatch.setattr(RayBackend, "submit", counted)
    loaded = load_spec(spec_file(ABLATIONS))
    graph = compile_spec(loaded)
    assert [task.stage for task in graph.tasks] == ["data", "finetune"] + ["ablation"] * 4 + ["tracin"]
    result = execute(graph, loaded, tmp_path / "store", executor="ray")
    assert result.status == "completed"
    assert max(in_flight for _, in_flight in submitted) == 2 + 2, submitted
    names = [name for name, _ in submitted]
    assert names[:3] == ["data", "finetune[seed=0]", "tracin[seed=0,variant=full]"], names
    assert sorted(names) == sorted(task.name for task in graph.tasks)


def test_in_process_each_next_task_is_the_costliest_of_all_ready_then(spec_file, tmp_path):
    """TracIn of the full model is ready from fine-tuning on, sparse fine-tuning only after the last
    prune: run one at a time, sparse fine-tuning still starts first, and ablations, ready earliest of
    the three, last."""
    loaded = load_spec(spec_file(STUDY))
    result = execute(compile_spec(loaded), loaded, tmp_path / "store", executor="local")
    assert result.status == "completed"
    stages = [name.split("[")[0] for name in started(tmp_path / "store")]
    assert stages == ["data", "finetune", "prune", "prune", "sparse_finetune", "tracin", "tracin", "tracin",
                      "ablation", "ablation", "mask_transfer"], stages
