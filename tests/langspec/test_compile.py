"""The compiler: content keys that are stable across processes and change exactly downstream."""

from __future__ import annotations

import subprocess
import sys


from langspec.compile import compile_spec
from langspec.load import load_spec


def graph_of(path, *overrides):
    return compile_spec(load_spec(path, list(overrides)))


def keys_by_name(graph) -> dict[str, str]:
    return {task.name: task.key for task in graph.tasks}


def test_graph_shape_and_names(small_spec):
    graph = graph_of(small_spec, "seeds=[0, 1]")
    assert [t.name for t in graph.tasks] == ["data", "finetune[seed=0]", "finetune[seed=1]"]
    data = graph.tasks[0]
    assert all(t.inputs == (("data", data.key),) for t in graph.tasks[1:])
    assert len({t.key for t in graph.tasks}) == 3


def test_keys_are_stable_across_processes(small_spec):
    here = keys_by_name(graph_of(small_spec))
    code = (
        "import json, sys; from langspec.compile import compile_spec; from langspec.load import load_spec; "
        "print(json.dumps({t.name: t.key for t in compile_spec(load_spec(sys.argv[1])).tasks}))"
    )
    other = subprocess.run([sys.executable, "-c", code, str(small_spec)], capture_output=True, text=True, check=True)
    assert here == __import__("json").loads(other.stdout)


def test_changing_a_field_changes_exactly_the_dependent_keys(small_spec):
    base = keys_by_name(graph_of(small_spec))
    epochs = keys_by_name(graph_of(small_spec, "finetune.epochs=3"))
    assert epochs["data"] == base["data"]
    assert epochs["finetune[seed=0]"] != base["finetune[seed=0]"]
    data_seed = keys_by_name(graph_of(small_spec, "data.seed=7"))
    assert data_seed["data"] != base["data"] and data_seed["finetune[seed=0]"] != base["finetune[seed=0]"]
    # Fields that no built stage reads, and the resources, change nothing.
    unrelated = keys_by_name(graph_of(small_spec, "analysis.top_k=5", "resources.default.num_cpus=2"))
    assert unrelated == base


def test_sweep_names_only_tasks_that_read_the_swept_field(small_spec):
    graph = graph_of(small_spec, "sweep={finetune.lr: [0.001, 0.002]}")
    assert [t.name for t in graph.tasks] == ["data", "finetune[seed=0,finetune.lr=0.001]", "finetune[seed=0,finetune.lr=0.002]"]
    # The point equal to the unswept spec has the unswept key: caches carry over into a sweep.
    assert graph.tasks[1].key == keys_by_name(graph_of(small_spec))["finetune[seed=0]"]


def test_prune_tasks_per_seed_and_language(small_spec):
    graph = graph_of(small_spec, "seeds=[0, 1]", "prune.enabled=true")
    by_name = {t.name: t for t in graph.tasks}
    prune = [t for t in graph.tasks if t.stage == "prune"]
    assert [t.name for t in prune] == [
        "prune[seed=0,language=ka]", "prune[seed=0,language=la]", "prune[seed=1,language=ka]", "prune[seed=1,language=la]"
    ]
    for task in prune:
        assert dict(task.inputs) == {"data": by_name["data"].key, "finetune": by_name[f"finetune[seed={task.params.seed}]"].key}


def test_a_prune_field_changes_only_prune_keys(small_spec):
    base = keys_by_name(graph_of(small_spec, "prune.enabled=true"))
    changed = keys_by_name(graph_of(small_spec, "prune.enabled=true", "prune.threshold=0.9"))
    # ...and the task downstream of the masks, mask_transfer.
    assert {name for name in base if base[name] != changed[name]} == {
        "prune[seed=0,language=ka]", "prune[seed=0,language=la]", "mask_transfer[seed=0]"}
    # Fine-tuning upstream changes every prune key too (the Merkle chain).
    epochs = keys_by_name(graph_of(small_spec, "prune.enabled=true", "finetune.epochs=3"))
    assert {name for name in base if base[name] != epochs[name]} == set(base) - {"data"}


def test_a_prune_sweep_shares_the_fine_tuning(small_spec):
    graph = graph_of(small_spec, "prune.enabled=true", "sweep={prune.threshold: [0.9, 0.95]}")
    names = [t.name for t in graph.tasks]
    assert names.count("finetune[seed=0]") == 1
    assert "prune[seed=0,language=ka,prune.threshold=0.9]" in names
    assert "prune[seed=0,language=la,prune.threshold=0.95]" in names
    assert len(names) == 2 + 4 + 2  # data, finetune; 2 prune tasks and a mask_transfer per point
    # Each point lists all of its tasks, the shared ones included, under the label of its values.
    by_key = {t.key: t.name for t in graph.tasks}
    assert [(label, sorted(by_key[key] for key in keys)) for label, keys in graph.points] == [
        (f"prune.threshold={t}", ["data", "finetune[seed=0]", f"mask_transfer[seed=0,prune.threshold={t}]",
                                  f"prune[seed=0,language=ka,prune.threshold={t}]",
                                  f"prune[seed=0,language=la,prune.threshold={t}]"])
        for t in (0.9, 0.95)
    ]
    assert graph_of(small_spec).points == (("", tuple(t.key for t in graph_of(small_spec).tasks)),)


def test_resources_per_stage(small_spec):
    graph = graph_of(small_spec, "resources.finetune={num_cpus: 2, num_gpus: 1}")
    assert graph.tasks[0].resources.num_gpus == 0
    assert graph.tasks[1].resources.num_gpus == 1 and graph.tasks[1].resources.num_cpus == 2


