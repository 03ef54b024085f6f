"""Attention-head masking and head importance for transformers 5 models, which have no `head_mask`.

A forward pre-hook on each layer's attention output projection (`attention.output.dense`) scales
each head's slice of its input — the heads' outputs concatenated, (B, T, H*d) — by a gate. The
projection is the first place where heads are mixed, so this is exact under eager and sdpa alike.

A fully masked layer is well defined: its attention sublayer outputs
LayerNorm(hidden_states + output.dense.bias) (dropout is off in eval), i.e. only the residual
stream goes on, shifted by the projection's bias; the feed-forward sublayer then runs as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

Batch = Mapping[str, torch.Tensor]  # input_ids (B, T), attention_mask (B, T), labels (B,)


def attention_output_projections(model: nn.Module) -> list[nn.Linear]:
    """Each encoder layer's attention output projection, in layer order."""
    encoder = model.base_model.encoder
    return [layer.attention.output.dense for layer in encoder.layer]


def head_grid(model: nn.Module) -> tuple[int, int]:
    """(layers, heads) of the model's attention."""
    config = model.config
    return config.num_hidden_layers, config.num_attention_heads


@contextmanager
def head_mask(model: nn.Module, gates: torch.Tensor) -> Iterator[torch.Tensor]:
    """Scale every head's output by `gates` while the context is open.

    gates: (L, H) for one mask over the batch, or (B, L, H) for one mask per example. A 0/1 tensor
    masks heads; a float tensor with requires_grad gives d loss / d gate (head importance). The
    hooks read `gates` at every forward, so changing it in place (SFT switching languages) works.
    """
    layers, heads = head_grid(model)
    if gates.shape[-2:] != (layers, heads):
        raise ValueError(f"head mask has shape {tuple(gates.shape)}, the model has {layers} layers x {heads} heads")

    def hook_for(layer: int):
        def scale_heads(module: nn.Linear, args: tuple[torch.Tensor, ...]):
            (context,) = args  # (B, T, H*d)
            batch, tokens, width = context.shape
            gate = gates[..., layer, :]  # (H,) or (B, H)
            gate = gate.view(-1, 1, heads, 1) if gate.dim() == 2 else gate.view(1, 1, heads, 1)
            gate = gate.to(device=context.device, dtype=context.dtype)
            scaled = context.view(batch, tokens, heads, width // heads) * gate
            return (scaled.view(batch, tokens, width),)

        return scale_heads

    handles = [proj.register_forward_pre_hook(hook_for(i)) for i, proj in enumerate(attention_output_projections(model))]
    try:
        yield gates
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def planted_modules(
    model: nn.Module, sets: torch.Tensor, silence: float, leak: float
) -> Iterator[Callable[[Batch], torch.Tensor] | None]:
    """One training step of planted modules: each example runs with its family's heads open and the
    other heads at gate `leak` (`sets`, (B, L, H) 0/1, each example's planted set), and a term keeps
    those other heads silent on it.

    At leak 0 the other heads are cut off, so the task's gradient reaches a head only from the
    examples whose set holds it; between 0 and 1 it reaches every head from every example, through
    the head's gate (graded planting); at 1 every head runs fully.

    The silence term is `silence` x the mean, over the (example, out-of-set head) pairs, of what the
    head writes into the residual stream (its output through its columns of the attention output
    projection, before its gate: at leak 0 the gated write is nothing), squared and averaged over
    the example's tokens (the batch's attention_mask). The set, not the gate, says which heads it
    covers, and the ungated write is what it reads, so it asks the same of the same heads at every
    leak: silence and leak are independent dials. Its gradient reaches the out-of-set head's weights
    and, through the head's input, the layers below it (the example's own heads there and the
    shared weights). Without it, at leak 0, a language's out-of-set heads, never trained on its
    inputs, write noise into it when the model runs with every head.

    Yields a function of the batch that gives the term (a 0-d tensor) after the forward pass, or
    None when `silence` is 0 or every head is in every example's set: then this is `head_mask` at the
    gates, exactly, and with every gate 1 (overlap 1, or leak 1) ordinary fine-tuning, bit for bit.
    """
    outside = 1 - sets  # (B, L, H)
    gates = torch.where(sets.bool(), 1.0, leak).to(sets.dtype)  # (B, L, H): at leak 0, `sets` itself
    if silence == 0 or not bool(outside.any()):
        with head_mask(model, gates):
            yield None
        return
    layers, heads = head_grid(model)
    writes = []  # per layer, (B, T, H): each head's squared write at each token

    def hook_for(layer: int):
        def measure(module: nn.Linear, args: tuple[torch.Tensor, ...]):
            (context,) = args  # (B, T, H*d), before head_mask's hook scales it
            batch, length, width = context.shape
            per_head = context.view(batch, length, heads, width // heads)
            columns = module.weight.view(module.weight.shape[0], heads, width // heads)  # (hidden, H, d)
            writes.append(torch.einsum("bthd,ohd->btho", per_head, columns).pow(2).sum(-1))

        return measure

    def term(batch: Batch) -> torch.Tensor:
        mask = batch["attention_mask"].to(writes[0].dtype)  # (B, T)
        energy = (torch.stack(writes, 1) * mask[:, None, :, None]).sum(2) / mask.sum(1)[:, None, None]  # (B, L, H)
        return silence * (energy * outside.to(energy.dtype)).sum() / outside.sum()

    handles = [proj.register_forward_pre_hook(hook_for(i)) for i, proj in enumerate(attention_output_projections(model))]
    try:
        with head_mask(model, gates):
            yield term
    finally:
        for handle in handles:
            handle.remove()


def head_importance(
    model: nn.Module,
    batches: Iterable[Batch],
    gates: torch.Tensor | None = None,
    *,
    normalize_per_layer: bool = True,
    normalize_global: bool = True,
) -> torch.Tensor:
    """Head importance (Michel et al. 2019): how much the loss moves when a head's gate moves.

    I[l, h] = sum over batches |d loss_batch / d gate[l, h]| / (non-padding tokens in all batches),
    evaluated at `gates` (default all ones; pass the current 0/1 mask so that importance is
    recomputed under it, as the iterative pruning loop does). As in HF `run_bertology.py`:
    - loss_batch is the mean cross-entropy over the batch's examples (the model's own loss);
    - a masked head (gate 0) gets the gradient at gate 0 — a first-order estimate of what
      re-enabling it would change — and takes part in both normalisations; the pruning loop
      itself never re-selects a masked head;
    - then `normalize_importance`: each layer's row over its L2 norm, then a global min-max.
    Unlike `run_bertology.py`, the gate gradient is taken per batch with `autograd.grad`, so it
    does not accumulate across batches and leaves the parameters' `.grad` untouched.

    Runs in eval mode (no dropout) and restores the training flag. Returns (L, H) float32.
    """
    layers, heads = head_grid(model)
    parameter = next(model.parameters())
    if gates is None:
        gates = torch.ones(layers, heads)
    gates = gates.detach().to(device=parameter.device, dtype=parameter.dtype).clone().requires_grad_(True)  # (L, H)
    importance = torch.zeros(layers, heads, dtype=parameter.dtype, device=parameter.device)
    tokens = 0
    was_training = model.training
    model.eval()
    try:
        with head_mask(model, gates):
            for batch in batches:
                attention_mask = batch["attention_mask"].to(parameter.device)  # (B, T)
                logits = model(input_ids=batch["input_ids"].to(parameter.device), attention_mask=attention_mask).logits
                loss = F.cross_entropy(logits, batch["labels"].to(parameter.device))  # mean over the batch
                (gate_grad,) = torch.autograd.grad(loss, gates)  # (L, H)
                importance += gate_grad.abs()
                tokens += int(attention_mask.sum())
    finally:
        model.train(was_training)
    importance = importance / max(tokens, 1)
    return normalize_importance(importance, per_layer=normalize_per_layer, global_min_max=normalize_global).float()


def normalize_importance(importance: torch.Tensor, *, per_layer: bool, global_min_max: bool) -> torch.Tensor:
    """Make importance comparable across layers (per-layer L2) and bounded to [0, 1] (global min-max).

    As in `run_bertology.py`; a flat tensor min-max rescales to all zeros instead of 0/0 = NaN.
    """
    if per_layer:
        importance = importance / (importance.norm(p=2, dim=-1, keepdim=True) + 1e-20)  # (L, H)
    if global_min_max:
        spread = importance.max() - importance.min()
        importance = (importance - importance.min()) / spread if spread > 0 else torch.zeros_like(importance)
    return importance


def head_parameters(model: nn.Module) -> list[tuple[int, nn.Parameter, int]]:
    """(layer, parameter, dim) for every parameter that holds per-head slices: the query, key and
    value weights and biases (head h owns rows h*d:(h+1)*d, dim 0) and the attention output
    projection's weight (head h owns those columns, dim 1). The projection's bias is shared."""
    slices = []
    for layer, block in enumerate(model.base_model.encoder.layer):
        for linear in (block.attention.self.query, block.attention.self.key, block.attention.self.value):
            slices += [(layer, linear.weight, 0), (layer, linear.bias, 0)]
        slices.append((layer, block.attention.output.dense.weight, 1))
    return slices


@contextmanager
def only_heads(model: nn.Module, optimizer: torch.optim.Optimizer, mask: torch.Tensor) -> Iterator[None]:
    """One training step that runs with `mask` (L, H) applied and updates only its kept heads.

    The heads outside the mask get a zero gradient, but that is not enough: AdamW's weight decay
    and momentum would still move their weights. So the update is confined the simple, exact way:
    their slices are copied before the step and written back after it, and so are their slices of
    AdamW's moments (exp_avg, exp_avg_sq), so a step of another language neither moves those heads
    nor decays their momentum. Every kept head and every shared parameter (embeddings, FFN,
    LayerNorms, the output projection's bias, the classifier) is updated as usual. AdamW's step
    counter (bias correction) is per tensor and keeps counting: a slice's moments are frozen, not
    its step count. With every head kept this is exactly an ordinary masked step.
    """
    head_dim = model.config.hidden_size // head_grid(model)[1]
    frozen = (mask == 0).nonzero().tolist()
    saved = []
    for layer, parameter, dim in head_parameters(model) if frozen else []:
        channels = [h * head_dim + i for (l, h) in frozen if l == layer for i in range(head_dim)]
        if not channels:
            continue
        index = torch.tensor(channels, device=parameter.device)
        tensors = [parameter.data, *(optimizer.state.get(parameter, {}).get(k) for k in ("exp_avg", "exp_avg_sq"))]
        saved.append((parameter, dim, index, [t.index_select(dim, index) if t is not None else None for t in tensors]))
    with head_mask(model, mask):
        yield
    with torch.no_grad():
        for parameter, dim, index, values in saved:
            state = optimizer.state.get(parameter, {})
            targets = [parameter.data, state.get("exp_avg"), state.get("exp_avg_sq")]
            for target, value in zip(targets, values):
                if target is None:
                    continue
                # A moment created by this very step started at zero and saw a zero gradient: it is
                # still zero there, which is what restoring "nothing" means.
                target.index_copy_(dim, index, value if value is not None else torch.zeros_like(target.index_select(dim, index)))


def planted_sets(layers: int, heads: int, families: list[str], overlap: float, seed: int) -> dict[str, torch.Tensor]:
    """Each family's planted head set, (L, H) 0/1: round(overlap x L x H) heads shared by every family,
    the other heads dealt out to the families in turn, so that at overlap 0 the sets are disjoint and
    at overlap 1 every family has every head.

    The heads are taken in a seeded order that goes round the layers (each layer's heads in a random
    order: one head of every layer, then a second of every layer, ...), so the shared heads and each
    family's own heads are spread over the layers rather than stacked in the first ones.
    """
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be between 0 and 1, got {overlap}")
    generator = torch.Generator().manual_seed(seed)
    orders = [torch.randperm(heads, generator=generator).tolist() for _ in range(layers)]
    walk = [(layer, orders[layer][i]) for i in range(heads) for layer in range(layers)]
    shared = round(overlap * layers * heads)
    sets = {family: torch.zeros(layers, heads) for family in families}
    for layer, head in walk[:shared]:
        for family in families:
            sets[family][layer, head] = 1.0
    for turn, (layer, head) in enumerate(walk[shared:]):
        sets[families[turn % len(families)]][layer, head] = 1.0
    return sets
