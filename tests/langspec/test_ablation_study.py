"""The ablation in a whole run: the monolingual models of `ablation.mode: only` are pruned for their
language, and their masks reach the store's mask analyses beside the multilingual model's."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from langspec.compile import compile_spec
from langspec.execute import execute
from langspec.load import load_spec
from store.artifacts import table_path, task_dir
from store.connections import connect_read_only
from store.queries import run_named

SPEC = """\
name: only
data: {source: toy, languages: [ka, la], train_per_language: 60, validation_per_language: 20, test_per_language: 20, seed: 0}
model: {tiny: {layers: 2, heads: 2, hidden: 16, intermediate: 32, vocab_size: 200}}
seeds: [0]
finetune: {epochs: 2, lr: 3.0e-3, batch_size: 16, max_length: 32}
ablation: {enabled: true, mode: only}
prune: {enabled: true, batch_size: 5}
sparse_finetune: {enabled: false}
tracin: {enabled: false}
resources: {default: {num_cpus: 1}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("only")
    (root / "only.yaml").write_text(SPEC)
    loaded = load_spec(root / "only.yaml")
    graph = compile_spec(loaded)
    result = execute(graph, loaded, root / "store", executor="local")
    assert result.status == "completed"
    return graph, root / "store"


def kept_heads(store, key) -> set[tuple[int, int]]:
    rows = pq.read_table(table_path(task_dir(store, key), "subnetworks")).to_pylist()
    return {(r["layer"], r["head"]) for r in rows if r["kept"]}


def test_each_monolingual_model_is_trained_on_its_language_and_pruned_for_it(run):
    graph, store = run
    by_name = {task.name: task for task in graph.tasks}
    assert {"ablation[seed=0,only=ka]", "ablation[seed=0,only=la]",
            "prune[seed=0,language=ka,model=only]", "prune[seed=0,language=la,model=only]"} <= set(by_name)
    with connect_read_only(store) as con:
        for language in ("ka", "la"):
            ablation = by_name[f"ablation[seed=0,only={language}]"]
            summary = json.loads(con.sql("SELECT summary FROM tasks WHERE task_key = $k", params={"k": ablation.key}).fetchall()[0][0])
            assert summary["train_examples"] == {language: 60}
            # The monolingual prune task starts from the monolingual model: its step 0 is that model's accuracy.
            pruned = by_name[f"prune[seed=0,language={language},model=only]"]
            assert dict(pruned.inputs)["ablation"] == ablation.key
            step0 = con.sql("SELECT metric_value FROM prune_steps WHERE task_key = $k AND step = 0", params={"k": pruned.key}).fetchall()
            accuracy = con.sql("SELECT value FROM final_metrics WHERE task_key = $k AND split = 'validation' AND language = $l",
                               params={"k": ablation.key, "l": language}).fetchall()
            assert step0[0][0] == pytest.approx(accuracy[0][0])


def test_the_mask_analyses_read_the_monolingual_masks_beside_the_multilingual_ones(run):
    graph, store = run
    key = {task.name: task.key for task in graph.tasks}
    with connect_read_only(store) as con:
        jaccard = {(r["model"], r["language_a"], r["language_b"]): r for r in run_named(con, "subnetwork_jaccard", run_id=1, point="").to_pylist()}
        sparsity = {(r["model"], r["language"]) for r in run_named(con, "subnetwork_sparsity", run_id=1, point="").to_pylist()}
        accuracy = run_named(con, "accuracy", run_id=1, point="").to_pylist()
    assert set(jaccard) == {(model, a, b) for model in ("multilingual", "only") for a in ("ka", "la") for b in ("ka", "la")}
    assert sparsity == {(model, lang) for model in ("multilingual", "only") for lang in ("ka", "la")}
    for model, suffix in (("multilingual", ""), ("only", ",model=only")):
        ka, la = (kept_heads(store, key[f"prune[seed=0,language={lang}{suffix}]"]) for lang in ("ka", "la"))
        row = jaccard[(model, "ka", "la")]
        assert (row["both_kept"], row["either_kept"]) == (len(ka & la), len(ka | la))
        assert row["finetune"] == key["finetune[seed=0]"][:12]  # one study: the seed's full fine-tuning
    # The monolingual subnetworks' accuracy is not the multilingual subnetworks' (variant only_subnetwork).
    assert {r["language"] for r in accuracy} == {"ka", "la"} and all(r["seeds"] == 1 for r in accuracy)


def test_downstream_stages_get_only_the_multilingual_models_masks(spec_file):
    spec = spec_file(SPEC.replace("sparse_finetune: {enabled: false}", "sparse_finetune: {enabled: true}")
                     .replace("tracin: {enabled: false}", "tracin: {enabled: true, variants: [subnetwork, sft]}"))
    graph = compile_spec(load_spec(spec))
    multilingual = {task.key for task in graph.tasks if task.stage == "prune" and "model=only" not in task.name}
    assert len(multilingual) == 2
    for task in graph.tasks:
        if task.stage in ("sparse_finetune", "tracin"):
            masks = {key for role, key in task.inputs if role.startswith("prune.")}
            assert masks == multilingual, task.name
