"""Promise 4: a fine-tuning that dies mid-way continues from its last finished epoch, and ends with
the same weights and metrics, bit for bit, as one that never stopped (CPU)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from runners import data, finetune
from runners.context import RESUME_FILE, TaskContext
from runners.data import DataSpec
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.inputs import Inputs

MODEL = ModelSpec(tiny={"layers": 2, "heads": 2, "hidden": 16, "intermediate": 32, "vocab_size": 200})
CONFIG = FinetuneSpec(epochs=3, lr=1e-3, batch_size=16, max_length=32)  # dropout on: the RNG state matters


class Died(Exception):
    pass


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    spec = DataSpec(languages=["ka", "la"], train_per_language=80, validation_per_language=20, test_per_language=20)
    data.run(data.Params(data=spec, fingerprint=""), Inputs({}), path, TaskContext())
    return path


def weights(task_dir, epoch):
    return load_file(task_dir / "checkpoints" / f"epoch-{epoch}" / "model.safetensors")


def test_a_resumed_fine_tuning_equals_an_uninterrupted_one(data_dir, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    whole.mkdir(), resumed.mkdir()
    params = finetune.Params(seed=0, model=MODEL, finetune=CONFIG)
    finetune.run(params, Inputs({"data": data_dir}), whole, TaskContext())

    steps_per_epoch = 160 // 16

    def die_in_epoch_two(done, total, note):
        if done == steps_per_epoch + 3:  # three steps into epoch 2: its work is lost, epoch 1's is not
            raise Died

    with pytest.raises(Died):
        finetune.run(params, Inputs({"data": data_dir}), resumed, TaskContext(report=die_in_epoch_two))
    assert (resumed / RESUME_FILE).is_file() and not (resumed / "checkpoints" / "epoch-2").exists()

    seen = []
    summary = finetune.run(params, Inputs({"data": data_dir}), resumed, TaskContext(report=lambda d, t, n: seen.append(d)))
    assert summary["resumed_from_epoch"] == 1
    assert min(seen) == steps_per_epoch + 1  # training went on with epoch 2's first step
    assert not (resumed / RESUME_FILE).exists()
    for epoch in (1, 2, 3):
        a, b = weights(whole, epoch), weights(resumed, epoch)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), epoch
    for table in ("metrics", "checkpoints"):
        assert pq.read_table(whole / "tables" / f"{table}.parquet") == pq.read_table(resumed / "tables" / f"{table}.parquet")
