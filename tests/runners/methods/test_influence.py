"""TracIn inner products: the fast per-layer path against a float64 one-backward-per-example loop."""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from runners import tracin
from runners.context import TaskContext
from runners.methods import influence
from runners.methods.heads import head_mask
from runners.methods.influence import checkpoint_scores, forms, random_projections, selected_parameters
from runners.tracin import TracinSpec
from tests.reference.influence import naive_scores

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
    monkeypatch.setattr(forms.LinearFactors, "prefer_gram", lambda self, train_tokens: gram)
    monkeypatch.setattr(forms.TokenGrads, "prefer_dense", lambda self: dense_embeddings)
    model = tiny_model()
    assert_close(checkpoint_scores(model, TRAIN, TEST), naive_scores(model, TRAIN, TEST))


def test_gram_and_dense_test_batches_in_one_block_match_naive(monkeypatch):
    """One block whose test batches keep the same Linear weight in different forms (Gram factors for the
    3-example batch, dense columns for the 4-example one): each train batch's dense gradients are formed
    once, in a reused buffer, for the dense batches only."""
    monkeypatch.setattr(forms.LinearFactors, "prefer_gram", lambda self, train_tokens: self.a.shape[0] == 3)
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
    with caplog.at_level(logging.WARNING, logger="runners.methods.influence"):
        fast = checkpoint_scores(model, TRAIN, TEST, **masks)
    assert "classifier.dropout" in caplog.text
    assert_close(fast, naive_scores(model, TRAIN, TEST, **masks))


def test_linear_called_twice_uses_fast_path(caplog):
    model = tiny_model()
    torch.manual_seed(7)
    model.classifier.dropout = nn.Linear(HIDDEN, HIDDEN)
    with caplog.at_level(logging.WARNING, logger="runners.methods.influence"):
        fast = checkpoint_scores(model, TRAIN, TEST)
    assert "classifier.dropout" not in caplog.text
    assert_close(fast, naive_scores(model, TRAIN, TEST))


def test_parameter_tied_between_modules_falls_back(caplog):
    model = tiny_model()
    tied = model.roberta.encoder.layer[1].attention.output.dense.weight
    model.classifier.dense.weight = tied
    (name,) = [n for n, p in model.named_parameters() if p is tied]  # named once, held by two modules
    with caplog.at_level(logging.WARNING, logger="runners.methods.influence"):
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


# ---------------------------------------------------------------------------------------------
# Random projection (projection_dim): approximate scores <P g, P g'>


def explicit_projected_scores(model, train, test, dim, seed, train_masks=None, test_masks=None) -> torch.Tensor:
    """The reference, apart from runners.methods.influence's projection code: one float64 backward per padded
    example, and each parameter's flattened gradient times torch.kron(P_rows, P_cols) of the drawn
    factors (the identity on a side that is not reduced; no projection for a tensor kept exact)."""
    reference = copy.deepcopy(model).double().eval()
    params = {name: p for name, p in reference.named_parameters() if p.requires_grad}
    projections = random_projections({name: p.shape for name, p in params.items()}, dim, seed)

    def matrix(name: str) -> torch.Tensor | None:
        if name not in projections:
            return None
        (m, n), rows, cols = projections[name].shape, projections[name].rows, projections[name].cols
        eye = lambda size: torch.eye(size, dtype=torch.float64)  # noqa: E731
        return torch.kron(eye(m) if rows is None else rows.double(), eye(n) if cols is None else cols.double())

    matrices = [matrix(name) for name in params]

    def projected(batches, masks) -> torch.Tensor:  # (examples, projected dims)
        rows = []
        for b, batch in enumerate(batches):
            mask = masks[b] if masks is not None else None
            for i in range(batch["labels"].shape[0]):
                gate = mask[i] if mask is not None and mask.dim() == 3 else mask
                with head_mask(reference, gate) if gate is not None else nullcontext():
                    example = {key: batch[key][i : i + 1] for key in ("input_ids", "attention_mask")}
                    logits = reference(**example).logits
                loss = F.cross_entropy(logits, batch["labels"][i : i + 1])
                grads = torch.autograd.grad(loss, list(params.values()), materialize_grads=True)
                rows.append(torch.cat([g.reshape(-1) if p is None else p @ g.reshape(-1) for p, g in zip(matrices, grads)]))
        return torch.stack(rows)

    with torch.enable_grad():
        return projected(test, test_masks) @ projected(train, train_masks).T


