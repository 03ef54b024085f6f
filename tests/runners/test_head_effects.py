"""The head_effects stage on a small fine-tuned checkpoint: each stored loss against the same loss
computed by hand, one example at a time, with the head switched off by zeroing its input columns of
the attention output projection (no hooks); and the stage through the pipeline, planned beside the
other stages without changing their keys."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from langspec.cli import app
from langspec.compile import compile_spec
from langspec.load import load_spec
from runners import data, finetune, head_effects
from runners.context import TaskContext
from runners.data import DataSpec
from runners.inputs import Data, Inputs, Trained
from runners.methods import models
from runners.methods.sections import FinetuneSpec, ModelSpec
from store.artifacts import table_path
from tests.conftest import task_keys
from tests.runners.test_prune import masked_by_hand

LANGUAGES = ("ka", "la")
LAYERS, HEADS = 2, 2
MAX_LENGTH = 24
MODEL = ModelSpec(tiny={"layers": LAYERS, "heads": HEADS, "hidden": 32, "intermediate": 64, "vocab_size": 200})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A data task and a tiny model fine-tuned on it long enough that its heads matter: their directories."""
    root = tmp_path_factory.mktemp("head_effects")
    dirs = {"data": root / "data", "finetune": root / "finetune"}
    for path in dirs.values():
        path.mkdir()
    spec = DataSpec(languages=list(LANGUAGES), train_per_language=200, validation_per_language=9, test_per_language=4)
    data.run(data.Params(data=spec, fingerprint=""), Inputs({}), dirs["data"], TaskContext())
    config = FinetuneSpec(epochs=8, lr=2e-3, batch_size=16, max_length=MAX_LENGTH)
    params = finetune.Params(seed=0, model=MODEL, finetune=config)
    finetune.run(params, Inputs({"data": dirs["data"]}), dirs["finetune"], TaskContext())
    return dirs


def measured(trained, tmp_path, max_examples=None) -> list[dict]:
    params = head_effects.Params(seed=0, languages=LANGUAGES, max_examples=max_examples, attention="sdpa",
                                 max_length=MAX_LENGTH, batch_size=4)  # batches of 4: padded, unlike the reference
    head_effects.run(params, Inputs(trained), tmp_path, TaskContext())
    return pq.read_table(table_path(tmp_path, "head_effects")).to_pylist()


def mean_loss_by_hand(model, tokenizer, examples: list[dict]) -> float:
    """The model's own loss, one unpadded example at a time, averaged."""
    model.eval()
    losses = []
    with torch.no_grad():
        for example in examples:
            ids = tokenizer(example["text_a"], example["text_b"], truncation=True, max_length=MAX_LENGTH)["input_ids"]
            losses.append(float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([example["label"]])).loss))
    return sum(losses) / len(losses)


def test_each_loss_is_the_loss_with_that_head_zeroed_by_hand(trained, tmp_path):
    rows = measured(trained, tmp_path)
    assert sorted((r["language"], r["layer"], r["head"]) for r in rows) == [
        (lang, layer, head) for lang in LANGUAGES for layer in range(LAYERS) for head in range(HEADS)]
    checkpoint = Trained(trained["finetune"]).last_checkpoint()
    full, tokenizer = models.load_checkpoint(checkpoint.path)
    for language in LANGUAGES:
        examples = Data(trained["data"]).examples("validation", language)
        own = [r for r in rows if r["language"] == language]
        loss_all = mean_loss_by_hand(full, tokenizer, examples)
        assert all(r["loss_all"] == pytest.approx(loss_all, abs=1e-6) for r in own)
        assert all((r["split"], r["examples"], r["seed"]) == ("validation", len(examples), 0) for r in own)
        for row in own:
            kept = {(l, h): (l, h) != (row["layer"], row["head"]) for l in range(LAYERS) for h in range(HEADS)}
            without, _ = masked_by_hand(checkpoint.path, kept)
            assert row["loss_without"] == pytest.approx(mean_loss_by_hand(without, tokenizer, examples), abs=1e-6), row
        # The heads' effects differ by more than the tolerance: a row of another head, or the full model's loss, would fail.
        effects = sorted(r["loss_without"] - r["loss_all"] for r in own)
        assert min(b - a for a, b in zip(effects, effects[1:])) > 1e-5 and min(abs(e) for e in effects) > 1e-5


def test_max_examples_takes_the_first_examples_of_the_split(trained, tmp_path):
    rows = measured(trained, tmp_path, max_examples=3)
    full, tokenizer = models.load_checkpoint(Trained(trained["finetune"]).last_checkpoint().path)
    for language in LANGUAGES:
        first = Data(trained["data"]).examples("validation", language)[:3]
        own = [r for r in rows if r["language"] == language]
        assert {r["examples"] for r in own} == {3}
        assert own[0]["loss_all"] == pytest.approx(mean_loss_by_hand(full, tokenizer, first), abs=1e-6)


SPEC = """\
name: effects
data: {source: toy, languages: [ka, la, mi], train_per_language: 40, validation_per_language: 6, test_per_language: 4}
model: {tiny: {layers: 2, heads: 3, hidden: 12, intermediate: 24, vocab_size: 200}}
seeds: [0, 1]
finetune: {epochs: 1, batch_size: 16, max_length: 24}
prune: {enabled: false}
sparse_finetune: {enabled: false}
tracin: {enabled: false}
head_effects: {enabled: true}
resources: {default: {num_cpus: 1}}
"""


def test_the_pipeline_writes_a_row_per_seed_language_and_head(tmp_path):
    spec = tmp_path / "effects.yaml"
    spec.write_text(SPEC)
    store = tmp_path / "results"
    ran = CliRunner().invoke(app, ["run", str(spec), "--store", str(store), "--executor", "local"], catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    query = "SELECT count(*) AS n, count(DISTINCT (seed, language, layer, head)) AS distinct_heads FROM head_effects"
    counted = CliRunner().invoke(app, ["query", query, "--store", str(store), "--format", "csv"])
    assert counted.output.split() == ["n,distinct_heads", "36,36"]  # 2 layers x 3 heads x 3 languages x 2 seeds


def test_enabling_it_adds_one_task_per_seed_and_changes_no_other_key(tmp_path):
    spec = tmp_path / "effects.yaml"
    spec.write_text(SPEC.replace("prune: {enabled: false}", "prune: {enabled: true}")
                    .replace("tracin: {enabled: false}", "tracin: {enabled: true, variants: [full, subnetwork]}"))
    on = {task.name: (task.key, task.inputs) for task in compile_spec(load_spec(spec)).tasks}
    off = task_keys(spec, ["head_effects.enabled=false"])
    added = sorted(set(on) - set(off))
    assert added == ["head_effects[seed=0]", "head_effects[seed=1]"] and set(off) <= set(on)
    assert all(on[name][0] == key for name, key in off.items())
    for seed, name in enumerate(added):
        assert dict(on[name][1]) == {"data": off["data"], "finetune": off[f"finetune[seed={seed}]"]}
