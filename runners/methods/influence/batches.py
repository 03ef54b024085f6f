"""Batches, head masks and exact float32 evaluation: what the fast scores and the reference share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from itertools import repeat

import torch
from torch import Tensor, nn

from runners.methods.heads import head_mask

Batch = Mapping[str, Tensor]  # input_ids (B, T), attention_mask (B, T), labels (B,), token_type_ids optional
Masks = Tensor | Iterable[Tensor | None] | None

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the batch keys passed to the model


def logits(model: nn.Module, batch: Batch) -> Tensor:
    out = model(**{key: batch[key] for key in MODEL_INPUTS if key in batch})
    return out.logits if hasattr(out, "logits") else out


def trim(batch: Batch) -> dict[str, Tensor]:
    """Drop the leading and trailing columns that are padding in every example."""
    real = batch["attention_mask"].bool().any(0).nonzero().flatten()
    if len(real) == 0:
        return dict(batch)
    first, last = int(real[0]), int(real[-1]) + 1
    return {key: value[:, first:last] if key in MODEL_INPUTS else value for key, value in batch.items()}


def trimmed_length(batch: Batch) -> int:
    real = batch["attention_mask"].bool().any(0).nonzero().flatten()
    return int(real[-1] - real[0]) + 1 if len(real) else 1


def one_by_one(batches: list[Batch], gates: Iterable[Tensor | None], device) -> Iterator[tuple[Batch, Tensor | None]]:
    """One-example batches (padding kept) with each example's head mask."""
    for batch, gate in zip(batches, gates):
        batch, gate = to_device(batch, device), gates_on(gate, device)
        for i in range(batch["labels"].shape[0]):
            yield {key: value[i : i + 1] for key, value in batch.items()}, gate[i] if gate is not None and gate.dim() == 3 else gate


def masks_per_batch(masks: Masks, n_batches: int, what: str) -> list[Tensor | None]:
    if masks is None:
        return [None] * n_batches
    if isinstance(masks, Tensor):
        if masks.dim() != 2:
            raise ValueError(
                f"{what}: a single tensor must be one (layers, heads) mask; "
                "give per-example (B, L, H) masks as a list, one per batch"
            )
        return list(repeat(masks, n_batches))
    masks = list(masks)
    if len(masks) != n_batches:
        raise ValueError(f"{what}: {len(masks)} masks for {n_batches} batches; give one entry (None, (L, H) or (B, L, H)) per batch")
    return masks


def masked(model: nn.Module, gates: Tensor | None):
    return head_mask(model, gates) if gates is not None else nullcontext()


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_device(batch: Batch, device) -> dict[str, Tensor]:
    return {key: value.to(device) if isinstance(value, Tensor) else value for key, value in batch.items()}


def gates_on(gates: Tensor | None, device) -> Tensor | None:
    return gates.to(device) if gates is not None else None


@contextmanager
def exact_eval(model: nn.Module):
    """Eval mode, gradients on, no TF32 (TF32 alone gives ~1e-3 error); all restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    training = model.training
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])
        model.train(training)
