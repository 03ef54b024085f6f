"""TracIn inner products: the fast per-layer path against a float64 one-backward-per-example loop."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from runners import influence as tracin
from runners.influence import checkpoint_scores, naive_scores, selected_parameters

VOCAB, LAYERS, HEADS, HIDDEN = 40, 2, 4, 32  # a small vocabulary: tokens repeat within and across examples


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(attention: str = "eager", seed: int = 0) -> XLMRobertaForSequenceClassification:
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=2,
        num_labels=3,
        attn_implementation=attention,
    )
    model = XLMRobertaForSequenceClassification(config)
    with torch.no_grad():  # random-init biases and LayerNorm are 0/1: make every parameter matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def make_batches(sizes: list[int], max_len: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches of mixed lengths (every batch has padding), <s> first, pad id 1; sizes >= 2."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for size in sizes:
        lengths = torch.randint(3, max_len, (size,), generator=gen)
        lengths[0] = max_len - 1
        ids = torch.randint(3, VOCAB, (size, max_len), generator=gen)
        ids[:, 0] = 0
        mask = (torch.arange(max_len) < lengths[:, None]).long()
        ids[mask == 0] = 1
        ids[1, 2] = 1  # a pad id among real tokens: its word and position rows get no gradient (padding_idx)
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (size,), generator=gen)})
    return batches


def random_masks(batches, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(b["labels"].shape[0], LAYERS, HEADS, generator=gen) > 0.4).float() for b in batches]


def assert_close(scores: torch.Tensor, reference: torch.Tensor) -> None:
    assert scores.dtype == torch.float32 and scores.shape == reference.shape
    error = (scores.double() - reference).abs().max() / reference.abs().max()
    assert error < 1e-5, f"max |fast - naive| / max |naive| = {error:.2e}"


TRAIN = make_batches([4, 3, 5], max_len=12, seed=1)
TEST = make_batches([3, 4], max_len=10, seed=2)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_matches_naive_reference(attention):
    model = tiny_model(attention)
    assert_close(checkpoint_scores(model, TRAIN, TEST), naive_scores(model, TRAIN, TEST))


@pytest.mark.parametrize("gram", [True, False])
@pytest.mark.parametrize("dense_embeddings", [True, False])
def test_every_gradient_form_matches_naive(monkeypatch, gram, dense_embeddings):
    """Linear weights as Gram factors or dense; embeddings as dense tables or matched tokens."""
    monkeypatch.setattr(tracin._LinearFactors, "prefer_gram", lambda self, train_tokens: gram)
    monkeypatch.setattr(tracin._TokenGrads, "prefer_dense", lambda self: dense_embeddings)
    model = tiny_model()
    assert_close(checkpoint_scores(model, TRAIN, TEST), naive_scores(model, TRAIN, TEST))


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_per_example_head_masks(attention):
    """Different masks for every train and test example (the sft variant), and a shared (L, H) one."""
    model = tiny_model(attention)
    train_masks = random_masks(TRAIN, seed=3)
    train_masks[1] = train_masks[1][0]  # one (L, H) mask for the whole second batch
    test_masks = [random_masks(TEST, seed=4)[0], None]
    fast = checkpoint_scores(model, TRAIN, TEST, train_masks=train_masks, test_masks=test_masks)
    assert_close(fast, naive_scores(model, TRAIN, TEST, train_masks=train_masks, test_masks=test_masks))
    unmasked = naive_scores(model, TRAIN, TEST)
    assert (fast.double() - unmasked).abs().max() > 1e-2 * unmasked.abs().max()  # the masks did change the scores


def test_one_mask_for_all_batches():
    model = tiny_model()
    mask = torch.ones(LAYERS, HEADS)
    mask[0, 1] = mask[1, 3] = 0
    assert_close(checkpoint_scores(model, TRAIN, TEST, test_masks=mask), naive_scores(model, TRAIN, TEST, test_masks=mask))


def test_param_names_restrict_the_gradient():
    model = tiny_model()
    names = ["roberta.embeddings.word_embeddings", "roberta.encoder.layer.1", "classifier.out_proj.bias"]
    fast = checkpoint_scores(model, TRAIN, TEST, param_names=names)
    assert_close(fast, naive_scores(model, TRAIN, TEST, param_names=names))
    full = naive_scores(model, TRAIN, TEST)
    assert (fast.double() - full).abs().max() > 1e-2 * full.abs().max()
    assert set(selected_parameters(model, names)) == {
        "roberta.embeddings.word_embeddings.weight",
        "classifier.out_proj.bias",
        *[n for n, _ in model.named_parameters() if n.startswith("roberta.encoder.layer.1.")],
    }
    with pytest.raises(ValueError, match="roberta.encoder.layer.9"):
        checkpoint_scores(model, TRAIN, TEST, param_names=["roberta.encoder.layer.9"])


def test_frozen_parameters_are_excluded():
    model = tiny_model()
    model.roberta.embeddings.word_embeddings.weight.requires_grad_(False)
    for p in model.roberta.encoder.layer[0].parameters():
        p.requires_grad_(False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    fast = checkpoint_scores(model, TRAIN, TEST)
    assert_close(fast, naive_scores(model, TRAIN, TEST, param_names=trainable))
    for p in model.parameters():
        p.requires_grad_(True)
    everything = naive_scores(model, TRAIN, TEST)
    assert (fast.double() - everything).abs().max() > 1e-2 * everything.abs().max()


def test_padding_does_not_change_scores():
    """One example alone and unpadded scores the same as inside a batch of longer, padded ones."""
    model = tiny_model()
    batch = make_batches([4], max_len=14, seed=5)[0]
    short = int(batch["attention_mask"].sum(1).argmin())
    length = int(batch["attention_mask"][short].sum())
    alone = {key: value[short : short + 1] for key, value in batch.items()}
    alone = {**alone, "input_ids": alone["input_ids"][:, :length], "attention_mask": alone["attention_mask"][:, :length]}
    assert length < 13
    in_batch = checkpoint_scores(model, [batch], TEST)[:, short]
    by_itself = checkpoint_scores(model, [alone], TEST)[:, 0]
    torch.testing.assert_close(in_batch, by_itself, rtol=0, atol=1e-5 * float(by_itself.abs().max()))
    as_test = checkpoint_scores(model, TRAIN, [batch])[short]
    torch.testing.assert_close(as_test, checkpoint_scores(model, TRAIN, [alone])[0], rtol=0, atol=1e-5 * float(as_test.abs().max()))


class Rescale(nn.Module):
    """A module type with no fast path: an elementwise learned scale."""

    def __init__(self, width: int):
        super().__init__()
        self.scale = nn.Parameter(1 + 0.1 * torch.randn(width))

    def forward(self, x):
        return x * self.scale


class Transposed(nn.Module):
    """A Linear applied to a (hidden, B) tensor: its batch dimension is not first."""

    def __init__(self, width: int):
        super().__init__()
        self.inner = nn.Linear(1, 1)
        self.mix = nn.Parameter(torch.randn(width, width) / width**0.5)

    def forward(self, x):  # (B, d)
        return self.inner(x.T.unsqueeze(-1)).squeeze(-1).T @ self.mix


class InPlace(nn.Module):
    """A Linear whose output is changed in place after its forward hook ran."""

    def __init__(self, width: int):
        super().__init__()
        self.inner = nn.Linear(width, width)

    def forward(self, x):
        y = self.inner(x)
        return y.mul_(1.5)


class Unused(nn.Module):
    """A Linear that runs but whose output never reaches the loss: zero gradient, no error."""

    def __init__(self, width: int):
        super().__init__()
        self.inner = nn.Linear(width, width)

    def forward(self, x):
        self.inner(x)
        return x


def test_module_outside_the_loss_has_zero_gradient():
    model = tiny_model()
    model.classifier.dropout = Unused(HIDDEN)
    fast = checkpoint_scores(model, TRAIN, TEST, param_names=["classifier.dropout"])
    assert torch.equal(fast, torch.zeros_like(fast))
    assert_close(checkpoint_scores(model, TRAIN, TEST), naive_scores(model, TRAIN, TEST))


@pytest.mark.parametrize("module", [Rescale, Transposed, InPlace])
def test_modules_without_fast_path_fall_back_exactly(caplog, module):
    """The classifier's dropout runs twice per forward; replacing it exercises repeated calls too.
    Per-example masks check that the slow path masks each example with its own mask."""
    model = tiny_model()
    torch.manual_seed(7)
    model.classifier.dropout = module(HIDDEN)
    masks = {"train_masks": random_masks(TRAIN, seed=3), "test_masks": random_masks(TEST, seed=4)}
    with caplog.at_level(logging.WARNING, logger="runners.influence"):
        fast = checkpoint_scores(model, TRAIN, TEST, **masks)
    assert "classifier.dropout" in caplog.text
    assert_close(fast, naive_scores(model, TRAIN, TEST, **masks))


def test_linear_called_twice_uses_fast_path(caplog):
    model = tiny_model()
    torch.manual_seed(7)
    model.classifier.dropout = nn.Linear(HIDDEN, HIDDEN)
    with caplog.at_level(logging.WARNING, logger="runners.influence"):
        fast = checkpoint_scores(model, TRAIN, TEST)
    assert "classifier.dropout" not in caplog.text
    assert_close(fast, naive_scores(model, TRAIN, TEST))


def test_parameter_tied_between_modules_falls_back(caplog):
    model = tiny_model()
    tied = model.roberta.encoder.layer[1].attention.output.dense.weight
    model.classifier.dense.weight = tied
    (name,) = [n for n, p in model.named_parameters() if p is tied]  # named once, held by two modules
    with caplog.at_level(logging.WARNING, logger="runners.influence"):
        fast = checkpoint_scores(model, TRAIN, TEST)
    assert name in caplog.text
    assert_close(fast, naive_scores(model, TRAIN, TEST))


def test_test_block_budget_gives_the_same_scores():
    model = tiny_model()
    assert torch.equal(checkpoint_scores(model, TRAIN, TEST, test_block_bytes=1), checkpoint_scores(model, TRAIN, TEST))


def test_leaves_model_and_precision_as_found():
    model = tiny_model()
    model.train()
    precision = torch.get_float32_matmul_precision()
    checkpoint_scores(model, TRAIN, TEST)
    assert model.training
    assert torch.get_float32_matmul_precision() == precision
    assert all(p.grad is None for p in model.parameters())


def test_masks_must_align_with_batches():
    model = tiny_model()
    with pytest.raises(ValueError, match="2 masks for 3 batches"):
        checkpoint_scores(model, TRAIN, TEST, train_masks=random_masks(TRAIN, seed=0)[:2])
    with pytest.raises(ValueError, match="single tensor"):
        checkpoint_scores(model, TRAIN, TEST, test_masks=torch.ones(3, LAYERS, HEADS))
