"""Per-example gradients of a batch, from one batched backward: which parameters take the fast path
(a hook on their Linear, Embedding or LayerNorm module) and which the slow exact one (one backward
per example), and the gradient form of each."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runners.methods.influence.batches import Batch, logits, masked, trim
from runners.methods.influence.forms import Dense, GradientForm, LinearFactors, TokenGrads
from runners.methods.influence.projection import Projection, random_projections

log = logging.getLogger(__package__)  # runners.methods.influence

FALLBACK = "<fallback>"  # the gradient-form key of the parameters without a fast path, concatenated


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
# Which parameters take which path


@dataclass(frozen=True)
class FastModule:
    name: str
    module: nn.Module
    kind: str  # "linear" | "embedding" | "layernorm"
    params: tuple[str, ...]  # the module's selected parameter attributes: "weight", "bias"


@dataclass(frozen=True)
class GradientPlan:
    fast: tuple[FastModule, ...]
    fallback: dict[str, nn.Parameter] = field(default_factory=dict)  # full name -> parameter
    projections: dict[str, Projection] = field(default_factory=dict)  # full name -> P; absent: exact

    def demote(self, module_name: str, reason: str) -> GradientPlan:
        moved = next(m for m in self.fast if m.name == module_name)
        log.warning(
            "TracIn: %s (%s) has no exact fast path: %s; using one backward per example for its parameters",
            module_name, moved.kind, reason,
        )
        params = {_join(moved.name, attr): getattr(moved.module, attr) for attr in moved.params}
        return GradientPlan(tuple(m for m in self.fast if m is not moved), {**self.fallback, **params}, self.projections)


_FAST_KINDS = {nn.Linear: "linear", nn.Embedding: "embedding", nn.LayerNorm: "layernorm"}


def plan_gradients(
    model: nn.Module, param_names: Iterable[str] | None, projection_dim: int | None = None, projection_seed: int = 0
) -> GradientPlan:
    """Which selected parameters take the fast path (by module), which the fallback, and their projections."""
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
            fast.append(FastModule(name, module, kind, attrs))
            covered |= {id(module._parameters[attr]) for attr in attrs}
    fallback = {name: p for name, p in selected.items() if id(p) not in covered}
    if fallback:
        log.warning("TracIn: no fast path for %s; using one backward per example for them (slow)", sorted(fallback))
    return GradientPlan(tuple(fast), fallback, projections)


def _join(module_name: str, attr: str) -> str:
    return f"{module_name}.{attr}" if module_name else attr


# ---------------------------------------------------------------------------------------------
# Per-example gradients of one batch


class NotPerExample(Exception):
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

    def __init__(self, modules: Sequence[FastModule]):
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
                    raise NotPerExample(name, reason)
                if (call.input._version, call.output._version) != call.versions:
                    raise NotPerExample(name, "its input or output is modified in place after the forward")


def batch_gradients(model: nn.Module, plan: GradientPlan, batch: Batch, gates: Tensor | None) -> dict[str, GradientForm]:
    """Per-example gradients of every selected parameter for one batch: name -> gradient form."""
    batch = trim(batch)
    size = batch["labels"].shape[0]
    with _Recorder(plan.fast) as recorder, masked(model, gates):
        loss = F.cross_entropy(logits(model, batch), batch["labels"], reduction="sum")  # sum: d/d(row i) is example i's
    recorder.check(size)
    calls = [call for m in plan.fast for call in recorder.calls[m.name] if call.output.requires_grad]
    out_grads = torch.autograd.grad(loss, [c.output for c in calls], materialize_grads=True) if calls else ()
    grad_of = {id(c): g for c, g in zip(calls, out_grads)}
    grads: dict[str, GradientForm] = {}
    with torch.no_grad():
        for m in plan.fast:
            module_calls = [(c.input, grad_of[id(c)] if id(c) in grad_of else torch.zeros_like(c.output)) for c in recorder.calls[m.name]]
            grads.update(_module_gradients(m, module_calls, size))
    if plan.fallback:
        grads[FALLBACK] = Dense(_fallback_gradients(model, list(plan.fallback.values()), batch, gates))
    return _projected(plan, grads) if plan.projections else grads


def _projected(plan: GradientPlan, grads: dict[str, GradientForm]) -> dict[str, GradientForm]:
    """The gradient forms with every projected parameter's replaced by its (B, k) projection."""
    out = {}
    with torch.no_grad():
        for name, form in grads.items():
            if name == FALLBACK:
                sizes = [p.numel() for p in plan.fallback.values()]
                parts = zip(plan.fallback, form.flat.split(sizes, dim=1))
                out[name] = Dense(torch.cat([_project(plan.projections.get(n), Dense(part)) for n, part in parts], 1))
            else:
                out[name] = Dense(_project(plan.projections[name], form)) if name in plan.projections else form
    return out


def _project(projection: Projection | None, form: GradientForm) -> Tensor:
    """One parameter's per-example gradients, projected: (B, k); the factored forms are projected
    before their outer product, so the (B, m, n) gradients are never formed. None: dense (B, P)."""
    return form.dense() if projection is None else form.project(projection)


def _module_gradients(m: FastModule, calls: list[tuple[Tensor, Tensor]], size: int) -> dict[str, GradientForm]:
    """The gradient forms of one fast module's selected parameters; calls: (input, output grad)."""
    module = m.module
    if m.kind == "linear":
        a = _tokens([x.detach() for x, _ in calls], size, module.in_features, module.weight)  # (B, N, d_in)
        g = _tokens([g for _, g in calls], size, module.out_features, module.weight)  # (B, N, d_out)
        forms = {"weight": lambda: LinearFactors(a, g), "bias": lambda: Dense(g.sum(1))}
    elif m.kind == "embedding":
        ids = _tokens([x.unsqueeze(-1) for x, _ in calls], size, 1, module.weight.new_zeros(0, dtype=torch.long)).squeeze(-1)  # (B, N)
        g = _tokens([g for _, g in calls], size, module.embedding_dim, module.weight)  # (B, N, d)
        forms = {"weight": lambda: TokenGrads(ids, g, module.num_embeddings, module.padding_idx)}
    else:  # layernorm
        param = module.weight if module.weight is not None else module.bias
        x_hat = _tokens([_normalised(module, x.detach()) for x, _ in calls], size, param.numel(), param)  # (B, N, d)
        g = _tokens([g for _, g in calls], size, param.numel(), param)
        forms = {"weight": lambda: Dense((g * x_hat).sum(1)), "bias": lambda: Dense(g.sum(1))}
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
        example = trim({key: value[i : i + 1] for key, value in batch.items()})
        gate = gates[i] if gates is not None and gates.dim() == 3 else gates
        rows.append(example_gradient(model, params, example, gate))
    return torch.stack(rows)


def example_gradient(model: nn.Module, params: list[nn.Parameter], example: Batch, gate: Tensor | None) -> Tensor:
    """Flattened gradient of one example's loss w.r.t. `params` (zeros for unused ones): (P,)."""
    with masked(model, gate):
        loss = F.cross_entropy(logits(model, example), example["labels"], reduction="sum")
    grads = torch.autograd.grad(loss, params, materialize_grads=True)
    return torch.cat([g.reshape(-1) for g in grads])
