"""Head masking and head importance against independent references: weight surgery, finite differences."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from runners.methods.heads import (
    attention_output_projections,
    head_grid,
    head_importance,
    head_mask,
    normalize_importance,
)

torch.set_num_threads(1)

LAYERS, HEADS, HIDDEN = 2, 4, 32
HEAD_DIM = HIDDEN // HEADS
PAD = 1  # XLM-R's pad_token_id; position ids are derived from it


def tiny_model(attn: str = "eager", seed: int = 0, dropout: float = 0.0) -> XLMRobertaForSequenceClassification:
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=64, max_position_embeddings=64, num_labels=3,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        initializer_range=0.3,  # large weights: heads visibly change the logits
        attn_implementation=attn,
    )
    return XLMRobertaForSequenceClassification(config).eval()


def padded_batch(lengths: list[int], max_len: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 100, (len(lengths), max_len), generator=generator)  # (B, T)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
    input_ids[attention_mask == 0] = PAD
    labels = torch.randint(0, 3, (len(lengths),), generator=generator)  # (B,)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def logits_of(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, C)


def with_heads_zeroed_by_surgery(model, mask: torch.Tensor):
    """A copy whose output projections ignore masked heads: their input columns of W are zeroed."""
    surgered = copy.deepcopy(model)
    for layer, proj in enumerate(attention_output_projections(surgered)):
        column_gate = mask[layer].repeat_interleave(HEAD_DIM)  # (H*d,) head-major, as heads are concatenated
        with torch.no_grad():
            proj.weight.mul_(column_gate.to(proj.weight.dtype))
    return surgered


def test_all_ones_mask_leaves_logits_bit_identical():
    model, batch = tiny_model(), padded_batch([10, 6, 3])
    with head_mask(model, torch.ones(LAYERS, HEADS)):
        masked = logits_of(model, batch)
    assert torch.equal(masked, logits_of(model, batch))


@pytest.mark.parametrize("masked_heads", [[(0, 0)], [(0, 3)], [(1, 2)], [(0, 1), (1, 0), (1, 3)]])
def test_masking_heads_equals_zeroing_their_columns_of_the_output_projection(masked_heads):
    model, batch = tiny_model(), padded_batch([10, 7, 2])
    mask = torch.ones(LAYERS, HEADS)
    for layer, head in masked_heads:
        mask[layer, head] = 0.0
    with head_mask(model, mask):
        masked = logits_of(model, batch)
    expected = logits_of(with_heads_zeroed_by_surgery(model, mask), batch)
    assert torch.allclose(masked, expected, atol=1e-6)
    assert not torch.allclose(masked, logits_of(model, batch), atol=1e-3)  # the mask did something


def test_fractional_gates_scale_heads_like_scaled_columns():
    model, batch = tiny_model(), padded_batch([9, 4])
    gates = torch.rand(LAYERS, HEADS, generator=torch.Generator().manual_seed(3))
    with head_mask(model, gates):
        masked = logits_of(model, batch)
    assert torch.allclose(masked, logits_of(with_heads_zeroed_by_surgery(model, gates), batch), atol=1e-6)


def test_eager_and_sdpa_agree_under_the_same_mask_with_padding():
    eager = tiny_model("eager")
    sdpa = copy.deepcopy(eager)
    sdpa.set_attn_implementation("sdpa")
    assert sdpa.config._attn_implementation == "sdpa"
    batch = padded_batch([10, 5, 1])
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    with head_mask(eager, mask), head_mask(sdpa, mask):
        assert torch.allclose(logits_of(eager, batch), logits_of(sdpa, batch), atol=1e-6)


def test_per_example_masks_equal_running_each_example_alone():
    model, batch = tiny_model(), padded_batch([10, 6, 4])
    masks = torch.tensor([
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]],
        [[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0]],
        [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]],
    ])  # (B, L, H)
    with head_mask(model, masks):
        together = logits_of(model, batch)
    for row in range(3):
        alone = {key: value[row : row + 1] for key, value in batch.items()}
        with head_mask(model, masks[row]):
            assert torch.allclose(together[row], logits_of(model, alone)[0], atol=1e-5)
    assert not torch.allclose(together[1], together[2], atol=1e-3)  # rows did get different masks


def test_hooks_are_removed_after_the_context_even_on_exception():
    model, batch = tiny_model(), padded_batch([8, 3])
    unmasked = logits_of(model, batch)
    with pytest.raises(RuntimeError, match="boom"):
        with head_mask(model, torch.zeros(LAYERS, HEADS)):
            raise RuntimeError("boom")
    with head_mask(model, torch.zeros(LAYERS, HEADS)):
        pass
    assert all(len(proj._forward_pre_hooks) == 0 for proj in attention_output_projections(model))
    assert torch.equal(logits_of(model, batch), unmasked)


def test_wrong_mask_shape_is_refused():
    with pytest.raises(ValueError, match="2 layers x 4 heads"):
        with head_mask(tiny_model(), torch.ones(HEADS, LAYERS)):
            pass


def test_fully_masked_layer_passes_only_the_residual_plus_bias():
    model, batch = tiny_model(), padded_batch([10, 4])
    mask = torch.ones(LAYERS, HEADS)
    mask[0] = 0.0
    sublayer = model.roberta.encoder.layer[0].attention.output
    seen = {}
    handle = sublayer.register_forward_hook(lambda module, args, out: seen.update(residual=args[1], out=out))
    try:
        with head_mask(model, mask):
            logits = logits_of(model, batch)
    finally:
        handle.remove()
    assert torch.isfinite(logits).all()
    expected = sublayer.LayerNorm(seen["residual"] + sublayer.dense.bias)  # (B, T, D)
    assert torch.allclose(seen["out"], expected, atol=1e-6)


# --- head importance -------------------------------------------------------------------------


def losses_per_batch(model, batches) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([F.cross_entropy(logits_of(model, b), b["labels"]) for b in batches])  # (N,)


def finite_difference_importance(model, batches, gates: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """sum_batches |d loss_b / d gate| / tokens by central differences on the projection's columns."""
    projections = attention_output_projections(model)
    originals = [proj.weight.detach().clone() for proj in projections]

    def loss_at(point: torch.Tensor) -> torch.Tensor:  # (L, H) -> (N,)
        with torch.no_grad():
            for proj, original, gate in zip(projections, originals, point):
                proj.weight.copy_(original * gate.repeat_interleave(HEAD_DIM))
        return losses_per_batch(model, batches)

    importance = torch.zeros(LAYERS, HEADS, dtype=torch.float64)
    for layer in range(LAYERS):
        for head in range(HEADS):
            step = torch.zeros(LAYERS, HEADS, dtype=torch.float64)
            step[layer, head] = eps
            derivative = (loss_at(gates + step) - loss_at(gates - step)) / (2 * eps)  # (N,)
            importance[layer, head] = derivative.abs().sum()
    loss_at(torch.ones(LAYERS, HEADS, dtype=torch.float64))  # restore the weights
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    return importance / tokens


