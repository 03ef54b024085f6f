"""The iterative pruning loop on constructed cases with known answers, then once on a tiny model."""

from __future__ import annotations

import pytest
import torch
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from runners.methods.heads import head_importance, head_mask
from runners.methods.pruning import evaluate_accuracy, heads_per_step, heads_to_mask, iterative_prune

torch.set_num_threads(1)


def masked_count(mask: torch.Tensor) -> int:
    return int((mask == 0).sum())


def metric_by_masked_count(metrics: list[float]):
    """evaluate_fn whose metric depends only on how many heads are masked."""
    return lambda mask: metrics[masked_count(mask)]


def fixed_importance(importance: torch.Tensor):
    return at_most_one_call_per_head(lambda mask: importance.clone())


def at_most_one_call_per_head(importance_fn):
    """A loop that keeps choosing masked heads would never end: fail instead of hanging."""
    calls = []

    def bounded(mask: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        assert len(calls) <= mask.numel() + 1, "the pruning loop does not terminate"
        return importance_fn(mask)

    return bounded


def test_stops_at_the_first_step_below_threshold_and_returns_the_last_mask_above():
    importance = torch.tensor([[5.0, 1.0, 9.0, 7.0, 3.0], [2.0, 8.0, 0.5, 6.0, 4.0]])  # (2, 5)
    metrics = [0.80, 0.79, 0.77, 0.761, 0.75, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]  # bar: 0.95 * 0.8 = 0.76
    mask, final_importance, steps = iterative_prune(
        2, 5, fixed_importance(importance), metric_by_masked_count(metrics), full_metric=0.8, threshold=0.95, step=0.1
    )
    expected = torch.ones(2, 5)
    expected[1, 2] = expected[0, 1] = expected[1, 0] = 0.0  # the three least important heads
    assert torch.equal(mask, expected)
    assert torch.equal(final_importance, importance)
    assert [s.step for s in steps] == [0, 1, 2, 3, 4]
    assert [s.heads_kept for s in steps] == [10, 9, 8, 7, 6]
    assert [s.accepted for s in steps] == [True, True, True, True, False]
    assert [s.metric_value for s in steps] == metrics[:5]
    assert steps[4].ratio_to_full == pytest.approx(0.75 / 0.8)
    assert torch.equal(steps[3].mask, mask)
    assert masked_count(steps[4].mask) == 4 and steps[4].mask[0, 4] == 0.0  # the rejected step took 3.0 next


def test_rejected_first_step_returns_the_full_mask():
    mask, _, steps = iterative_prune(
        2, 4, fixed_importance(torch.arange(8.0).view(2, 4)), metric_by_masked_count([1.0, 0.9] + [0.0] * 7), None
    )
    assert torch.equal(mask, torch.ones(2, 4))
    assert [s.accepted for s in steps] == [True, False]


def test_threshold_is_relative_to_the_given_full_metric_not_step_zero():
    metrics = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]  # the masked model never changes
    mask, _, steps = iterative_prune(2, 4, fixed_importance(torch.zeros(2, 4)), metric_by_masked_count(metrics), 1.0)
    assert torch.equal(mask, torch.ones(2, 4))  # 0.5 < 0.95 * 1.0
    mask, _, _ = iterative_prune(2, 4, fixed_importance(torch.zeros(2, 4)), metric_by_masked_count(metrics), None)
    assert torch.equal(mask, torch.zeros(2, 4))  # relative to step 0's 0.5, nothing ever drops
    mask, _, _ = iterative_prune(2, 4, fixed_importance(torch.zeros(2, 4)), metric_by_masked_count(metrics), 1.0, 0.5)
    assert torch.equal(mask, torch.zeros(2, 4))  # exactly at the threshold is still accepted


def test_importance_is_recomputed_under_the_current_mask():
    calls: list[torch.Tensor] = []

    def importance_fn(mask: torch.Tensor) -> torch.Tensor:
        calls.append(mask.clone())
        # with nothing masked head (0,0) is least important; afterwards head (1,3) is
        importance = torch.ones(2, 4)
        importance[(0, 0) if masked_count(mask) == 0 else (1, 3)] = 0.0
        return importance

    mask, _, steps = iterative_prune(2, 4, importance_fn, metric_by_masked_count([1.0, 1.0, 1.0, 0.0] + [0.0] * 5), 1.0)
    assert mask[0, 0] == 0.0 and mask[1, 3] == 0.0 and masked_count(mask) == 2
    assert [masked_count(m) for m in calls] == [0, 1, 2]
    assert torch.equal(calls[1], steps[1].mask)