def relative_error(scores: torch.Tensor, exact: torch.Tensor) -> float:
    return float((scores.double() - exact.double()).norm() / exact.double().norm())


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks = torch.stack([x.flatten().argsort().argsort().double() for x in (a, b)])
    return float(torch.corrcoef(ranks)[0, 1])


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def test_projections_follow_the_definition():
    """Shorter side min(side, floor(sqrt d)), longer side what fits in d, identity (None) on a side not
    reduced, no projection for tensors of at most d entries; N(0, 1/k) entries."""
    shapes = {"linear": (64, 32), "vector": (3072,), "small": (8, 8), "thin": (3, 32), "table": (250, 4), "conv": (4, 3, 5)}
    projections = random_projections(shapes, 64, seed=0)
    assert set(projections) == {"linear", "vector", "thin", "table"}  # small: 64 entries, conv: 60
    side = lambda p: None if p is None else tuple(p.shape)  # noqa: E731
    got = {name: (p.shape, side(p.rows), side(p.cols)) for name, p in projections.items()}
    assert got == {
        "linear": ((64, 32), (8, 64), (8, 32)),
        "vector": ((1, 3072), None, (64, 3072)),
        "thin": ((3, 32), None, (21, 32)),
        "table": ((250, 4), (16, 250), None),
    }
    vector = projections["vector"].cols
    assert abs(float(vector.mean())) < 0.01 and abs(float(vector.var()) * 64 - 1) < 0.05
    assert random_projections(shapes, None) == {}
    with pytest.raises(ValueError, match="projection_dim=0"):
        checkpoint_scores(tiny_model(), TRAIN, TEST, projection_dim=0)


def test_projection_depends_only_on_seed_name_and_shape():
    """The same P whatever the global RNG state (every call: train, test, each checkpoint); another
    seed or another parameter name draws another."""
    shapes = {"a": (64, 32), "b": (64, 32)}
    torch.manual_seed(1)
    first = random_projections(shapes, 64, seed=3)
    torch.manual_seed(2)
    again = random_projections(shapes, 64, seed=3)
    other = random_projections(shapes, 64, seed=4)
    assert all(torch.equal(first[n].rows, again[n].rows) and torch.equal(first[n].cols, again[n].cols) for n in shapes)
    assert not torch.equal(first["a"].rows, other["a"].rows)
    assert not torch.equal(first["a"].rows, first["b"].rows)


@pytest.mark.parametrize("dim", [64, 300])
@pytest.mark.parametrize("masked", [False, True])
def test_projected_scores_match_explicit_projection(dim, masked):
    """Padded batches; per-example masks, a shared (L, H) mask and an unmasked batch when masked."""
    model = tiny_model()
    masks = {}
    if masked:
        train_masks = random_masks(TRAIN, seed=3)
        train_masks[1] = train_masks[1][0]
        masks = {"train_masks": train_masks, "test_masks": [random_masks(TEST, seed=4)[0], None]}
    fast = checkpoint_scores(model, TRAIN, TEST, projection_dim=dim, projection_seed=5, **masks)
    reference = explicit_projected_scores(model, TRAIN, TEST, dim, 5, **masks)
    assert_close(fast, reference)
    assert_close(naive_scores(model, TRAIN, TEST, projection_dim=dim, projection_seed=5, **masks).float(), reference)
    exact = naive_scores(model, TRAIN, TEST, **masks)
    assert (fast.double() - exact).abs().max() > 1e-3 * exact.abs().max()  # something was projected


def test_projected_fallback_parameters_match_explicit_projection(caplog):
    """A matrix parameter without a fast path (Transposed.mix, 32 x 32) is projected from its dense gradient."""
    model = tiny_model()
    torch.manual_seed(7)
    model.classifier.dropout = Transposed(HIDDEN)
    masks = {"train_masks": random_masks(TRAIN, seed=3), "test_masks": random_masks(TEST, seed=4)}
    with caplog.at_level(logging.WARNING, logger="runners.methods.influence"):
        fast = checkpoint_scores(model, TRAIN, TEST, projection_dim=100, projection_seed=2, **masks)
    assert "classifier.dropout" in caplog.text
    assert "classifier.dropout.mix" in random_projections({"classifier.dropout.mix": (HIDDEN, HIDDEN)}, 100)
    assert_close(fast, explicit_projected_scores(model, TRAIN, TEST, 100, 2, **masks))


