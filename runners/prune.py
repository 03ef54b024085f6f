"""Language subnetworks (stage 2): one task per (seed, language) prunes attention heads of the
fully fine-tuned model until that language's metric would drop below threshold x the full model's.

The method is in `runners.pruning` (the loop) and `runners.heads` (gates and importance); this
module wires them to a checkpoint and a language's examples and writes the store's tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from langspec.spec import PruneSpec
from runners.context import TaskContext
from runners.data import read_examples
from runners.tables import write_table

VERSION = 1
TABLES = ("subnetworks", "prune_steps", "metrics")  # what a task of this stage hands to the store; a task without them is not done
MEMORY_FIELDS = ("prune.batch_size", "finetune.max_length")  # what to lower when the task runs out of memory
EVAL_SPLITS = ("validation", "test")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int
    language: str
    prune: PruneSpec
    attention: Literal["sdpa", "eager"]
    max_length: int


def mask_role(language: str) -> str:
    """The input role under which a downstream task receives a language's prune task."""
    return f"prune.{language}"


def read_mask(prune_dir: Path):
    """A prune task's final mask as an (L, H) float tensor of 0/1."""
    import torch

    rows = pq.read_table(prune_dir / "tables" / "subnetworks.parquet").to_pylist()
    mask = torch.zeros(max(r["layer"] for r in rows) + 1, max(r["head"] for r in rows) + 1)
    for r in rows:
        mask[r["layer"], r["head"]] = float(r["kept"])
    return mask


def last_checkpoint(finetune_dir: Path) -> tuple[int, Path]:
    """(epoch, directory) of a fine-tuning task's last checkpoint."""
    rows = pq.read_table(finetune_dir / "tables" / "checkpoints.parquet").to_pylist()
    last = max(rows, key=lambda row: row["epoch"])
    return last["epoch"], finetune_dir / last["path"]


def run(params: Params, inputs: dict[str, Path], workdir: Path, ctx: TaskContext) -> dict:
    import torch

    from runners import heads, models, pruning

    config = params.prune
    device = torch.device(ctx.device)
    epoch, checkpoint = last_checkpoint(inputs["finetune"])
    model, tokenizer = models.load_checkpoint(checkpoint, params.attention)
    model.to(device).eval()
    pad_id = tokenizer.pad_token_id

    def language_batches(split: str, limit: int | None = None) -> list[dict]:
        rows = read_examples(inputs["data"], split=split, language=params.language)[:limit]
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
        metrics.append({**common, "variant": "subnetwork", "split": split, "metric": "accuracy", "value": accuracy, "epoch": epoch})
    write_table(workdir, "metrics", metrics)
    final = [s for s in steps if s.accepted][-1]  # step 0, the full model, is always accepted
    return {
        "heads_kept": final.heads_kept, "heads_total": layers * heads_per_layer, "steps": len(steps) - 1,
        "full_metric": steps[0].metric_value, "subnetwork_metric": final.metric_value,
    }
