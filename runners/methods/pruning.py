"""Language subnetworks by iterative attention-head pruning (Michel et al. 2019; Prasanna et al. 2020).

The loop of HF `run_bertology.py`: mask the least important unmasked heads a step at a time,
recompute importance under the new mask, stop when the metric drops below a fraction of the full
model's and keep the last mask above it. Pure functions over callables; the stage wires in a
model, a language's batches and `runners.methods.heads`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from runners.methods.heads import Batch, head_mask


@dataclass(frozen=True)
class PruneStep:
    """One evaluated mask of the pruning loop; step 0 is the full model."""

    step: int
    heads_kept: int
    metric_value: float
    ratio_to_full: float  # metric_value / full_metric (nan if full_metric is 0)
    mask: torch.Tensor  # (L, H) float 0/1
    accepted: bool  # metric_value >= threshold * full_metric


def heads_per_step(total_heads: int, step: float) -> int:
    """Heads masked per step: `step` of ALL heads, rounded, at least one.

    Rounded (Python's round, half to even) rather than truncated as `run_bertology.py` does with
    int(): 0.29 * 100 heads is 28.999... in floating point, and 0.3 * 12 heads gives 4, not 3.
    """
    return max(1, round(step * total_heads))


def heads_to_mask(
    mask: torch.Tensor, importance: torch.Tensor, count: int, keep_one_head_per_layer: bool
) -> list[tuple[int, int]]:
    """The `count` unmasked heads of lowest importance, ties broken by (layer, head) index.

    Never returns an already masked head; with keep_one_head_per_layer, never a layer's last one.
    May return fewer than `count` (none) when too few heads are left to mask.
    """
    layers, heads = mask.shape
    if importance.shape != mask.shape or torch.isnan(importance).any():
        raise ValueError(f"head importance must be a NaN-free {layers} x {heads} tensor, got {importance}")
    candidates = sorted(
        ((float(importance[l, h]), l, h) for l in range(layers) for h in range(heads) if mask[l, h] != 0),
    )
    live_per_layer = (mask != 0).sum(dim=1).tolist()  # (L,)
    chosen: list[tuple[int, int]] = []
    for _, l, h in candidates:
        if len(chosen) == count:
            break
        if keep_one_head_per_layer and live_per_layer[l] <= 1:
            continue
        chosen.append((l, h))
        live_per_layer[l] -= 1
    return chosen


def iterative_prune(
    n_layers: int,
    n_heads: int,
    importance_fn: Callable[[torch.Tensor], torch.Tensor],
    evaluate_fn: Callable[[torch.Tensor], float],
    full_metric: float | None,
    threshold: float = 0.95,
    step: float = 0.1,
    keep_one_head_per_layer: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[PruneStep]]:
    """Prune heads until the metric falls below `threshold` x `full_metric`; keep the last mask above.

    importance_fn(mask (L, H)) -> (L, H) importance under that mask (higher = keep);
    evaluate_fn(mask (L, H)) -> metric under that mask (higher = better).
    full_metric: the full model's metric the threshold is relative to; None uses step 0's
    evaluation of the all-ones mask (which is always evaluated and recorded as step 0).

    Returns (final_mask (L, H) float 0/1, final_importance (L, H), steps): final_mask is the last
    accepted mask (all ones if step 1 is already rejected); final_importance is importance_fn
    under final_mask — the importance that chose the rejected step's heads, or the importance of
    the surviving heads when the loop ends because no head can be masked any more. `steps` holds
    every evaluated mask, the rejected one last (accepted=False).
    """
    mask = torch.ones(n_layers, n_heads)  # (L, H)
    metric = float(evaluate_fn(mask.clone()))
    reference = metric if full_metric is None else float(full_metric)
    bar = threshold * reference
    steps = [_record(0, mask, metric, reference, accepted=metric >= bar)]
    count = heads_per_step(n_layers * n_heads, step)
    while True:
        importance = importance_fn(mask.clone())  # (L, H)
        chosen = heads_to_mask(mask, importance, count, keep_one_head_per_layer)
        if not chosen:
            return mask, importance, steps
        candidate = mask.clone()
        for l, h in chosen:
            candidate[l, h] = 0.0
        metric = float(evaluate_fn(candidate.clone()))
        accepted = metric >= bar
        steps.append(_record(len(steps), candidate, metric, reference, accepted))
        if not accepted:
            return mask, importance, steps
        mask = candidate


def _record(index: int, mask: torch.Tensor, metric: float, full_metric: float, accepted: bool) -> PruneStep:
    ratio = metric / full_metric if full_metric != 0 else float("nan")
    return PruneStep(index, int(mask.sum()), metric, ratio, mask.clone(), accepted)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, batches: Iterable[Batch], gates: torch.Tensor) -> float:
    """Accuracy over all examples (not a mean of batch means) with heads masked by `gates` (L, H).

    Runs in eval mode and restores the training flag.
    """
    device = next(model.parameters()).device
    correct = total = 0
    was_training = model.training
    model.eval()
    try:
        with head_mask(model, gates):
            for batch in batches:
                input_ids = batch["input_ids"].to(device)  # (B, T)
                logits = model(input_ids=input_ids, attention_mask=batch["attention_mask"].to(device)).logits  # (B, C)
                correct += int((logits.argmax(dim=-1) == batch["labels"].to(device)).sum())
                total += len(input_ids)
    finally:
        model.train(was_training)
    return correct / total if total else float("nan")
