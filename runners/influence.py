"""TracInCP's inner product for one checkpoint: <grad L(w, z), grad L(w, z')> for every (test, train)
pair, exact, from one batched backward per batch instead of one backward per example.

The tracin stage (runners.tracin) calls `checkpoint_scores` once per saved checkpoint c and stores lr_c times the
result; `naive_scores` is the one-backward-per-example reference that tests and benchmarks use.

How the fast path works. A forward hook keeps the input and output of every nn.Linear,
nn.Embedding and nn.LayerNorm that owns a selected parameter; one `autograd.grad` of the summed
loss with respect to those outputs (not the parameters) gives each example's output gradients,
because examples do not interact in an eval-mode encoder. Each parameter's per-example gradient
then follows from the (input, output gradient) pair, and is dotted with the test gradients without
ever forming an n_train x n_params matrix:
  Linear weight   G_i = sum_t g_it a_it^T: materialised per example and dotted, or, when
                  T^2 (d_in + d_out) < d_in d_out (the classifier head, T = 1), the Gram identity
                  <G_i, G_j> = sum_{t,s} (a_it . a_js)(g_it . g_js);
  Linear bias     sum_t g_it;
  Embedding       <E_i, E_j> = sum_{t,s} [id_it = id_js] (g_it . g_js) by matching token ids, or
                  dense per-example rows for small tables (positions, token types); padding_idx
                  rows get no gradient, as in PyTorch;
  LayerNorm       weight sum_t g_it * xhat_it, bias sum_t g_it.
Any other selected parameter (another module type, a parameter tied between modules, a module whose
batch dimension is not first or whose input or output is changed in place) takes a slow but exact
path, one backward per example for those parameters only, and is logged as a warning: nothing is
silently dropped. The fast path assumes what holds for the encoders here: in eval mode examples do
not interact, and a fast module's parameters are used only inside its own forward.

Memory: one train batch's activations and output gradients, one reused buffer for its per-example
gradients of the widest dense-path Linear (B x d_in x d_out), plus the test block: per test example,
d_in x d_out for each dense-path Linear, (tokens x width) for Gram-path Linears and large embedding
tables. `test_block_bytes` bounds the block; nothing grows with n_train.

Random projection (approximate, `projection_dim=d`): every parameter tensor with more than d entries
has its per-example gradient G (viewed as m x n: a Linear weight out x in, an embedding vocab x
width, a vector 1 x n) replaced by P_rows G P_cols^T = (P_rows (x) P_cols) vec(G), at most d numbers.
Gaussian P with E[P^T P] = I makes each score unbiased. Linears and embeddings project their factors
before the outer product (sum_t (P_rows g_t)(P_cols a_t)^T, P_rows columns gathered by token id), so
the m x n per-example gradient is never formed; tensors with at most d entries stay exact. P depends
only on (seed, parameter name, shape): train, test and every checkpoint share it.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import repeat

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runners.heads import head_mask

log = logging.getLogger(__name__)

Batch = Mapping[str, Tensor]  # input_ids (B, T), attention_mask (B, T), labels (B,), token_type_ids optional
Masks = Tensor | Iterable[Tensor | None] | None

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the batch keys passed to the model

# An embedding table with at most this many rows per real token of an example gets dense
# per-example gradients (one GEMM) instead of token matching (gathers): positions, token types.
DENSE_EMBEDDING_ROWS_PER_TOKEN = 4
# Token matching forms (pairs x hidden) products; this bounds one chunk of them (elements).
TOKEN_PAIR_CHUNK = 1 << 22
FALLBACK = "<fallback>"  # the gradient-form key of the parameters without a fast path, concatenated


# ---------------------------------------------------------------------------------------------
# Public API


def checkpoint_scores(
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
) -> Tensor:
    """Gradient inner products <grad L(w, z'), grad L(w, z)> at the model's current weights.

    Returns a float32 CPU tensor (n_test, n_train), rows in the order of the test batches' examples,
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
    """
    train = list(train_batches)
    test = list(test_batches)
    train_gates = _masks_per_batch(train_masks, len(train), "train_masks")
    test_gates = _masks_per_batch(test_masks, len(test), "test_masks")
    plan = _plan(model, param_names, projection_dim, projection_seed)
    while True:
        try:
            with _exact_eval(model):
                return _scores(model, plan, train, train_gates, test, test_gates, test_block_bytes)
        except _NotPerExample as problem:
            plan = plan.demote(problem.module_name, problem.reason)


def naive_scores(
    model: nn.Module,
    train_batches: Iterable[Batch],
    test_batches: Iterable[Batch],
    *,
    train_masks: Masks = None,
    test_masks: Masks = None,
    param_names: Iterable[str] | None = None,
    dtype: torch.dtype = torch.float64,
    projection_dim: int | None = None,
    projection_seed: int = 0,
) -> Tensor:
    """The reference: one backward per example on a `dtype` copy of the model, flattened gradients
    of the selected parameters, dot products. Examples keep their padding. With `projection_dim`,
    each parameter's flattened gradient is multiplied by its explicit projection matrix
    kron(P_rows, P_cols), (k, m n), as `checkpoint_scores` would project it.
    Returns float64 (n_test, n_train); memory n_test x n_params (plus k x n_params for projections)."""
    names = list(selected_parameters(model, param_names))
    reference = copy.deepcopy(model).to(dtype)
    by_name = dict(reference.named_parameters())
    params = [by_name[name] for name in names]
    projections = random_projections({name: p.shape for name, p in zip(names, params)}, projection_dim, projection_seed)
    matrices = [projections[name].matrix().to(params[0].device, dtype) if name in projections else None for name in names]
    train = list(train_batches)
    test = list(test_batches)
    train_gates = _masks_per_batch(train_masks, len(train), "train_masks")
    test_gates = _masks_per_batch(test_masks, len(test), "test_masks")
    device = params[0].device
    sizes = [p.numel() for p in params]
    with _exact_eval(reference):
        test_grads = torch.stack([_example_gradient(reference, params, ex, gate) for ex, gate in _examples(test, test_gates, device)])
        test_blocks = [_times(matrix, block.T).T for matrix, block in zip(matrices, test_grads.split(sizes, dim=1))]

        def products(grad: Tensor) -> Tensor:  # (n_test,)
            # One product per parameter, summed in float64: a single float32 product over all
            # parameters at once is off by ~1e-3 of the largest score.
            parts = [_times(matrix, part) for matrix, part in zip(matrices, grad.split(sizes))]
            return sum((block @ part).double() for block, part in zip(test_blocks, parts))

        columns = [products(_example_gradient(reference, params, ex, gate)) for ex, gate in _examples(train, train_gates, device)]
    return torch.stack(columns, dim=1).cpu()


def _times(matrix: Tensor | None, x: Tensor) -> Tensor:
    """matrix @ x, or x itself for an unprojected parameter (None)."""
    return x if matrix is None else matrix @ x


def selected_parameters(model: nn.Module, param_names: Iterable[str] | None = None) -> dict[str, nn.Parameter]:
    """The parameters TracIn takes gradients of: requires_grad, and named by `param_names` (exact
    names or dotted prefixes) when given. An entry that selects nothing is an error (a typo)."""
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if param_names is None:
        return trainable
    wanted = list(param_names)
    unmatched = [w for w in wanted if not any(_selects(w, name) for name in trainable)]
    if unmatched:
        raise ValueError(
            f"param_names {unmatched} select no trainable parameter of {type(model).__name__}; "
            f"give parameter names or dotted prefixes such as 'roberta.encoder' or 'classifier'"
        )
    return {name: p for name, p in trainable.items() if any(_selects(w, name) for w in wanted)}


def _selects(entry: str, name: str) -> bool:
    return name == entry or name.startswith(entry.rstrip(".") + ".")


# ---------------------------------------------------------------------------------------------
# Random projections (approximate scores)


@dataclass(frozen=True)
class Projection:
    """P = rows (x) cols for one parameter's gradient G viewed as an (m, n) matrix (a vector as
    (1, n)): P vec(G) = vec(rows G cols^T), row-major, (k_rows * k_cols,). A side that is None is
    kept whole (the identity). Entries N(0, 1/k) on a side with k rows give E[side^T side] = I,
    hence E[<P g, P g'>] = <g, g'>."""

    shape: tuple[int, int]  # (m, n)
    rows: Tensor | None  # (k_rows, m)
    cols: Tensor | None  # (k_cols, n)

    def to(self, device, dtype) -> Projection:
        moved = [side.to(device, dtype) if side is not None else None for side in (self.rows, self.cols)]
        return Projection(self.shape, *moved)

    def matrix(self) -> Tensor:
        """The explicit (k_rows * k_cols, m * n) matrix, for references on small models."""
        m, n = self.shape
        rows = self.rows if self.rows is not None else torch.eye(m)
        cols = self.cols if self.cols is not None else torch.eye(n)
        return torch.kron(rows, cols)

    def left(self, x: Tensor) -> Tensor:  # (..., m) -> (..., k_rows)
        return x if self.rows is None else x @ self.rows.T

    def right(self, x: Tensor) -> Tensor:  # (..., n) -> (..., k_cols)
        return x if self.cols is None else x @ self.cols.T

    def left_of_ids(self, ids: Tensor, dtype: torch.dtype) -> Tensor:
        """left(one_hot(ids)) by gathering columns of `rows`: (B, N) -> (B, N, k_rows)."""
        return F.one_hot(ids, self.shape[0]).to(dtype) if self.rows is None else self.rows.T[ids]

    def flat(self, grads: Tensor) -> Tensor:
        """Flattened gradients (B, m * n) -> (B, k_rows * k_cols)."""
        m, n = self.shape
        x = grads.view(-1, m, n)
        x = x if self.rows is None else self.rows @ x  # (B, k_rows, n)
        return self.right(x).flatten(1)


def projected_outer(left: Tensor, right: Tensor) -> Tensor:
    """sum_t left_t right_t^T flattened row-major: (B, N, k_rows), (B, N, k_cols) -> (B, k_rows * k_cols)."""
    return torch.bmm(left.transpose(1, 2), right).flatten(1)


def random_projections(shapes: Mapping[str, Sequence[int]], dim: int | None, seed: int = 0) -> dict[str, Projection]:
    """The projection of every parameter (name -> shape) with more than `dim` entries; the others
    stay exact and get none. A tensor of shape (m, ...) is the matrix (m, numel / m), a vector
    (1, n); the shorter side keeps min(side, floor(sqrt(dim))) rows, the longer side as many as fit
    in `dim`. Each side is drawn, float32 on the CPU, from a generator seeded by (seed, name, side):
    the same P for the same name and shape in every call, whatever the global RNG state."""
    if dim is None:
        return {}
    if dim < 1:
        raise ValueError(f"projection_dim={dim}: give a positive number of projected dimensions, or None for exact scores")
    projections = {}
    for name, shape in shapes.items():
        numel = math.prod(shape)
        if numel <= dim:
            continue
        m = shape[0] if len(shape) >= 2 else 1
        n = numel // m
        k_rows, k_cols = _projected_sides(m, n, dim)
        projections[name] = Projection((m, n), _gaussian(k_rows, m, seed, name, "rows"), _gaussian(k_cols, n, seed, name, "cols"))
    return projections


def _projected_sides(m: int, n: int, dim: int) -> tuple[int, int]:
    """Rows kept of each side of an (m, n) matrix with m n > dim; their product is at most dim."""
    root = math.isqrt(dim)
    if m <= n:
        k_rows = min(m, root)
        return k_rows, min(n, dim // k_rows)
    k_cols = min(n, root)
    return min(m, dim // k_cols), k_cols


def _gaussian(k: int, size: int, seed: int, name: str, side: str) -> Tensor | None:
    """(k, size) with N(0, 1/k) entries, or None (the identity) when the side is not reduced."""
    if k == size:
        return None
    # hashlib, not hash(): Python salts str hashes per process, and P must be the same in every worker.
    digest = hashlib.blake2b(f"{seed}/{name}/{side}".encode(), digest_size=8).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
    return torch.randn(k, size, generator=generator) / math.sqrt(k)


# ---------------------------------------------------------------------------------------------
# Which parameters take which path


@dataclass(frozen=True)
class _FastModule:
    name: str
    module: nn.Module
    kind: str  # "linear" | "embedding" | "layernorm"
    params: tuple[str, ...]  # the module's selected parameter attributes: "weight", "bias"


@dataclass(frozen=True)
class _Plan:
    fast: tuple[_FastModule, ...]
    fallback: dict[str, nn.Parameter] = field(default_factory=dict)  # full name -> parameter
    projections: dict[str, Projection] = field(default_factory=dict)  # full name -> P; absent: exact

    def demote(self, module_name: str, reason: str) -> _Plan:
        moved = next(m for m in self.fast if m.name == module_name)
        log.warning(
            "TracIn: %s (%s) has no exact fast path: %s; using one backward per example for its parameters",
            module_name, moved.kind, reason,
        )
        params = {_join(moved.name, attr): getattr(moved.module, attr) for attr in moved.params}
        return _Plan(tuple(m for m in self.fast if m is not moved), {**self.fallback, **params}, self.projections)


_FAST_KINDS = {nn.Linear: "linear", nn.Embedding: "embedding", nn.LayerNorm: "layernorm"}


def _plan(model: nn.Module, param_names: Iterable[str] | None, projection_dim: int | None = None, projection_seed: int = 0) -> _Plan:
    selected = selected_parameters(model, param_names)
    if not selected:
        raise ValueError(f"{type(model).__name__} has no trainable parameter to take TracIn gradients of")
    projections = random_projections({name: p.shape for name, p in selected.items()}, projection_dim, projection_seed)
    projections = {name: projection.to(selected[name].device, selected[name].dtype) for name, projection in projections.items()}
    selected_ids = {id(p) for p in selected.values()}
    owners: dict[int, set[int]] = {}  # id(param) -> ids of the module objects that hold it
    for module in model.modules():
        for p in module._parameters.values():
            if p is not None:
                owners.setdefault(id(p), set()).add(id(module))
    fast, covered = [], set()
    for name, module in model.named_modules():
        kind = _FAST_KINDS.get(type(module))  # exact type: a subclass may change forward
        attrs = tuple(
            attr
            for attr in ("weight", "bias")
            if (p := module._parameters.get(attr)) is not None and id(p) in selected_ids and len(owners[id(p)]) == 1
        )
        if kind and attrs:
            fast.append(_FastModule(name, module, kind, attrs))
            covered |= {id(module._parameters[attr]) for attr in attrs}
    fallback = {name: p for name, p in selected.items() if id(p) not in covered}
    if fallback:
        log.warning("TracIn: no fast path for %s; using one backward per example for them (slow)", sorted(fallback))
    return _Plan(tuple(fast), fallback, projections)


def _join(module_name: str, attr: str) -> str:
    return f"{module_name}.{attr}" if module_name else attr


# ---------------------------------------------------------------------------------------------
# Per-example gradients of one batch, in the forms the inner products need


class _Dense:
    """Per-example gradients flattened: (B, P)."""

    def __init__(self, flat: Tensor):
        self.flat = flat

    def dense(self) -> Tensor:
        return self.flat


class _Columns:
    """A test batch's dense per-example gradients kept transposed, (P, n). A train batch's product is
    then (B, P) @ (P, n), the layout BLAS streams fastest: about 2x (n, P) @ (B, P)^T at P = 65,536."""

    def __init__(self, flat: Tensor):
        self.columns = flat.T.contiguous()

    def dot(self, train_rows: Tensor) -> Tensor:  # (B, P) -> (n, B)
        return (train_rows @ self.columns).T

    def nbytes(self) -> int:
        return self.columns.nbytes


class _Scratch:
    """One buffer reused for every train batch's dense per-example weight gradients: a fresh 8 MB
    (B, d_out * d_in) tensor per layer and batch went back to the OS and page-faulted in again each
    time, which more than doubled the bmm's time in the benchmark's profile."""

    def __init__(self):
        self.buffer: Tensor | None = None

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        numel = math.prod(shape)
        buffer = self.buffer
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self.buffer = like.new_empty(numel)
        return buffer[:numel].view(shape)


class _LinearFactors:
    """A Linear weight's per-example gradients as factors: inputs a (B, N, d_in) and output gradients
    g (B, N, d_out), N = tokens (summed over calls); G_i = sum_t g_it a_it^T."""

    def __init__(self, a: Tensor, g: Tensor):
        self.a, self.g = a, g

    def dense(self, scratch: _Scratch | None = None) -> Tensor:
        """G_i flattened row-major like the weight, (B, d_out * d_in); into `scratch`'s buffer when given
        (valid until its next use). g^T a is the faster bmm operand order for the layers here."""
        batch, _, d_in = self.a.shape
        d_out = self.g.shape[2]
        out = scratch.take((batch, d_out, d_in), self.a) if scratch is not None else None
        return torch.bmm(self.g.transpose(1, 2), self.a, out=out).flatten(1)

    def dot(self, train: _LinearFactors) -> Tensor:
        """Gram identity: sum_{t,s} (a_it . a_js)(g_it . g_js), (n, B)."""
        n, n_tokens, d_in = self.a.shape
        batch, b_tokens, _ = train.a.shape
        aa = (self.a.reshape(n * n_tokens, d_in) @ train.a.reshape(batch * b_tokens, d_in).T).view(n, n_tokens, batch, b_tokens)
        gg = (self.g.reshape(n * n_tokens, -1) @ train.g.reshape(batch * b_tokens, -1).T).view(n, n_tokens, batch, b_tokens)
        return (aa * gg).sum((1, 3))

    def prefer_gram(self, train_tokens: int) -> bool:
        """The Gram identity costs N_test N_train (d_in + d_out) per pair, the dense product d_in d_out."""
        tokens, d_in, d_out = self.a.shape[1], self.a.shape[2], self.g.shape[2]
        return tokens * train_tokens * (d_in + d_out) < d_in * d_out

    def nbytes(self) -> int:
        return self.a.nbytes + self.g.nbytes


class _TokenGrads:
    """An embedding's per-example gradients as token ids (B, N) and output gradients (B, N, d)."""

    def __init__(self, ids: Tensor, g: Tensor, num_embeddings: int, padding_idx: int | None):
        self.ids, self.g = ids, g
        self.num_embeddings, self.padding_idx = num_embeddings, padding_idx
        self._dense: Tensor | None = None
        self._rows: _TokenRows | None = None

    def _real(self) -> tuple[Tensor, Tensor, Tensor]:
        """(example, id, gradient) of every position whose row gets a gradient: not padding_idx."""
        batch, tokens = self.ids.shape
        examples = torch.arange(batch, device=self.ids.device).unsqueeze(1).expand(batch, tokens)
        real = self.ids != self.padding_idx if self.padding_idx is not None else torch.ones_like(self.ids, dtype=torch.bool)
        return examples[real], self.ids[real], self.g[real]

    def dense(self) -> Tensor:
        if self._dense is None:
            batch, width = self.ids.shape[0], self.g.shape[-1]
            examples, ids, g = self._real()
            table = self.g.new_zeros(batch * self.num_embeddings, width)
            table.index_add_(0, examples * self.num_embeddings + ids, g)
            self._dense = table.view(batch, self.num_embeddings * width)
        return self._dense

    def rows(self) -> _TokenRows:
        """One summed gradient row per (example, token id), sorted by token id."""
        if self._rows is None:
            batch = self.ids.shape[0]
            examples, ids, g = self._real()
            keys, where = torch.unique(ids * batch + examples, return_inverse=True)  # sorted: by id, then example
            rows = g.new_zeros(len(keys), g.shape[-1]).index_add_(0, where, g)
            self._rows = _TokenRows(keys // batch, keys % batch, rows, batch)
        return self._rows

    def prefer_dense(self) -> bool:
        return self.num_embeddings <= DENSE_EMBEDDING_ROWS_PER_TOKEN * max(1, self.ids.shape[1])


@dataclass
class _TokenRows:
    """Embedding gradients of a test batch kept as (token id, example, row) triples sorted by id."""

    ids: Tensor  # (P,)
    examples: Tensor  # (P,)
    rows: Tensor  # (P, d)
    batch_size: int

    def dot(self, train: _TokenGrads) -> Tensor:
        """sum over matching token ids of row . row, (n, B); pairs found by binary search, chunked."""
        other = train.rows()
        first = torch.searchsorted(self.ids, other.ids)
        counts = torch.searchsorted(self.ids, other.ids, right=True) - first  # test rows per train row
        ends = torch.cumsum(counts, 0)
        total = int(ends[-1]) if len(ends) else 0
        out = self.rows.new_zeros(self.batch_size, other.batch_size)
        step = max(1, TOKEN_PAIR_CHUNK // max(1, self.rows.shape[1]))
        for start in range(0, total, step):
            pair = torch.arange(start, min(start + step, total), device=ends.device)
            j = torch.searchsorted(ends, pair, right=True)  # train row of each pair
            i = first[j] + pair - (ends[j] - counts[j])  # test row of each pair
            dots = (self.rows[i] * other.rows[j]).sum(-1)
            out.index_put_((self.examples[i], other.examples[j]), dots, accumulate=True)
        return out

    def nbytes(self) -> int:
        return self.ids.nbytes + self.examples.nbytes + self.rows.nbytes


class _NotPerExample(Exception):
    """A fast-path module whose captured tensors cannot be split by example."""

    def __init__(self, module_name: str, reason: str):
        super().__init__(module_name, reason)
        self.module_name, self.reason = module_name, reason


@dataclass
class _Call:
    input: Tensor
    output: Tensor
    versions: tuple[int, int]  # to notice in-place changes after the hook saw them


class _Recorder:
    """Forward hooks that keep each fast module's input and output, per call, for one forward."""

    def __init__(self, modules: Sequence[_FastModule]):
        self.modules = modules
        self.calls: dict[str, list[_Call]] = {m.name: [] for m in modules}
        self._handles = []

    def __enter__(self) -> _Recorder:
        for m in self.modules:
            self._handles.append(m.module.register_forward_hook(self._hook(m.name), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _hook(self, name: str):
        def record(module, args, kwargs, output):
            x = args[0] if args else next(iter(kwargs.values()))
            self.calls[name].append(_Call(x, output, (x._version, output._version)))

        return record

    def check(self, batch: int) -> None:
        for name, calls in self.calls.items():
            for call in calls:
                if call.input.shape[:1] != (batch,) or call.output.shape[:1] != (batch,):
                    reason = f"called with input {tuple(call.input.shape)}, not batch-first for a batch of {batch}"
                    raise _NotPerExample(name, reason)
                if (call.input._version, call.output._version) != call.versions:
                    raise _NotPerExample(name, "its input or output is modified in place after the forward")


def _batch_gradients(model: nn.Module, plan: _Plan, batch: Batch, gates: Tensor | None) -> dict[str, object]:
    """Per-example gradients of every selected parameter for one batch: name -> gradient form."""
    batch = _trim(batch)
    size = batch["labels"].shape[0]
    with _Recorder(plan.fast) as recorder, _masked(model, gates):
        loss = F.cross_entropy(_logits(model, batch), batch["labels"], reduction="sum")  # sum: d/d(row i) is example i's
    recorder.check(size)
    calls = [call for m in plan.fast for call in recorder.calls[m.name] if call.output.requires_grad]
    out_grads = torch.autograd.grad(loss, [c.output for c in calls], materialize_grads=True) if calls else ()
    grad_of = {id(c): g for c, g in zip(calls, out_grads)}
    grads: dict[str, object] = {}
    with torch.no_grad():
        for m in plan.fast:
            module_calls = [(c.input, grad_of[id(c)] if id(c) in grad_of else torch.zeros_like(c.output)) for c in recorder.calls[m.name]]
            grads.update(_module_gradients(m, module_calls, size))
    if plan.fallback:
        grads[FALLBACK] = _Dense(_fallback_gradients(model, list(plan.fallback.values()), batch, gates))
    return _projected(plan, grads) if plan.projections else grads


def _projected(plan: _Plan, grads: dict[str, object]) -> dict[str, object]:
    """The gradient forms with every projected parameter's replaced by its (B, k) projection."""
    out = {}
    with torch.no_grad():
        for name, form in grads.items():
            if name == FALLBACK:
                sizes = [p.numel() for p in plan.fallback.values()]
                parts = zip(plan.fallback, form.flat.split(sizes, dim=1))
                out[name] = _Dense(torch.cat([_project(plan.projections.get(n), _Dense(part)) for n, part in parts], 1))
            else:
                out[name] = _Dense(_project(plan.projections[name], form)) if name in plan.projections else form
    return out


def _project(projection: Projection | None, form) -> Tensor:
    """One parameter's per-example gradients, projected: (B, k); the factored forms are projected
    before their outer product, so the (B, m, n) gradients are never formed."""
    if projection is None:
        return form.dense()
    if isinstance(form, _LinearFactors):  # G = sum_t g_t a_t^T, (d_out, d_in)
        return projected_outer(projection.left(form.g), projection.right(form.a))
    if isinstance(form, _TokenGrads):  # G = sum_t onehot(id_t) g_t^T, (vocab, width)
        left = projection.left_of_ids(form.ids, form.g.dtype)  # (B, N, k_rows)
        if form.padding_idx is not None:
            left = left * (form.ids != form.padding_idx).unsqueeze(-1).to(left.dtype)  # padding_idx rows get no gradient
        return projected_outer(left, projection.right(form.g))
    return projection.flat(form.dense())


def _module_gradients(m: _FastModule, calls: list[tuple[Tensor, Tensor]], size: int) -> dict[str, object]:
    """The gradient forms of one fast module's selected parameters; calls: (input, output grad)."""
    module = m.module
    if m.kind == "linear":
        a = _tokens([x.detach() for x, _ in calls], size, module.in_features, module.weight)  # (B, N, d_in)
        g = _tokens([g for _, g in calls], size, module.out_features, module.weight)  # (B, N, d_out)
        forms = {"weight": lambda: _LinearFactors(a, g), "bias": lambda: _Dense(g.sum(1))}
    elif m.kind == "embedding":
        ids = _tokens([x.unsqueeze(-1) for x, _ in calls], size, 1, module.weight.new_zeros(0, dtype=torch.long)).squeeze(-1)  # (B, N)
        g = _tokens([g for _, g in calls], size, module.embedding_dim, module.weight)  # (B, N, d)
        forms = {"weight": lambda: _TokenGrads(ids, g, module.num_embeddings, module.padding_idx)}
    else:  # layernorm
        param = module.weight if module.weight is not None else module.bias
        x_hat = _tokens([_normalised(module, x.detach()) for x, _ in calls], size, param.numel(), param)  # (B, N, d)
        g = _tokens([g for _, g in calls], size, param.numel(), param)
        forms = {"weight": lambda: _Dense((g * x_hat).sum(1)), "bias": lambda: _Dense(g.sum(1))}
    return {_join(m.name, attr): forms[attr]() for attr in m.params}


def _tokens(parts: list[Tensor], size: int, width: int, like: Tensor) -> Tensor:
    """Per-call tensors (B, ..., width) joined along one token axis: (B, N, width); none: N = 0."""
    if not parts:
        return like.new_zeros(size, 0, width)
    parts = [p.reshape(size, -1, width) for p in parts]
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def _normalised(module: nn.LayerNorm, x: Tensor) -> Tensor:
    """LayerNorm's x_hat = (x - mean) / sqrt(var + eps), by the same kernel as the module."""
    return F.layer_norm(x, module.normalized_shape, eps=module.eps)


def _fallback_gradients(model: nn.Module, params: list[nn.Parameter], batch: Batch, gates: Tensor | None) -> Tensor:
    """One forward and backward per example for the parameters without a fast path: (B, P)."""
    size = batch["labels"].shape[0]
    rows = []
    for i in range(size):
        example = _trim({key: value[i : i + 1] for key, value in batch.items()})
        gate = gates[i] if gates is not None and gates.dim() == 3 else gates
        rows.append(_example_gradient(model, params, example, gate))
    return torch.stack(rows)


def _example_gradient(model: nn.Module, params: list[nn.Parameter], example: Batch, gate: Tensor | None) -> Tensor:
    """Flattened gradient of one example's loss w.r.t. `params` (zeros for unused ones): (P,)."""
    with _masked(model, gate):
        loss = F.cross_entropy(_logits(model, example), example["labels"], reduction="sum")
    grads = torch.autograd.grad(loss, params, materialize_grads=True)
    return torch.cat([g.reshape(-1) for g in grads])


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass
class _TestBatch:
    rows: slice  # this batch's rows of the score matrix
    grads: dict[str, object]  # name -> form kept for the inner products


def _scores(model, plan, train, train_gates, test, test_gates, test_block_bytes) -> Tensor:
    device = _device(model)
    train = [_to(b, device) for b in train]
    test = [_to(b, device) for b in test]
    n_train = sum(b["labels"].shape[0] for b in train)
    n_test = sum(b["labels"].shape[0] for b in test)
    train_tokens = max((_trimmed_length(b) for b in train), default=1)
    scores = torch.zeros(n_test, n_train)
    scratch = _Scratch()
    for block in _test_blocks(model, plan, test, test_gates, train_tokens, test_block_bytes, device):
        start = 0
        for batch, gates in zip(train, train_gates):
            size = batch["labels"].shape[0]
            grads = _batch_gradients(model, plan, batch, _on(gates, device))
            rows = slice(block[0].rows.start, block[-1].rows.stop)
            scores[rows, start : start + size] = _block_scores(block, grads, size, scratch, device).float().cpu()
            start += size
    return scores


def _test_blocks(model, plan, test, test_gates, train_tokens, budget, device) -> Iterator[list[_TestBatch]]:
    """Test gradients, in blocks that fit `budget` bytes (one block when None)."""
    block, used, row = [], 0, 0
    for batch, gates in zip(test, test_gates):
        size = batch["labels"].shape[0]
        grads = {name: _kept_form(form, train_tokens) for name, form in _batch_gradients(model, plan, batch, _on(gates, device)).items()}
        block.append(_TestBatch(slice(row, row + size), grads))
        used += sum(form.nbytes() for form in grads.values())
        row += size
        if budget is not None and used >= budget:
            yield block
            block, used = [], 0
    if block:
        yield block


def _kept_form(form, train_tokens: int):
    """The cheaper form to keep a test gradient in, given train batches of `train_tokens` tokens."""
    if isinstance(form, _LinearFactors):
        # Per-sequence layers (the classifier head, N = 1) see one row per example in train batches too.
        tokens = 1 if form.a.shape[1] <= 1 else train_tokens
        return form if form.prefer_gram(tokens) else _Columns(form.dense())
    if isinstance(form, _TokenGrads):
        return _Columns(form.dense()) if form.prefer_dense() else form.rows()
    return _Columns(form.flat) if isinstance(form, _Dense) else form


def _block_scores(block: list[_TestBatch], train_grads: dict[str, object], size: int, scratch: _Scratch, device) -> Tensor:
    """Sum over parameters of test . train gradient inner products, float64 (n_block, B)."""
    n_block = block[-1].rows.stop - block[0].rows.start
    offset = block[0].rows.start
    total = torch.zeros(n_block, size, dtype=torch.float64, device=device)
    for name in list(train_grads):
        train_form = train_grads.pop(name)  # drop each train gradient once used: memory of one layer
        train_rows = None  # the train batch's dense gradients (B, P), formed once for the whole block
        for test_batch in block:
            test_form = test_batch.grads.get(name)
            if test_form is None:
                continue
            if isinstance(test_form, _Columns):
                if train_rows is None:
                    train_rows = train_form.dense(scratch) if isinstance(train_form, _LinearFactors) else train_form.dense()
                product = test_form.dot(train_rows)
            else:
                product = test_form.dot(train_form)
            rows = slice(test_batch.rows.start - offset, test_batch.rows.stop - offset)
            total[rows] += product.double()
    return total


# ---------------------------------------------------------------------------------------------
# Batches, masks, precision


def _logits(model: nn.Module, batch: Batch) -> Tensor:
    out = model(**{key: batch[key] for key in MODEL_INPUTS if key in batch})
    return out.logits if hasattr(out, "logits") else out


def _trim(batch: Batch) -> dict[str, Tensor]:
    """Drop the leading and trailing columns that are padding in every example."""
    real = batch["attention_mask"].bool().any(0).nonzero().flatten()
    if len(real) == 0:
        return dict(batch)
    first, last = int(real[0]), int(real[-1]) + 1
    return {key: value[:, first:last] if key in MODEL_INPUTS else value for key, value in batch.items()}


def _trimmed_length(batch: Batch) -> int:
    real = batch["attention_mask"].bool().any(0).nonzero().flatten()
    return int(real[-1] - real[0]) + 1 if len(real) else 1


def _examples(batches: list[Batch], gates: Iterable[Tensor | None], device) -> Iterator[tuple[Batch, Tensor | None]]:
    """One-example batches (padding kept) with each example's head mask."""
    for batch, gate in zip(batches, gates):
        batch, gate = _to(batch, device), _on(gate, device)
        for i in range(batch["labels"].shape[0]):
            yield {key: value[i : i + 1] for key, value in batch.items()}, gate[i] if gate is not None and gate.dim() == 3 else gate


def _masks_per_batch(masks: Masks, n_batches: int, what: str) -> list[Tensor | None]:
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


def _masked(model: nn.Module, gates: Tensor | None):
    return head_mask(model, gates) if gates is not None else nullcontext()


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _to(batch: Batch, device) -> dict[str, Tensor]:
    return {key: value.to(device) if isinstance(value, Tensor) else value for key, value in batch.items()}


def _on(gates: Tensor | None, device) -> Tensor | None:
    return gates.to(device) if gates is not None else None


@contextmanager
def _exact_eval(model: nn.Module):
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
