"""Per-example gradients of one parameter for a batch, in the forms the inner products need, behind
two small protocols: a batch's `GradientForm` (dense, projected, or the form to keep for a test
batch) and a test batch's `KeptForm` (its inner products with a train batch's gradients)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from runners.methods.influence.projection import Projection, projected_outer

# An embedding table with at most this many rows per real token of an example gets dense
# per-example gradients (one GEMM) instead of token matching (gathers): positions, token types.
DENSE_EMBEDDING_ROWS_PER_TOKEN = 4
# Token matching forms (pairs x hidden) products; this bounds one chunk of them (elements).
TOKEN_PAIR_CHUNK = 1 << 22


class GradientForm(Protocol):
    """One parameter's per-example gradients of a batch (B examples)."""

    def dense(self, scratch: Scratch | None = None) -> Tensor:
        """(B, P), flattened row-major like the parameter."""

    def project(self, projection: Projection) -> Tensor:
        """(B, k): the projected gradients; a factored form is projected before its outer product."""

    def kept(self, train_tokens: int) -> KeptForm:
        """The cheaper form to keep a test batch's gradients in, given train batches of `train_tokens` tokens."""

    def squared_norms(self) -> Tensor:
        """(B,) float64: each example's <g, g>, from the form itself (never a B x B product)."""


class KeptForm(Protocol):
    """A test batch's gradients of one parameter, kept while the train batches stream past."""

    def dot(self, train: TrainGradient) -> Tensor:
        """Inner products with a train batch's gradients: (n_test, B)."""

    def nbytes(self) -> int: ...


class TrainGradient:
    """A train batch's gradients of one parameter as the kept forms read them: the form itself, or its
    dense (B, P) rows, formed at most once for a whole test block."""

    def __init__(self, form: GradientForm, scratch: Scratch):
        self.form = form
        self._scratch = scratch
        self._dense: Tensor | None = None

    def dense(self) -> Tensor:
        if self._dense is None:
            self._dense = self.form.dense(self._scratch)
        return self._dense


class Dense:
    """Per-example gradients flattened: (B, P)."""

    def __init__(self, flat: Tensor):
        self.flat = flat

    def dense(self, scratch: Scratch | None = None) -> Tensor:
        return self.flat

    def project(self, projection: Projection) -> Tensor:
        return projection.flat(self.flat)

    def squared_norms(self) -> Tensor:
        return self.flat.double().square().sum(1)

    def kept(self, train_tokens: int) -> Columns:
        return Columns(self.flat)


class Columns:
    """A test batch's dense per-example gradients kept transposed, (P, n). A train batch's product is
    then (B, P) @ (P, n), the layout BLAS streams fastest: about 2x (n, P) @ (B, P)^T at P = 65,536."""

    def __init__(self, flat: Tensor):
        self.columns = flat.T.contiguous()

    def dot(self, train: TrainGradient) -> Tensor:  # (B, P) -> (n, B)
        return (train.dense() @ self.columns).T

    def nbytes(self) -> int:
        return self.columns.nbytes


class Scratch:
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


class LinearFactors:
    """A Linear weight's per-example gradients as factors: inputs a (B, N, d_in) and output gradients
    g (B, N, d_out), N = tokens (summed over calls); G_i = sum_t g_it a_it^T. Kept as it is for a test
    batch when the Gram identity is the cheaper product."""

    def __init__(self, a: Tensor, g: Tensor):
        self.a, self.g = a, g

    def dense(self, scratch: Scratch | None = None) -> Tensor:
        """G_i flattened row-major like the weight, (B, d_out * d_in); into `scratch`'s buffer when given
        (valid until its next use). g^T a is the faster bmm operand order for the layers here."""
        batch, _, d_in = self.a.shape
        d_out = self.g.shape[2]
        out = scratch.take((batch, d_out, d_in), self.a) if scratch is not None else None
        return torch.bmm(self.g.transpose(1, 2), self.a, out=out).flatten(1)

    def project(self, projection: Projection) -> Tensor:  # G = sum_t g_t a_t^T, (d_out, d_in)
        return projected_outer(projection.left(self.g), projection.right(self.a))

    def squared_norms(self) -> Tensor:
        """The Gram identity on the diagonal: sum_{t,s} (a_it . a_is)(g_it . g_is)."""
        aa = torch.bmm(self.a, self.a.transpose(1, 2))  # (B, N, N)
        gg = torch.bmm(self.g, self.g.transpose(1, 2))
        return (aa * gg).sum((1, 2)).double()

    def kept(self, train_tokens: int) -> KeptForm:
        # Per-sequence layers (the classifier head, N = 1) see one row per example in train batches too.
        tokens = 1 if self.a.shape[1] <= 1 else train_tokens
        return self if self.prefer_gram(tokens) else Columns(self.dense())

    def dot(self, train: TrainGradient) -> Tensor:
        """Gram identity: sum_{t,s} (a_it . a_js)(g_it . g_js), (n, B)."""
        other = train.form
        n, n_tokens, d_in = self.a.shape
        batch, b_tokens, _ = other.a.shape
        aa = (self.a.reshape(n * n_tokens, d_in) @ other.a.reshape(batch * b_tokens, d_in).T).view(n, n_tokens, batch, b_tokens)
        gg = (self.g.reshape(n * n_tokens, -1) @ other.g.reshape(batch * b_tokens, -1).T).view(n, n_tokens, batch, b_tokens)
        return (aa * gg).sum((1, 3))

    def prefer_gram(self, train_tokens: int) -> bool:
        """The Gram identity costs N_test N_train (d_in + d_out) per pair, the dense product d_in d_out."""
        tokens, d_in, d_out = self.a.shape[1], self.a.shape[2], self.g.shape[2]
        return tokens * train_tokens * (d_in + d_out) < d_in * d_out

    def nbytes(self) -> int:
        return self.a.nbytes + self.g.nbytes