@pytest.mark.parametrize("current_mask", [None, torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])])
def test_raw_importance_equals_finite_differences_of_the_loss(current_mask):
    model = tiny_model().double()
    batches = [padded_batch([10, 7, 3], seed=1), padded_batch([6, 2], seed=2)]  # unequal sizes, padding
    gates = torch.ones(LAYERS, HEADS, dtype=torch.float64) if current_mask is None else current_mask.double()
    expected = finite_difference_importance(model, batches, gates)
    raw = head_importance(model, batches, current_mask, normalize_per_layer=False, normalize_global=False)
    assert raw.shape == (LAYERS, HEADS)
    assert torch.allclose(raw.double(), expected, rtol=1e-5, atol=1e-9)
    assert (expected > 0).all()  # masked heads too: the gradient at gate 0, not a zero


def test_normalisation_matches_a_hand_computation():
    raw = torch.tensor([[3.0, 4.0], [6.0, 8.0]])
    per_layer = normalize_importance(raw, per_layer=True, global_min_max=False)
    assert torch.allclose(per_layer, torch.tensor([[0.6, 0.8], [0.6, 0.8]]))
    both = normalize_importance(raw, per_layer=True, global_min_max=True)
    assert torch.allclose(both, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    global_only = normalize_importance(raw, per_layer=False, global_min_max=True)
    assert torch.allclose(global_only, torch.tensor([[0.0, 0.2], [0.6, 1.0]]))
    flat = normalize_importance(torch.full((2, 2), 5.0), per_layer=False, global_min_max=True)
    assert torch.equal(flat, torch.zeros(2, 2))


def test_head_importance_applies_both_normalisations_by_default():
    model, batches = tiny_model(), [padded_batch([10, 5], seed=4)]
    raw = head_importance(model, batches, normalize_per_layer=False, normalize_global=False)
    normalized = head_importance(model, batches)
    assert torch.allclose(normalized, normalize_importance(raw, per_layer=True, global_min_max=True), atol=1e-6)
    assert normalized.min() == 0.0 and normalized.max() == 1.0


def test_importance_runs_without_dropout_restores_training_and_leaves_no_grads():
    model, batches = tiny_model(dropout=0.5), [padded_batch([10, 5, 8], seed=5)]
    in_eval = head_importance(model, batches)
    model.train()
    first, second = head_importance(model, batches), head_importance(model, batches)
    assert model.training
    assert torch.equal(first, in_eval) and torch.equal(second, in_eval)
    assert all(p.grad is None for p in model.parameters())
    assert all(len(proj._forward_pre_hooks) == 0 for proj in attention_output_projections(model))


def test_head_grid_reads_the_config():
    assert head_grid(tiny_model()) == (LAYERS, HEADS)
