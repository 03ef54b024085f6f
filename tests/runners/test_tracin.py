"""The tracin stage equals TracInCP computed naively: one backward per example in float64 at every
checkpoint, weighted by that checkpoint's learning rate, each example in its own batch in stored
order (so the stage's length sorting, batching and id bookkeeping are checked too), under the
variant's masks: none (full), the test language's (subnetwork), and the train and test examples'
languages' on the SFT checkpoints (sft)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from runners import tracin
from runners.context import TaskContext
from runners.methods import models
from runners.methods.influence import scoring
from runners.tracin import TracinSpec
from runners.inputs import Data, Subnetwork
from tests.reference.influence import naive_scores

TRAIN, TEST = 12, 3  # per language


@pytest.fixture(scope="module", params=["full", "subnetwork", "sft"])
def scored(request, study, tmp_path_factory):
    variant = request.param
    workdir = tmp_path_factory.mktemp(f"tracin-{variant}")
    params = tracin.Params(
        seed=0, variant=variant, languages=study.languages, attention="sdpa", max_length=study.max_length,
        tracin=TracinSpec(variants=[variant], train_per_language=TRAIN, test_per_language=TEST, batch_size=5),
    )
    inputs = study.inputs("data", "finetune", "sft", "prune.ka", "prune.la")
    summary = tracin.run(params, inputs, workdir, TaskContext())
    ids = {r["example_no"]: r["example_id"] for r in pq.read_table(workdir / "tables" / "influence_examples.parquet").to_pylist()}
    rows = [{**r, "test_id": ids[r["test_no"]], "train_id": ids[r["train_no"]]}  # the task numbers its examples
            for r in pq.read_table(workdir / "tables" / "influence.parquet").to_pylist()]
    return variant, summary, rows


def naive_tracin(study, variant: str, normalize: str = "none", norms: dict | None = None) -> dict[tuple[int, str, str], float]:
    """{(epoch, test_id, train_id): lr_epoch * <grad, grad>} from the reference loop; with normalize
    "cosine", each product over both gradients' norms, the norms from the same loop's <g, g>. `norms`,
    when given, receives {(epoch, example_id): |grad|} of every test and train example."""
    languages = study.languages
    train = [r for lang in languages for r in Data(study.data).examples("train", lang)[:TRAIN]]
    test = [r for lang in languages for r in Data(study.data).examples("test", lang)[:TEST]]
    masks = {lang: Subnetwork(study.subnetwork(lang)).mask() for lang in languages}
    source = study.sft if variant == "sft" else study.finetune
    checkpoints = pq.read_table(source / "tables" / "checkpoints.parquet").to_pylist()
    expected = {}
    for checkpoint in checkpoints:
        model, tokenizer = models.load_checkpoint(source / checkpoint["path"])

        def one_by_one(rows):
            encoded = models.encode(tokenizer, rows, study.max_length)
            return list(models.batches(encoded, 1, tokenizer.pad_token_id, torch.device("cpu")))

        test_masks = [masks[r["language"]] for r in test] if variant != "full" else None
        train_masks = [masks[r["language"]] for r in train] if variant == "sft" else None
        scores = naive_scores(model, one_by_one(train), one_by_one(test), train_masks=train_masks, test_masks=test_masks)
        if normalize == "cosine" or norms is not None:
            test_norm = naive_scores(model, one_by_one(test), one_by_one(test), train_masks=test_masks, test_masks=test_masks).diagonal().sqrt()
            train_norm = naive_scores(model, one_by_one(train), one_by_one(train), train_masks=train_masks, test_masks=train_masks).diagonal().sqrt()
            for rows, values in ((test, test_norm), (train, train_norm)):
                for r, value in zip(rows, values.tolist()):
                    (norms if norms is not None else {})[(checkpoint["epoch"], r["example_id"])] = value
            if normalize == "cosine":
                scores = scores / test_norm.unsqueeze(1) / train_norm.unsqueeze(0)
        for i, t in enumerate(test):
            for j, z in enumerate(train):
                expected[(checkpoint["epoch"], t["example_id"], z["example_id"])] = checkpoint["learning_rate"] * float(scores[i, j])
    return expected


def test_scores_equal_the_naive_reference(scored, study):
    variant, summary, rows = scored
    expected = naive_tracin(study, variant)
    got = {(r["checkpoint"], r["test_id"], r["train_id"]): r["score"] for r in rows}
    assert len(rows) == len(got) == len(expected) == study.epochs * 2 * TEST * 2 * TRAIN
    assert got.keys() == expected.keys()
    scale = max(abs(v) for v in expected.values())
    assert max(abs(got[k] - expected[k]) for k in expected) <= 1e-5 * scale
    assert {r["variant"] for r in rows} == {variant} and {r["seed"] for r in rows} == {0}
    assert summary["scores"] == len(rows)


def test_cosine_scores_and_gradient_norms_equal_the_naive_reference(study, tmp_path):
    """`normalize: cosine` on the SFT checkpoints (masks on both sides): each product over both
    gradients' norms, and the `gradient_norms` table, each equal to the naive loop's; the cosines are
    bounded by the learning rate, which raw products of these gradients are not."""
    params = tracin.Params(
        seed=0, variant="sft", languages=study.languages, attention="sdpa", max_length=study.max_length,
        tracin=TracinSpec(variants=["sft"], train_per_language=TRAIN, test_per_language=TEST, batch_size=5, normalize="cosine"),
    )
    tracin.run(params, study.inputs("data", "sft", "prune.ka", "prune.la"), tmp_path, TaskContext())
    ids = {r["example_no"]: r["example_id"] for r in pq.read_table(tmp_path / "tables" / "influence_examples.parquet").to_pylist()}
    got = {(r["checkpoint"], ids[r["test_no"]], ids[r["train_no"]]): r["score"]
           for r in pq.read_table(tmp_path / "tables" / "influence.parquet").to_pylist()}
    norms = {}
    expected = naive_tracin(study, "sft", "cosine", norms)
    assert got.keys() == expected.keys()
    assert max(abs(got[k] - expected[k]) for k in expected) <= 1e-5 * max(abs(v) for v in expected.values())
    rates = {c["epoch"]: c["learning_rate"] for c in pq.read_table(study.sft / "tables" / "checkpoints.parquet").to_pylist()}
    assert all(abs(v) <= rates[epoch] * (1 + 1e-5) for (epoch, _, _), v in got.items())
    assert max(abs(v) for v in naive_tracin(study, "sft").values()) > 10 * max(rates.values())  # raw products are not bounded so
    table = pq.read_table(tmp_path / "tables" / "gradient_norms.parquet").to_pylist()
    got_norms = {(r["checkpoint"], r["example_id"]): r["norm"] for r in table}
    assert len(table) == len(got_norms) == len(norms) == study.epochs * 2 * (TEST + TRAIN)
    assert max(abs(got_norms[k] / norms[k] - 1) for k in norms) <= 1e-4  # float32 sums against float64
    assert {r["role"] for r in table if r["example_id"].split("-")[1] == "test"} == {"test"}


def test_subnetwork_masks_change_the_scores(study):
    """The study's subnetworks mask heads, so masked test gradients differ from the full model's."""
    assert all(s["heads_kept"] < 8 for s in study.summaries.values())
    full, masked = naive_tracin(study, "full"), naive_tracin(study, "subnetwork")
    assert max(abs(full[k] - masked[k]) for k in full) > 1e-3 * max(abs(v) for v in full.values())


def test_a_small_memory_budget_scores_in_blocks_with_the_same_result(study, tmp_path, monkeypatch):
    blocks = []
    real = scoring._test_blocks

    def counted(*args, **kwargs):  # observe how many blocks the test set was cut into
        for block in real(*args, **kwargs):
            blocks.append(len(block))
            yield block

    monkeypatch.setattr(scoring, "_test_blocks", counted)

    def scores(budget_mb, workdir):
        params = tracin.Params(
            seed=0, variant="full", languages=study.languages, attention="sdpa", max_length=study.max_length,
            tracin=TracinSpec(variants=["full"], train_per_language=TRAIN, test_per_language=TEST, batch_size=2,
                              test_block_mb=budget_mb),
        )
        tracin.run(params, study.inputs("data", "finetune"), workdir, TaskContext())
        return pq.read_table(workdir / "tables" / "influence.parquet"), pq.read_table(workdir / "tables" / "gradient_norms.parquet")

    whole = scores(None, tmp_path / "whole")
    assert len(blocks) == study.epochs  # one block per checkpoint
    blocks.clear()
    assert scores(0.01, tmp_path / "blocks") == whole  # 10 kB: a block per test batch; the norms too
    assert len(blocks) == study.epochs * 4  # 3 test examples per language: batches of 2 and 1, each its own block