def test_never_remasks_a_masked_head_even_when_it_looks_least_important():
    @at_most_one_call_per_head
    def importance_fn(mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask == 0, -1.0, torch.arange(12.0).view(3, 4))  # masked heads look worst

    mask, _, steps = iterative_prune(3, 4, importance_fn, lambda mask: 1.0, 1.0, step=0.2)
    for previous, current in zip(steps, steps[1:]):
        assert bool((current.mask <= previous.mask).all())
        assert previous.heads_kept - current.heads_kept == min(2, previous.heads_kept)
    assert torch.equal(mask, torch.zeros(3, 4))
    assert torch.equal(steps[1].mask.view(-1)[:2], torch.zeros(2))  # lowest importance first


@pytest.mark.parametrize(
    ("total", "step", "expected"), [(12, 0.01, 1), (12, 0.1, 1), (12, 0.2, 2), (12, 0.3, 4), (100, 0.29, 29), (144, 0.1, 14)]
)
def test_heads_per_step_rounds_the_fraction_of_all_heads_and_masks_at_least_one(total, step, expected):
    assert heads_per_step(total, step) == expected


def test_the_loop_masks_the_rounded_count_per_step_and_the_remainder_last():
    _, _, steps = iterative_prune(2, 5, fixed_importance(torch.zeros(2, 5)), lambda mask: 1.0, 1.0, step=0.3)
    assert [s.heads_kept for s in steps] == [10, 7, 4, 1, 0]


def test_ties_are_broken_by_layer_then_head_index():
    _, _, steps = iterative_prune(2, 3, fixed_importance(torch.ones(2, 3)), lambda mask: 1.0, 1.0, step=0.1)
    order = [int((previous.mask - current.mask).view(-1).argmax()) for previous, current in zip(steps, steps[1:])]
    assert order == [0, 1, 2, 3, 4, 5]


def test_keep_one_head_per_layer_leaves_each_layers_most_important_head():
    importance = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7], [0.6, 0.5, 0.4]])  # layer 0 looks worst
    mask, _, steps = iterative_prune(
        3, 3, fixed_importance(importance), lambda mask: 1.0, 1.0, step=0.3, keep_one_head_per_layer=True
    )
    assert torch.equal(mask, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert all((s.mask.sum(dim=1) >= 1).all() for s in steps)
    unconstrained, _, _ = iterative_prune(3, 3, fixed_importance(importance), lambda mask: 1.0, 1.0, step=0.3)
    assert torch.equal(unconstrained, torch.zeros(3, 3))


def test_heads_to_mask_refuses_nan_importance():
    with pytest.raises(ValueError, match="NaN-free"):
        heads_to_mask(torch.ones(1, 2), torch.tensor([[0.0, float("nan")]]), 1, False)


# --- on a tiny model ---------------------------------------------------------------------------


def tiny_model_and_batches(sizes: tuple[int, ...] = (3, 1)):
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, num_labels=3, initializer_range=0.3, attn_implementation="eager",
    )
    model = XLMRobertaForSequenceClassification(config).eval()
    generator = torch.Generator().manual_seed(1)
    batches = []
    for size in sizes:
        input_ids = torch.randint(3, 100, (size, 8), generator=generator)  # (B, T)
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, 5:] = 0
        input_ids[attention_mask == 0] = 1
        batches.append({"input_ids": input_ids, "attention_mask": attention_mask})
    return model, batches


def predictions(model, batch, gates) -> torch.Tensor:
    with torch.no_grad(), head_mask(model, gates):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)


def test_evaluate_accuracy_counts_examples_under_the_mask():
    model, batches = tiny_model_and_batches()
    gates = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    masked = [predictions(model, b, gates) for b in batches]
    assert any(not torch.equal(m, predictions(model, b, torch.ones(2, 4))) for m, b in zip(masked, batches))
    batches[0]["labels"] = masked[0]  # 3 of 3 right
    batches[1]["labels"] = (masked[1] + 1) % 3  # 0 of 1 right: 3/4 overall, not a mean of batch means
    model.train()
    assert evaluate_accuracy(model, batches, gates) == 0.75
    assert model.training


def test_iterative_prune_on_a_tiny_model_keeps_the_last_mask_above_threshold():
    model, batches = tiny_model_and_batches(sizes=(8, 8))
    for batch in batches:
        batch["labels"] = predictions(model, batch, torch.ones(2, 4))  # the full model is 100% right
    mask, importance, steps = iterative_prune(
        2, 4,
        importance_fn=lambda gates: head_importance(model, batches, gates),
        evaluate_fn=lambda gates: evaluate_accuracy(model, batches, gates),
        full_metric=1.0, threshold=0.5, step=0.125,
    )
    assert steps[0].metric_value == 1.0
    assert len(steps) >= 3 and not steps[-1].accepted  # this seed prunes some heads, then stops
    assert torch.equal(mask, steps[-2].mask) and masked_count(mask) == len(steps) - 2
    assert [s.metric_value for s in steps] == [evaluate_accuracy(model, batches, s.mask) for s in steps]
    assert all(s.accepted == (s.metric_value >= 0.5) for s in steps)
    assert torch.equal(importance, head_importance(model, batches, mask))
