"""The prune stage on a real fine-tuned checkpoint: its tables agree with each other and with an
independent masking (the masked heads' input columns of the output projection zeroed by hand)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from runners.methods import models
from runners.inputs import Data, Trained

THRESHOLD = 0.95  # the study fixture's prune.threshold
EPOCHS = 4  # and its fine-tuning epochs


@pytest.fixture(scope="module")
def pruned(study):
    """The study's ka subnetwork: its directories, summary and tables."""
    assert (study.prune.threshold, study.epochs) == (THRESHOLD, EPOCHS)
    dirs = {"data": study.data, "finetune": study.finetune, "prune": study.subnetwork("ka")}
    tables = {name: pq.read_table(dirs["prune"] / "tables" / f"{name}.parquet").to_pylist()
              for name in ("subnetworks", "prune_steps", "metrics")}
    return dirs, study.summaries["ka"], tables


def masked_by_hand(checkpoint, kept: dict[tuple[int, int], bool]):
    """The checkpoint with each pruned head's slice of the attention output projection's input zeroed."""
    model, tokenizer = models.load_checkpoint(checkpoint)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        for (layer, head), keep in kept.items():
            if not keep:
                dense = model.roberta.encoder.layer[layer].attention.output.dense
                dense.weight[:, head * head_dim : (head + 1) * head_dim] = 0.0
    return model, tokenizer


def test_mask_grid_and_trajectory(pruned):
    _, summary, tables = pruned
    grid = tables["subnetworks"]
    assert sorted((r["layer"], r["head"]) for r in grid) == [(l, h) for l in range(2) for h in range(4)]
    assert all(0.0 <= r["importance"] <= 1.0 for r in grid)  # global min-max
    steps = tables["prune_steps"]
    assert steps[0]["step"] == 0 and steps[0]["heads_kept"] == 8 and steps[0]["ratio_to_full"] == 1.0
    # One head (round(0.1 x 8)) per step; every step but the last is above the bar.
    assert [s["heads_kept"] for s in steps] == list(range(8, 8 - len(steps), -1))
    full = steps[0]["metric_value"]
    for s in steps:
        assert s["accepted"] == (s["metric_value"] >= THRESHOLD * full)
        assert s["ratio_to_full"] == pytest.approx(s["metric_value"] / full)
    assert all(s["accepted"] for s in steps[:-1])
    assert not steps[-1]["accepted"]  # this model stops before running out of heads
    assert len({s["metric_value"] for s in steps}) > 1  # the masks really change its predictions
    kept = sum(r["kept"] for r in grid)
    final = [s for s in steps if s["accepted"]][-1]
    assert kept == final["heads_kept"] == summary["heads_kept"] < 8
    assert final["metric_value"] >= THRESHOLD * full


def test_subnetwork_metrics_match_hand_masked_model(pruned):
    dirs, _, tables = pruned
    checkpoint = Trained(dirs["finetune"]).last_checkpoint()
    assert checkpoint.epoch == EPOCHS
    model, tokenizer = masked_by_hand(checkpoint.path, {(r["layer"], r["head"]): r["kept"] for r in tables["subnetworks"]})
    metrics = {(m["split"], m["variant"], m["language"], m["epoch"]): m["value"] for m in tables["metrics"]}
    assert set(metrics) == {("validation", "subnetwork", "ka", EPOCHS), ("test", "subnetwork", "ka", EPOCHS)}
    for split in ("validation", "test"):
        rows = Data(dirs["data"]).examples(split=split, language="ka")
        by_hand = models.accuracy_by_language(
            model, models.encode(tokenizer, rows, 32), 7, tokenizer.pad_token_id, torch.device("cpu")
        )
        assert metrics[(split, "subnetwork", "ka", EPOCHS)] == by_hand["ka"]
    # The stopping rule ran on validation: the last accepted step is the stored validation accuracy.
    final = [s for s in tables["prune_steps"] if s["accepted"]][-1]
    assert final["metric_value"] == metrics[("validation", "subnetwork", "ka", EPOCHS)]
