"""Full fine-tuning: a checkpoint per epoch with the learning rate in force, and metrics that the
saved checkpoints reproduce."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import torch

from runners import data, finetune
from runners.context import TaskContext
from runners.data import DataSpec
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.methods import models, toy
from runners.inputs import Data, Inputs

N_TRAIN, BATCH, EPOCHS, LR = 2 * 50, 16, 3, 1e-3


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """The learning rate of optimiser step `step` (0-based), written out independently of transformers."""
    if step < warmup:
        return LR * step / warmup
    return LR * max(0.0, (total - step) / (total - warmup))


def test_checkpoints_learning_rates_and_metrics(tmp_path):
    data_dir, task_dir = tmp_path / "data", tmp_path / "finetune"
    data_dir.mkdir(), task_dir.mkdir()
    data_spec = DataSpec(languages=["ka", "la"], train_per_language=50, validation_per_language=20, test_per_language=20)
    data.run(data.Params(data=data_spec, fingerprint=""), Inputs({}), data_dir, TaskContext())
    params = finetune.Params(
        seed=0,
        model=ModelSpec(tiny={"layers": 2, "heads": 2, "hidden": 16, "intermediate": 32, "vocab_size": 200}),
        finetune=FinetuneSpec(epochs=EPOCHS, lr=LR, batch_size=BATCH, max_length=32, warmup_ratio=0.1),
    )
    summary = finetune.run(params, Inputs({"data": data_dir}), task_dir, TaskContext())

    checkpoints = pq.read_table(task_dir / "tables" / "checkpoints.parquet").to_pylist()
    steps_per_epoch = math.ceil(N_TRAIN / BATCH)
    total = steps_per_epoch * EPOCHS
    warmup = int(0.1 * total)
    assert [c["epoch"] for c in checkpoints] == [1, 2, 3]
    assert [c["step"] for c in checkpoints] == [steps_per_epoch * e for e in (1, 2, 3)]
    for c in checkpoints:
        steps = range((c["epoch"] - 1) * steps_per_epoch, c["epoch"] * steps_per_epoch)
        expected = sum(linear_schedule(s, total, warmup) for s in steps) / steps_per_epoch
        assert math.isclose(c["learning_rate"], expected, rel_tol=1e-9)
        assert (task_dir / c["path"] / "model.safetensors").is_file()
        assert (task_dir / c["path"] / "tokenizer.json").is_file()

    # The last checkpoint, loaded from disk, reproduces the stored test accuracy of every language.
    metrics = pq.read_table(task_dir / "tables" / "metrics.parquet").to_pylist()
    final = [m for m in metrics if m["split"] == "test" and m["epoch"] == EPOCHS]
    stored = {m["language"]: m["value"] for m in final if m["metric"] == "accuracy"}
    model, tokenizer = models.load_checkpoint(task_dir / checkpoints[-1]["path"])
    test = models.encode(tokenizer, Data(data_dir).examples(split="test"), 32)
    assert models.accuracy_by_language(model, test, 7, tokenizer.pad_token_id, torch.device("cpu")) == stored
    # ...and its predicted-label counts, counted here one example at a time.
    by_hand = {}
    for i in range(len(test)):
        label = int(model(input_ids=torch.tensor([test.input_ids[i]])).logits.argmax())
        by_hand[(test.languages[i], f"predicted_label_{label}")] = by_hand.get((test.languages[i], f"predicted_label_{label}"), 0) + 1
    counts = {(m["language"], m["metric"]): m["value"] for m in final if m["metric"].startswith("predicted_label_")}
    assert {key: value for key, value in counts.items() if value} == by_hand
    assert len(counts) == len(stored) * 3  # every label, predicted or not
    assert summary["test_accuracy"] == stored
    assert {(m["split"], m["epoch"]) for m in metrics} == {(s, e) for s in ("validation", "test") for e in (1, 2, 3)}


def test_padding_does_not_change_predictions(tmp_path):
    """Dynamic padding: an example scores the same alone and in a batch padded to a longer one."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data.run(data.Params(data=DataSpec(languages=["ka"], train_per_language=30, validation_per_language=5,
                                       test_per_language=5), fingerprint=""), {}, data_dir, TaskContext())
    rows = Data(data_dir).examples(split="train")
    spec = ModelSpec(tiny={"layers": 2, "heads": 2, "hidden": 16, "intermediate": 32, "vocab_size": 200})
    tokenizer = models.build_tokenizer(spec, [r["text_a"] for r in rows] + [r["text_b"] for r in rows])
    model = models.build_model(spec, tokenizer, toy.LABELS, 32, seed=0).eval()
    encoded = models.encode(tokenizer, rows, 32)
    lengths = [len(ids) for ids in encoded.input_ids]
    short, long = lengths.index(min(lengths)), lengths.index(max(lengths))
    assert lengths[short] < lengths[long]
    cpu = torch.device("cpu")
    with torch.no_grad():
        alone = model(**{k: v for k, v in models.collate(encoded, [short], 1, cpu).items() if k != "labels"}).logits
        padded = model(**{k: v for k, v in models.collate(encoded, [short, long], 1, cpu).items() if k != "labels"}).logits
    torch.testing.assert_close(alone[0], padded[0], rtol=1e-5, atol=1e-6)
