"""TracInCP's inner products for one checkpoint: the test gradients kept in blocks that fit a memory
budget, the train gradients streamed past each block."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from runners.methods.influence.batches import Batch, Masks, device_of, exact_eval, gates_on, masks_per_batch, to_device, trimmed_length
from runners.methods.influence.forms import GradientForm, KeptForm, Scratch, TrainGradient
from runners.methods.influence.gradients import NotPerExample, batch_gradients, plan_gradients


@dataclass(frozen=True)
class CheckpointScores:
    """One checkpoint's inner products and the gradient norms they are made of."""

    scores: Tensor  # float32 (n_test, n_train): <grad L(w, z'), grad L(w, z)>
    test_norms: Tensor  # float64 (n_test,): ||grad L(w, z')||, of the same (masked, projected) gradients
    train_norms: Tensor  # float64 (n_train,)

    def cosine(self) -> Tensor:
        """The scores divided by both gradients' norms (a zero gradient scores 0): float32 (n_test, n_train)."""
        outer = self.test_norms.unsqueeze(1) * self.train_norms.unsqueeze(0)
        cosine = torch.where(outer > 0, self.scores.double() / outer.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
        return cosine.float()


def checkpoint_scores(model: nn.Module, train_batches: Iterable[Batch], test_batches: Iterable[Batch], **options) -> Tensor:
    """The inner products of `checkpoint_influence` alone: float32 (n_test, n_train)."""
    return checkpoint_influence(model, train_batches, test_batches, **options).scores


def checkpoint_influence(
    model: nn.Module,
    train_batches: Iterable[Batch],
    test_batches: Iterable[Batch],
    *,
    train_masks: Masks = None,
    test_masks: Masks = None,
    param_names: Iterable[str] | None = None,
    test_block_bytes: int | None = None,
    projection_dim: int | None = None,
    projection_seed: int = 0,
) -> CheckpointScores:
    """Gradient inner products <grad L(w, z'), grad L(w, z)> at the model's current weights, and each
    example's gradient norm.

    The scores are a float32 CPU tensor (n_test, n_train), rows in the order of the test batches' examples,
    columns in the order of the train batches' examples (each iterable is read once, so do not
    shuffle). L is one example's cross-entropy; the model runs in eval mode (no dropout) in exact
    float32 (TF32 off), both restored afterwards. TracInCP for checkpoint c is lr_c times this.

    Batches: dicts with input_ids (B, T), attention_mask (B, T), labels (B,) and optionally
    token_type_ids; other keys are ignored. Each batch is cut to its longest real sequence.

    train_masks, test_masks: head masks for the gradients, aligned with the batches: None (no
        masking), one (L, H) tensor for every batch, or one entry per batch, each None, (L, H) or
        (B, L, H) (one mask per example, e.g. the subnetwork of each example's language).
    param_names: restrict the gradients to these parameters; an entry selects the parameter of that
        name or every parameter under that prefix ("roberta.encoder", "classifier"). Default: all
        parameters with requires_grad.
    test_block_bytes: memory budget for the test gradients kept between train batches. None keeps
        all of them (train gradients computed once); a budget splits the test set into blocks and
        recomputes the train gradients once per block.
    projection_dim: None for exact scores; d for approximate ones, <P g, P g'> with each parameter
        tensor of more than d entries projected to at most d numbers (see `random_projections`):
        unbiased, with an error that shrinks as d grows (about d^-1/4 for a matrix gradient of few
        tokens, d^-1/2 for vectors), and a test block of at most d numbers per tensor per example.
    projection_seed: with the parameter names, fixes P; calls with the same seed (train and test,
        every checkpoint) use the same P.
    The norms are those of the gradients the scores multiply (masked, and projected when projected),
    from each gradient form's own diagonal, computed while the scores are: no extra backward.
    """
    train = list(train_batches)
    test = list(test_batches)
    train_gates = masks_per_batch(train_masks, len(train), "train_masks")
    test_gates = masks_per_batch(test_masks, len(test), "test_masks")
    plan = plan_gradients(model, param_names, projection_dim, projection_seed)
    while True:
        try:
            with exact_eval(model):
                return _scores(model, plan, train, train_gates, test, test_gates, test_block_bytes)
        except NotPerExample as problem:
            plan = plan.demote(problem.module_name, problem.reason)


@dataclass
class _TestBatch:
    rows: slice  # this batch's rows of the score matrix
    grads: dict[str, KeptForm]  # name -> form kept for the inner products


def _scores(model, plan, train, train_gates, test, test_gates, test_block_bytes) -> CheckpointScores:
    device = device_of(model)
    train = [to_device(b, device) for b in train]
    test = [to_device(b, device) for b in test]
    n_train = sum(b["labels"].shape[0] for b in train)
    n_test = sum(b["labels"].shape[0] for b in test)
    train_tokens = max((trimmed_length(b) for b in train), default=1)
    scores = torch.zeros(n_test, n_train)
    test_norms, train_norms = torch.zeros(n_test, dtype=torch.float64), torch.zeros(n_train, dtype=torch.float64)
    scratch = Scratch()
    for block in _test_blocks(model, plan, test, test_gates, train_tokens, test_block_bytes, device, test_norms):
        start = 0
        first_block = block[0].rows.start == 0
        for batch, gates in zip(train, train_gates):
            size = batch["labels"].shape[0]
            grads = batch_gradients(model, plan, batch, gates_on(gates, device))
            if first_block:
                train_norms[start : start + size] = _norms(grads)
            rows = slice(block[0].rows.start, block[-1].rows.stop)
            scores[rows, start : start + size] = _block_scores(block, grads, size, scratch, device).float().cpu()
            start += size
    return CheckpointScores(scores, test_norms, train_norms)


def _norms(grads: dict[str, GradientForm]) -> Tensor:
    """Each example's gradient norm over all the selected parameters: float64 CPU (B,)."""
    return sum(form.squared_norms() for form in grads.values()).sqrt().cpu()


def _test_blocks(model, plan, test, test_gates, train_tokens, budget, device, norms: Tensor) -> Iterator[list[_TestBatch]]:
    """Test gradients, in blocks that fit `budget` bytes (one block when None); their norms into `norms`."""
    block, used, row = [], 0, 0
    for batch, gates in zip(test, test_gates):
        size = batch["labels"].shape[0]
        forms = batch_gradients(model, plan, batch, gates_on(gates, device))
        norms[row : row + size] = _norms(forms)
        grads = {name: form.kept(train_tokens) for name, form in forms.items()}
        block.append(_TestBatch(slice(row, row + size), grads))
        used += sum(form.nbytes() for form in grads.values())
        row += size
        if budget is not None and used >= budget:
            yield block
            block, used = [], 0
    if block:
        yield block


def _block_scores(block: list[_TestBatch], train_grads: dict[str, GradientForm], size: int, scratch: Scratch, device) -> Tensor:
    """Sum over parameters of test . train gradient inner products, float64 (n_block, B)."""
    n_block = block[-1].rows.stop - block[0].rows.start
    offset = block[0].rows.start
    total = torch.zeros(n_block, size, dtype=torch.float64, device=device)
    for name in list(train_grads):
        train = TrainGradient(train_grads.pop(name), scratch)  # drop each train gradient once used: memory of one layer
        for test_batch in block:
            test_form = test_batch.grads.get(name)
            if test_form is None:
                continue
            rows = slice(test_batch.rows.start - offset, test_batch.rows.stop - offset)
            total[rows] += test_form.dot(train).double()
    return total
