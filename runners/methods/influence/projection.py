"""Random projections of per-example gradients (approximate scores, `projection_dim`): P = P_rows (x)
P_cols per parameter, seeded by (seed, parameter name, side), the same for train, test and every
checkpoint."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


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
