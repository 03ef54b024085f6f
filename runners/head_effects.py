"""Head effects (beyond the paper): what each attention head does for each language, measured by
ablation rather than by gradients. One task per seed evaluates, on the seed's fine-tuned model, each
language's mean validation loss with every head on and with each head in turn gated off:
layers x heads + 1 evaluations per language.

Pruning ranks heads by their gate gradients (Michel et al.), which planted modules train directly;
the loss increase when a head is switched off is a probe of the same question by another route
(docs/known-answers.md, "What the instrument recovers").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from runners.context import TaskContext
from runners.inputs import Inputs
from runners.stage import MAX_EXAMPLES, Planned, Section, StageParams, Upstream
from runners.tables import write_table

VERSION = 1
READS = ("data", "model", "finetune", "head_effects")
RESUMABLE = False
MEMORY_FIELDS = ("finetune.eval_batch_size", "finetune.max_length")  # what to lower when the task runs out of memory
TABLES = ("head_effects",)
SPLIT = "validation"  # pruning's default split: the two probes of the heads read the same examples


class HeadEffectsSpec(Section):
    enabled: bool = Field(
        False, description="Per seed, each language's mean validation loss on the fine-tuned model with every head on and "
        "with each attention head alone gated off (layers x heads + 1 evaluations per language): an independent probe "
        "of the heads beside pruning's gradient importance.",
    )
    max_examples: int | None = Field(
        None, ge=1, le=MAX_EXAMPLES, description="Use only the first N validation examples per language (None: all)."
    )


SECTIONS = {
    "head_effects": (
        HeadEffectsSpec,
        Field(default_factory=HeadEffectsSpec, description="Each head's ablation effect on each language's validation loss."),
    )
}


class Params(StageParams):
    seed: int
    languages: tuple[str, ...]
    max_examples: int | None
    attention: Literal["sdpa", "eager"]
    max_length: int
    batch_size: int  # evaluation batches: no effect on the results


def check(spec) -> None:
    """No rules across sections."""


def tasks(spec, seed: int, upstream: Upstream) -> Iterator[Planned]:
    """One task per seed, on the fine-tuned model run as it was trained (model.attention, finetune.max_length)."""
    if not spec.head_effects.enabled:
        return
    params = Params(
        seed=seed, languages=tuple(spec.data.languages), max_examples=spec.head_effects.max_examples,
        attention=spec.model.attention, max_length=spec.finetune.max_length, batch_size=spec.finetune.eval_batch_size,
    )
    yield Planned({"seed": seed}, params, (("data", upstream.key("data")), ("finetune", upstream.key("finetune", seed=seed))))


def run(params: Params, inputs: Inputs, workdir: Path, ctx: TaskContext) -> dict:
    import torch

    from runners.methods import models
    from runners.methods.heads import head_grid, head_mask

    device = torch.device(ctx.device)
    checkpoint = inputs.finetune.last_checkpoint()
    model, tokenizer = models.load_checkpoint(checkpoint.path, params.attention)
    model.to(device).eval()
    layers, heads = head_grid(model)

    def mean_loss(encoded: models.Encoded) -> float:
        losses, _ = models.example_losses(model, encoded, params.batch_size, tokenizer.pad_token_id, device)
        return sum(losses) / len(losses)

    rows, largest = [], {}
    for done, language in enumerate(params.languages):
        examples = inputs.data.examples(SPLIT, language)[: params.max_examples]
        if not examples:
            raise ValueError(f"language {language!r} has no {SPLIT} examples to measure head effects on")
        encoded = models.encode(tokenizer, examples, params.max_length)
        loss_all = mean_loss(encoded)
        first = len(rows)
        for layer in range(layers):
            for head in range(heads):
                gates = torch.ones(layers, heads)  # (L, H)
                gates[layer, head] = 0.0
                with head_mask(model, gates):
                    loss_without = mean_loss(encoded)
                rows.append({"seed": params.seed, "language": language, "split": SPLIT, "examples": len(encoded),
                             "layer": layer, "head": head, "loss_all": loss_all, "loss_without": loss_without})
        top = max(rows[first:], key=lambda r: r["loss_without"] - r["loss_all"])  # this language's rows
        largest[language] = [top["layer"], top["head"], top["loss_without"] - top["loss_all"]]
        ctx.report(done + 1, len(params.languages), f"{language}: {layers * heads} heads, each gated off")
    write_table(workdir, "head_effects", rows)
    return {"heads": layers * heads, "rows": len(rows), "largest_increase": largest}  # language -> [layer, head, increase]