def test_projection_dim_covering_every_tensor_is_exact():
    model = tiny_model()
    largest = max(p.numel() for p in model.parameters())
    assert torch.equal(checkpoint_scores(model, TRAIN, TEST, projection_dim=largest), checkpoint_scores(model, TRAIN, TEST))


def test_same_projection_for_train_and_test_and_every_checkpoint():
    """Scoring a set against itself gives a symmetric Gram matrix of projected gradients (a different P
    for train and test would not); a checkpoint's scores do not depend on what was scored before."""
    model, later = tiny_model(seed=0), tiny_model(seed=1)
    gram = checkpoint_scores(model, TRAIN, TRAIN, projection_dim=64, projection_seed=1)
    torch.testing.assert_close(gram, gram.T, rtol=0, atol=1e-5 * float(gram.abs().max()))
    assert (gram.diagonal() > 0).all()
    other_draw = checkpoint_scores(model, TRAIN, TRAIN, projection_dim=64, projection_seed=2)
    assert (gram - other_draw).abs().max() > 1e-3 * gram.abs().max()
    alone = checkpoint_scores(later, TRAIN, TEST, projection_dim=64, projection_seed=1)
    torch.manual_seed(123)
    checkpoint_scores(model, TRAIN, TEST, projection_dim=64, projection_seed=1)
    assert torch.equal(checkpoint_scores(later, TRAIN, TEST, projection_dim=64, projection_seed=1), alone)
    assert_close(alone, explicit_projected_scores(later, TRAIN, TEST, 64, 1))


PROJECTION_SEEDS = range(8)


@pytest.fixture(scope="module")
def projected_runs() -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]]:
    """Exact scores and, per projection_dim, the projected scores of 8 seeds."""
    model = tiny_model()
    runs = {
        dim: [checkpoint_scores(model, TRAIN, TEST, projection_dim=dim, projection_seed=s) for s in PROJECTION_SEEDS]
        for dim in (8, 64, 512)
    }
    return checkpoint_scores(model, TRAIN, TEST), runs


def test_projection_error_shrinks_as_dim_grows(projected_runs):
    exact, runs = projected_runs
    errors = [sum(relative_error(s, exact) for s in runs[dim]) / len(PROJECTION_SEEDS) for dim in (8, 64, 512)]
    assert errors[0] > errors[1] / 0.8 > errors[2] / 0.8**2, errors  # measured 0.58, 0.21, 0.13


def test_projected_scores_are_unbiased(projected_runs):
    """The mean over 8 draws of P is closer to the exact scores than one draw, by about sqrt(8)."""
    exact, runs = projected_runs
    for dim, scores in runs.items():
        one_draw = sum(relative_error(s, exact) for s in scores) / len(scores)
        assert relative_error(torch.stack(scores).mean(0), exact) < 0.5 * one_draw, dim


def test_projected_scores_correlate_with_exact(projected_runs):
    """All parameters at d = 512: the ranking noise comes from the classifier, whose gradients have
    one token (a rank-1 matrix, error ~ d^-1/4). The encoder alone, every Linear weight projected."""
    exact, runs = projected_runs
    assert min(pearson(s, exact) for s in runs[512]) > 0.95
    model = tiny_model()
    encoder = checkpoint_scores(model, TRAIN, TEST, param_names=["roberta.encoder"])
    for seed in PROJECTION_SEEDS[:4]:
        scores = checkpoint_scores(model, TRAIN, TEST, param_names=["roberta.encoder"], projection_dim=128, projection_seed=seed)
        assert pearson(scores, encoder) > 0.9 and spearman(scores, encoder) > 0.9, seed


def test_stage_passes_projection_through(study, tmp_path, monkeypatch):
    """runners.tracin hands tracin.projection_dim and projection_seed to every checkpoint's scores."""
    calls = []
    scores = influence.checkpoint_influence

    def recorded(*args, **kwargs):
        calls.append((kwargs["projection_dim"], kwargs["projection_seed"]))
        return scores(*args, **kwargs)

    monkeypatch.setattr(influence, "checkpoint_influence", recorded)
    spec = TracinSpec(variants=["full"], train_per_language=4, test_per_language=2, batch_size=4,
                      projection_dim=64, projection_seed=9)
    params = tracin.Params(seed=0, variant="full", languages=study.languages, attention="sdpa",
                          max_length=study.max_length, tracin=spec)
    inputs = study.inputs("data", "finetune")
    summary = tracin.run(params, inputs, tmp_path, TaskContext())
    assert calls == [(64, 9)] * summary["checkpoints"] and summary["checkpoints"] == study.epochs