class TokenGrads:
    """An embedding's per-example gradients as token ids (B, N) and output gradients (B, N, d)."""

    def __init__(self, ids: Tensor, g: Tensor, num_embeddings: int, padding_idx: int | None):
        self.ids, self.g = ids, g
        self.num_embeddings, self.padding_idx = num_embeddings, padding_idx
        self._dense: Tensor | None = None
        self._rows: TokenRows | None = None

    def _real(self) -> tuple[Tensor, Tensor, Tensor]:
        """(example, id, gradient) of every position whose row gets a gradient: not padding_idx."""
        batch, tokens = self.ids.shape
        examples = torch.arange(batch, device=self.ids.device).unsqueeze(1).expand(batch, tokens)
        real = self.ids != self.padding_idx if self.padding_idx is not None else torch.ones_like(self.ids, dtype=torch.bool)
        return examples[real], self.ids[real], self.g[real]

    def dense(self, scratch: Scratch | None = None) -> Tensor:
        if self._dense is None:
            batch, width = self.ids.shape[0], self.g.shape[-1]
            examples, ids, g = self._real()
            table = self.g.new_zeros(batch * self.num_embeddings, width)
            table.index_add_(0, examples * self.num_embeddings + ids, g)
            self._dense = table.view(batch, self.num_embeddings * width)
        return self._dense

    def project(self, projection: Projection) -> Tensor:  # G = sum_t onehot(id_t) g_t^T, (vocab, width)
        left = projection.left_of_ids(self.ids, self.g.dtype)  # (B, N, k_rows)
        if self.padding_idx is not None:
            left = left * (self.ids != self.padding_idx).unsqueeze(-1).to(left.dtype)  # padding_idx rows get no gradient
        return projected_outer(left, projection.right(self.g))

    def squared_norms(self) -> Tensor:
        """sum over token pairs of one example with the same id (not padding_idx) of g_t . g_s."""
        same = self.ids.unsqueeze(2) == self.ids.unsqueeze(1)  # (B, N, N)
        if self.padding_idx is not None:
            same &= (self.ids != self.padding_idx).unsqueeze(2)
        gg = torch.bmm(self.g, self.g.transpose(1, 2))
        return (gg * same.to(gg.dtype)).sum((1, 2)).double()

    def kept(self, train_tokens: int) -> KeptForm:
        return Columns(self.dense()) if self.prefer_dense() else self.rows()

    def rows(self) -> TokenRows:
        """One summed gradient row per (example, token id), sorted by token id."""
        if self._rows is None:
            batch = self.ids.shape[0]
            examples, ids, g = self._real()
            keys, where = torch.unique(ids * batch + examples, return_inverse=True)  # sorted: by id, then example
            rows = g.new_zeros(len(keys), g.shape[-1]).index_add_(0, where, g)
            self._rows = TokenRows(keys // batch, keys % batch, rows, batch)
        return self._rows

    def prefer_dense(self) -> bool:
        return self.num_embeddings <= DENSE_EMBEDDING_ROWS_PER_TOKEN * max(1, self.ids.shape[1])


@dataclass
class TokenRows:
    """Embedding gradients of a test batch kept as (token id, example, row) triples sorted by id."""

    ids: Tensor  # (P,)
    examples: Tensor  # (P,)
    rows: Tensor  # (P, d)
    batch_size: int

    def dot(self, train: TrainGradient) -> Tensor:
        """sum over matching token ids of row . row, (n, B); pairs found by binary search, chunked."""
        other = train.form.rows()
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
