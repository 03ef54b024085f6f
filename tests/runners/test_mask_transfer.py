"""The mask_transfer stage: every language's test set under every language's subnetwork, checked
against the checkpoint masked by hand (the masked heads' input columns of the output projection
zeroed), one example at a time."""

from __future__ import annotations

import pyarrow.parquet as pq
import torch

from runners import mask_transfer
from runners.context import TaskContext
from runners.inputs import Data, Trained, mask_role
from store.artifacts import table_path
from tests.runners.test_prune import masked_by_hand


def test_accuracy_under_each_mask_matches_masking_by_hand(study, tmp_path):
    params = mask_transfer.Params(seed=0, languages=study.languages, attention="sdpa", max_length=study.max_length, batch_size=7)
    inputs = study.inputs("data", "finetune", *(mask_role(lang) for lang in study.languages))
    summary = mask_transfer.run(params, inputs, tmp_path, TaskContext())
    rows = pq.read_table(table_path(tmp_path, "mask_transfer")).to_pylist()
    assert {(r["language"], r["mask_language"]) for r in rows} == {(a, b) for a in study.languages for b in study.languages}

    checkpoint = Trained(study.finetune).last_checkpoint()
    for mask_language in study.languages:
        grid = pq.read_table(table_path(study.subnetwork(mask_language), "subnetworks")).to_pylist()
        model, tokenizer = masked_by_hand(checkpoint.path, {(r["layer"], r["head"]): r["kept"] for r in grid})
        model.eval()
        for language in study.languages:
            examples = Data(study.data).examples("test", language)
            correct = 0
            with torch.no_grad():
                for example in examples:
                    ids = tokenizer(example["text_a"], example["text_b"], truncation=True, max_length=study.max_length)["input_ids"]
                    correct += int(model(input_ids=torch.tensor([ids])).logits.argmax()) == example["label"]
            row = next(r for r in rows if (r["language"], r["mask_language"]) == (language, mask_language))
            assert (row["correct"], row["examples"], row["epoch"]) == (correct, len(examples), checkpoint.epoch)
            assert row["heads_kept"] == sum(r["kept"] for r in grid)
            assert row["accuracy"] == correct / len(examples)
    # The diagonal is the prune stage's own test accuracy of each subnetwork.
    for language in study.languages:
        stored = pq.read_table(table_path(study.subnetwork(language), "metrics")).to_pylist()
        own = next(m["value"] for m in stored if m["split"] == "test")
        assert summary["own_mask_accuracy"][language] == own
