"""Language subnetworks (stage 2): one task per (seed, language) prunes attention heads of the
fully fine-tuned model until that language's metric would drop below threshold x the full model's.

The method is in `runners.methods.pruning` (the loop) and `runners.methods.heads` (gates and
importance); this module wires them to a checkpoint and a language's examples and writes the
store's tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from runners.context import TaskContext
from runners.inputs import Inputs
from runners.stage import MAX_BATCH_SIZE, MAX_EXAMPLES, Planned, Section, StageParams, Upstream
from runners.tables import write_table

VERSION = 1
READS = ("data", "model", "finetune", "prune")
RESUMABLE = False
MEMORY_FIELDS = ("prune.batch_size", "finetune.max_length")  # what to lower when the task runs out of memory
TABLES = ("subnetworks", "prune_steps", "metrics")
EVAL_SPLITS = ("validation", "test")
ONLY_ROLE = "ablation"  # the input role of a prune task on a monolingual model (an ablation task in mode `only`)


class PruneSpec(Section):
    enabled: bool = Field(True, description="Find one subnetwork per language by attention-head pruning.")
    threshold: float = Field(
        0.95, gt=0.0, le=1.0, description="Keep pruning while the metric stays >= threshold x the full model's."
    )
    step: float = Field(0.1, gt=0.0, lt=1.0, description="Share of all heads masked per pruning step (at least one).")
    split: Literal["validation", "train", "test"] = Field(
        "validation", description="Split used for head importance and the stopping rule."
    )
    normalize_per_layer: bool = Field(True, description="L2-normalise importance within each layer.")
    normalize_global: bool = Field(True, description="Min-max rescale importance over all heads.")
    max_examples: int | None = Field(
        None, ge=1, le=MAX_EXAMPLES, description="Use only the first N examples per language of the split (None: all)."
    )
    batch_size: int = Field(
        32, ge=1, le=MAX_BATCH_SIZE, description="Examples per batch for importance; importance sums per-batch gradients, so it matters."
    )
    keep_one_head_per_layer: bool = Field(
        False, description="Never mask a layer's last head (off as in Michel et al.; a fully masked layer passes only the residual stream)."
    )


SECTIONS = {"prune": (PruneSpec, Field(default_factory=PruneSpec, description="Language subnetworks by head pruning."))}


class Params(StageParams):
    seed: int
    language: str
    prune: PruneSpec
    attention: Literal["sdpa", "eager"]
    max_length: int


def check(spec) -> None:
    """No rules across sections."""


def tasks(spec, seed: int, upstream: Upstream) -> Iterator[Planned]:
    """One task per language, on the seed's fine-tuned model run as it was trained (same attention
    kernel and truncation: model.attention and finetune.max_length). With the ablation in mode
    `only`, also one per monolingual model, for its own language: `prune[seed=0,language=ka,model=only]`,
    whose input `ablation` (instead of `finetune`) tells its masks from the multilingual model's."""
    if not spec.prune.enabled:
        return
    data = ("data", upstream.key("data"))
    for language in spec.data.languages:
        yield Planned({"seed": seed, "language": language}, _params(spec, seed, language),
                      (data, ("finetune", upstream.key("finetune", seed=seed))))
    for labels, key in upstream.keys("ablation", seed=seed):
        if "only" in labels:
            language = labels["only"]
            yield Planned({"seed": seed, "language": language, "model": "only"}, _params(spec, seed, language),
                          (data, (ONLY_ROLE, key)))


def _params(spec, seed: int, language: str) -> Params:
    return Params(seed=seed, language=language, prune=spec.prune, attention=spec.model.attention, max_length=spec.finetune.max_length)


def run(params: Params, inputs: Inputs, workdir: Path, ctx: TaskContext) -> dict:
    import torch

    from runners.methods import heads, models, pruning

    config = params.prune
    device = torch.device(ctx.device)
    monolingual = ONLY_ROLE in inputs  # pruning the model fine-tuned on this language alone
    checkpoint = (inputs.ablation if monolingual else inputs.finetune).last_checkpoint()
    model, tokenizer = models.load_checkpoint(checkpoint.path, params.attention)
    model.to(device).eval()
    pad_id = tokenizer.pad_token_id

    def language_batches(split: str, limit: int | None = None) -> list[dict]:
        rows = inputs.data.examples(split, params.language)[:limit]
        if not rows:
            raise ValueError(f"language {params.language!r} has no {split} examples to prune on")
        encoded = models.encode(tokenizer, rows, params.max_length)
        return list(models.batches(encoded, config.batch_size, pad_id, device))

    batches = language_batches(config.split, config.max_examples)
    layers, heads_per_layer = heads.head_grid(model)
    evaluated = 0

    def importance(mask: torch.Tensor) -> torch.Tensor:
        return heads.head_importance(
            model, batches, mask,
            normalize_per_layer=config.normalize_per_layer, normalize_global=config.normalize_global,
        ).cpu()

    def evaluate(mask: torch.Tensor) -> float:
        nonlocal evaluated
        evaluated += 1
        value = pruning.evaluate_accuracy(model, batches, mask)
        ctx.report(evaluated, 0, f"{params.language}: {int(mask.sum())} heads kept, accuracy {value:.3f}")
        return value

    mask, scores, steps = pruning.iterative_prune(
        layers, heads_per_layer, importance, evaluate, full_metric=None,
        threshold=config.threshold, step=config.step, keep_one_head_per_layer=config.keep_one_head_per_layer,
    )
    common = {"seed": params.seed, "language": params.language}
    write_table(workdir, "subnetworks", [
        {**common, "layer": l, "head": h, "kept": bool(mask[l, h]), "importance": float(scores[l, h])}
        for l in range(layers) for h in range(heads_per_layer)
    ])
    write_table(workdir, "prune_steps", [
        {**common, "step": s.step, "heads_kept": s.heads_kept, "metric_value": s.metric_value,
         "ratio_to_full": s.ratio_to_full, "accepted": s.accepted}
        for s in steps
    ])
    metrics = []
    for split in EVAL_SPLITS:
        accuracy = pruning.evaluate_accuracy(model, language_batches(split), mask)
        metrics.append({**common, "variant": "only_subnetwork" if monolingual else "subnetwork", "split": split, "metric": "accuracy", "value": accuracy, "epoch": checkpoint.epoch})
    write_table(workdir, "metrics", metrics)
    final = [s for s in steps if s.accepted][-1]  # step 0, the full model, is always accepted
    return {
        "heads_kept": final.heads_kept, "heads_total": layers * heads_per_layer, "steps": len(steps) - 1,
        "full_metric": steps[0].metric_value, "subnetwork_metric": final.metric_value,
    }
