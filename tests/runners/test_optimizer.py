"""`finetune.optimizer`: foreach (the default) and fused are both AdamW, as a naive loop writes it out;
the choice reaches torch's optimizer; and only fused changes the task keys."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch

from runners.methods import models, training
from runners.methods.sections import ModelSpec
from tests.conftest import task_keys

LR, WEIGHT_DECAY, BETAS, EPS, BATCH = 1e-2, 0.01, (0.9, 0.999), 1e-8, 4


def tiny_setup():
    torch.set_num_threads(1)
    texts = ["ka mo ri", "la ne su to", "ka ri", "su to la", "mo ne", "ri ka su", "to to ne", "la mo"]
    tokenizer = models.train_tokenizer(texts, 64)
    rows = [{"text_a": t, "text_b": None, "label": i % 3, "language": "ka", "example_id": str(i)} for i, t in enumerate(texts)]
    torch.manual_seed(0)
    model = models.build_model(
        ModelSpec(tiny={"layers": 1, "heads": 2, "hidden": 8, "intermediate": 16, "vocab_size": 64}),
        tokenizer, ["a", "b", "c"], 16, seed=0)
    return model, models.encode(tokenizer, rows, 16), tokenizer.pad_token_id


BATCHES = [[0, 1, 2, 3], [4, 5, 6, 7], [7, 5, 3, 1]]


def train_with(optimizer: str, model, encoded, pad_id):
    model, seen = copy.deepcopy(model), []

    def hook(indices, adamw):
        seen.append(dict(adamw.defaults))
        return nullcontext()

    torch.manual_seed(1)  # dropout's draws, the same in the naive loop
    list(training.train(model, encoded, lambda epoch: BATCHES, epochs=1, lr=LR, weight_decay=WEIGHT_DECAY, warmup_ratio=0.0,
                        optimizer=optimizer, pad_id=pad_id, device=torch.device("cpu"), report=lambda *a: None, step_hook=hook))
    return model, seen


def naive_adamw(model, encoded, pad_id):
    """AdamW written out per parameter (decoupled weight decay, bias-corrected moments), at the linear
    schedule's learning rate of each step with no warm-up: lr * (total - step) / total."""
    model = copy.deepcopy(model)
    model.train()
    moments = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in model.named_parameters()}
    total = len(BATCHES)
    torch.manual_seed(1)
    for step, indices in enumerate(BATCHES, start=1):
        model.zero_grad(set_to_none=True)
        model(**models.collate(encoded, indices, pad_id, torch.device("cpu"))).loss.backward()
        lr = LR * (total - (step - 1)) / total
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.grad is None:
                    continue
                m, v = moments[name]
                p.mul_(1 - lr * WEIGHT_DECAY)
                m.mul_(BETAS[0]).add_(p.grad, alpha=1 - BETAS[0])
                v.mul_(BETAS[1]).addcmul_(p.grad, p.grad, value=1 - BETAS[1])
                m_hat, v_hat = m / (1 - BETAS[0] ** step), v / (1 - BETAS[1] ** step)
                p.sub_(lr * m_hat / (v_hat.sqrt() + EPS))
    return model


@pytest.mark.parametrize("optimizer", ["foreach", "fused"])
def test_each_optimizer_is_adamw_as_a_naive_loop_writes_it(optimizer):
    model, encoded, pad_id = tiny_setup()
    trained, seen = train_with(optimizer, model, encoded, pad_id)
    assert len(seen) == len(BATCHES) and all(d[optimizer] for d in seen)  # the choice reaches torch's optimizer
    other = {"foreach": "fused", "fused": "foreach"}[optimizer]
    assert not any(d.get(other) for d in seen)
    reference = naive_adamw(model, encoded, pad_id)
    moved = 0
    for (name, p), q, start in zip(trained.named_parameters(), reference.parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
        moved += int(not torch.equal(p, start))
    assert moved > 0


def test_only_fused_changes_the_task_keys(small_spec):
    trains = ["prune.enabled=true", "sparse_finetune.enabled=true"]
    unset, foreach, fused = (task_keys(small_spec, trains + extra) for extra in ([], ["finetune.optimizer=foreach"],
                                                                                ["finetune.optimizer=fused"]))
    assert unset == foreach
    trained = {name for name in unset if name.startswith(("finetune", "prune", "sparse_finetune"))}
    assert trained and all(fused[name] != unset[name] for name in trained)
    assert fused["data"] == unset["data"]
