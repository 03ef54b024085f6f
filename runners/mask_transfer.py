"""Mask transfer (after the subnetworks): is a language's subnetwork specific to it? One task per
seed evaluates every language's test set under every language's subnetwork mask, on the seed's
fine-tuned model. The diagonal is each language's own subnetwork; the rest are the other languages'
masks on its data, the comparison that "language subnetworks exist" needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from runners.context import TaskContext
from runners.inputs import Inputs, mask_inputs
from runners.stage import Planned, StageParams, Upstream
from runners.tables import write_table

VERSION = 1
READS = ("data", "model", "finetune", "prune")
RESUMABLE = False
MEMORY_FIELDS = ("finetune.eval_batch_size", "finetune.max_length")  # what to lower when the task runs out of memory
TABLES = ("mask_transfer",)
SPLIT = "test"
SECTIONS: dict = {}  # no section of its own: it runs whenever prune does


class Params(StageParams):
    seed: int
    languages: tuple[str, ...]
    attention: Literal["sdpa", "eager"]
    max_length: int
    batch_size: int  # evaluation batches: no effect on the results


def check(spec) -> None:
    """No rules across sections."""


def tasks(spec, seed: int, upstream: Upstream) -> Iterator[Planned]:
    """One task per seed, on the fine-tuned model run as it was trained, with every language's mask."""
    if not spec.prune.enabled:
        return
    params = Params(
        seed=seed, languages=tuple(spec.data.languages), attention=spec.model.attention,
        max_length=spec.finetune.max_length, batch_size=spec.finetune.eval_batch_size,
    )
    inputs = (("data", upstream.key("data")), ("finetune", upstream.key("finetune", seed=seed))) + mask_inputs(upstream, seed)
    yield Planned({"seed": seed}, params, inputs)


def run(params: Params, inputs: Inputs, workdir: Path, ctx: TaskContext) -> dict:
    import torch

    from runners.methods import models
    from runners.methods.heads import head_mask

    device = torch.device(ctx.device)
    checkpoint = inputs.finetune.last_checkpoint()
    model, tokenizer = models.load_checkpoint(checkpoint.path, params.attention)
    model.to(device).eval()
    masks = {language: mask.to(device) for language, mask in inputs.masks(params.languages).items()}
    rows = []
    for done, language in enumerate(params.languages):
        encoded = models.encode(tokenizer, inputs.data.examples(SPLIT, language), params.max_length)
        for mask_language, mask in masks.items():
            with head_mask(model, mask):
                predicted = models.predict(model, encoded, params.batch_size, tokenizer.pad_token_id, device)
            correct = sum(int(p == label) for p, label in zip(predicted, encoded.labels))
            rows.append({
                "seed": params.seed, "language": language, "mask_language": mask_language, "split": SPLIT, "epoch": checkpoint.epoch,
                "heads_kept": int(mask.sum()), "examples": len(encoded), "correct": correct, "accuracy": correct / len(encoded),
            })
        ctx.report(done + 1, len(params.languages), f"{language} under every mask")
    write_table(workdir, "mask_transfer", rows)
    own = {r["language"]: r["accuracy"] for r in rows if r["language"] == r["mask_language"]}
    return {"own_mask_accuracy": own, "pairs": len(rows)}