def test_tracin_tasks_read_the_masks_only_for_the_subnetwork_variant(small_spec):
    graph = graph_of(small_spec, "prune.enabled=true", "tracin.enabled=true", "tracin.variants=[full, subnetwork]")
    by_name = {t.name: t for t in graph.tasks}
    full, subnetwork = by_name["tracin[seed=0,variant=full]"], by_name["tracin[seed=0,variant=subnetwork]"]
    upstream = {"data": by_name["data"].key, "finetune": by_name["finetune[seed=0]"].key}
    assert dict(full.inputs) == upstream
    assert dict(subnetwork.inputs) == {**upstream, "prune.ka": by_name["prune[seed=0,language=ka]"].key,
                                       "prune.la": by_name["prune[seed=0,language=la]"].key}
    # A prune setting changes the subnetwork variant's key, not the full variant's.
    other = keys_by_name(graph_of(small_spec, "prune.enabled=true", "tracin.enabled=true",
                                  "tracin.variants=[full, subnetwork]", "prune.threshold=0.9"))
    assert other["tracin[seed=0,variant=full]"] == full.key
    assert other["tracin[seed=0,variant=subnetwork]"] != subnetwork.key


def test_sparse_finetune_reads_every_mask_and_applies_its_overrides(small_spec):
    on = ("prune.enabled=true", "sparse_finetune.enabled=true", "tracin.enabled=true", "tracin.variants=[sft]")
    graph = graph_of(small_spec, *on)
    by_name = {t.name: t for t in graph.tasks}
    sft = by_name["sparse_finetune[seed=0]"]
    masks = {"prune.ka": by_name["prune[seed=0,language=ka]"].key, "prune.la": by_name["prune[seed=0,language=la]"].key}
    assert dict(sft.inputs) == {"data": by_name["data"].key, **masks}
    assert sft.params.finetune == by_name["finetune[seed=0]"].params.finetune  # no overrides: finetune's settings
    assert dict(by_name["tracin[seed=0,variant=sft]"].inputs) == {"data": by_name["data"].key, "sft": sft.key, **masks}
    overridden = {t.name: t for t in graph_of(small_spec, *on, "sparse_finetune.lr=0.01").tasks}
    assert overridden["sparse_finetune[seed=0]"].params.finetune.lr == 0.01
    changed = {name for name, task in overridden.items() if task.key != by_name[name].key}
    assert changed == {"sparse_finetune[seed=0]", "tracin[seed=0,variant=sft]"}


def test_adding_a_tracin_variant_keeps_the_others_cached(small_spec):
    on = ("prune.enabled=true", "tracin.enabled=true")
    one = keys_by_name(graph_of(small_spec, *on, "tracin.variants=[full]"))
    two = keys_by_name(graph_of(small_spec, *on, "tracin.variants=[full, subnetwork]"))
    assert two["tracin[seed=0,variant=full]"] == one["tracin[seed=0,variant=full]"]


# data, then per seed: finetune, a prune per language, mask_transfer, sparse_finetune, 3 TracIn variants;
# study.yaml sweeps 3 prune thresholds, which share the fine-tuning and the full model's TracIn; ablation.yaml
# has 5 ablations per seed and no sparse fine-tuning, so 2 TracIn variants; controls.yaml sweeps 3 planted
# overlaps (each its own fine-tuning) with no sparse fine-tuning; negative_control.yaml is the demo with 3 seeds.
SHIPPED = {"demo": 1 + 1 + 5 + 1 + 1 + 3, "xnli": 1 + 3 * (1 + 5 + 1 + 1 + 3), "pawsx": 34, "marc": 34,
           "study": 1 + 3 * (1 + 1 + 3 * (5 + 1 + 1 + 2)), "ablation": 1 + 3 * (1 + 5 + 5 + 1 + 2),
           "controls": 1 + 3 * 3 * (1 + 5 + 1 + 2), "negative_control": 1 + 3 * (1 + 5 + 1 + 1 + 3),
           "real_text_quick": 1 + (1 + 5 + 1 + 1 + 3), "real_text": 1 + 3 * (1 + 5 + 1 + 1 + 3)}
# The shipped specs that run on a CPU, offline, from what langspec or a pip package holds.
ON_CPU = ("demo", "study", "ablation", "controls", "negative_control", "real_text_quick", "real_text")


def test_every_shipped_spec_compiles_to_its_study():
    from pathlib import Path

    specs = Path(__file__).parents[2] / "specs"
    assert {p.stem for p in specs.glob("*.yaml")} == set(SHIPPED)
    for name, count in SHIPPED.items():
        graph = compile_spec(load_spec(specs / f"{name}.yaml"))
        assert len(graph.tasks) == count, name
        stages = {t.stage for t in graph.tasks}
        expected = {"data", "finetune", "prune", "mask_transfer", "sparse_finetune", "tracin"}
        without_sft = expected - {"sparse_finetune"}
        assert stages == {"ablation": without_sft | {"ablation"}, "controls": without_sft}.get(name, expected)
        if name not in ON_CPU:  # the paper's setups put every model stage on a GPU, and read the hub
            assert all(t.resources.num_gpus == 1 for t in graph.tasks if t.stage != "data")
            assert graph.tasks[0].params.data.source == "hub" and graph.tasks[0].params.data.languages == ["en", "de", "es", "fr", "zh"]
