"""The naive TracIn reference that the tests and benchmarks/tracin.py compare the fast scores with:
one backward per example on a float64 copy of the model, flattened gradients, dot products."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from runners.methods.influence import random_projections, selected_parameters
from runners.methods.influence.batches import Batch, Masks, exact_eval, masks_per_batch, one_by_one
from runners.methods.influence.gradients import example_gradient


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
    train_gates = masks_per_batch(train_masks, len(train), "train_masks")
    test_gates = masks_per_batch(test_masks, len(test), "test_masks")
    device = params[0].device
    sizes = [p.numel() for p in params]
    with exact_eval(reference):
        test_grads = torch.stack([example_gradient(reference, params, ex, gate) for ex, gate in one_by_one(test, test_gates, device)])
        test_blocks = [_times(matrix, block.T).T for matrix, block in zip(matrices, test_grads.split(sizes, dim=1))]

        def products(grad: Tensor) -> Tensor:  # (n_test,)
            # One product per parameter, summed in float64: a single float32 product over all
            # parameters at once is off by ~1e-3 of the largest score.
            parts = [_times(matrix, part) for matrix, part in zip(matrices, grad.split(sizes))]
            return sum((block @ part).double() for block, part in zip(test_blocks, parts))

        columns = [products(example_gradient(reference, params, ex, gate)) for ex, gate in one_by_one(train, train_gates, device)]
    return torch.stack(columns, dim=1).cpu()


def _times(matrix: Tensor | None, x: Tensor) -> Tensor:
    """matrix @ x, or x itself for an unprojected parameter (None)."""
    return x if matrix is None else matrix @ x
