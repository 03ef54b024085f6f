"""Leave-one-language-out retraining (beyond the paper): the ground truth that TracIn's shares are
checked against. One task per (seed, language s) fine-tunes from the same initialisation as full
fine-tuning, with the same hyperparameters and order rules, on every language but s (mode
`without`) or on s alone (mode `only`, the monolingual control), and scores every test example
with the ablated model and with the seed's fully fine-tuned one.

The loop is `runners.methods.fine_tuning.fine_tune` with `train_languages`; its metrics and checkpoints carry
variant `without` or `only`. The measured effect E[t, s] = loss of t's test examples without s -
their loss with every language is the store's `ablation_effects` view over `ablation_examples`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from runners.context import TaskContext
from runners.inputs import Inputs, Trained
from runners.methods.fine_tuning import fine_tune
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.stage import Planned, Section, StageParams, Upstream
from runners.tables import write_table

VERSION = 1
READS = ("data", "model", "finetune", "ablation")
RESUMABLE = True  # it is a fine-tuning: it continues from its last finished epoch
MEMORY_FIELDS = ("finetune.batch_size", "finetune.max_length", "finetune.eval_batch_size")  # what to lower when the task runs out of memory
TABLES = ("metrics", "checkpoints", "ablation_examples")
SPLIT = "test"  # the split the measured effect is taken on: the one TracIn's test examples come from


class AblationSpec(Section):
    enabled: bool = Field(
        False, description="Fine-tune once more per seed and language s, without s (or on s alone), and measure the effect on every language's test loss."
    )
    mode: Literal["without", "only"] = Field(
        "without", description="without: train on every language but s (the ground truth for TracIn); only: train on s alone (the monolingual control)."
    )
    languages: list[str] | None = Field(
        None, min_length=1, description="The languages s to ablate, each one extra fine-tuning per seed (None: every language of data.languages)."
    )


SECTIONS = {
    "ablation": (
        AblationSpec,
        Field(default_factory=AblationSpec, description="Leave-one-language-out (or one-language-only) fine-tuning."),
    )
}


class Params(StageParams):
    seed: int
    mode: Literal["without", "only"]
    language: str  # s: left out (without) or trained alone (only)
    train_languages: tuple[str, ...]
    model: ModelSpec
    finetune: FinetuneSpec


def check(spec) -> None:
    ablation = spec.ablation
    if not ablation.enabled:
        return
    unknown = sorted(set(ablation.languages or ()) - set(spec.data.languages))
    if unknown:
        raise ValueError(f"ablation.languages {unknown} are not in data.languages {spec.data.languages}; list only studied languages")
    if ablation.mode == "without" and len(spec.data.languages) < 2:
        raise ValueError("ablation mode `without` needs at least two data.languages (without the only one nothing is left to train on)")


def tasks(spec, seed: int, upstream: Upstream) -> Iterator[Planned]:
    """One task per ablated language; the seed's full fine-tuning is its reference for the effect."""
    ablation = spec.ablation
    if not ablation.enabled:
        return
    inputs = (("data", upstream.key("data")), ("finetune", upstream.key("finetune", seed=seed)))
    for language in ablation.languages or spec.data.languages:
        kept = (language,) if ablation.mode == "only" else tuple(lang for lang in spec.data.languages if lang != language)
        params = Params(seed=seed, mode=ablation.mode, language=language, train_languages=kept, model=spec.model, finetune=spec.finetune)
        yield Planned({"seed": seed, ablation.mode: language}, params, inputs)


def run(params: Params, inputs: Inputs, workdir: Path, ctx: TaskContext) -> dict:
    import torch

    from runners.methods import models

    summary = fine_tune(
        inputs.data, workdir, ctx, seed=params.seed, model_spec=params.model, config=params.finetune,
        train_languages=params.train_languages, variant=params.mode,
    )
    # Every test example scored by the ablated model and by the fully fine-tuned one, with the same code.
    device = torch.device(ctx.device)
    rows = inputs.data.examples(SPLIT)
    scored = {}
    for name, trained in (("ablated", Trained(workdir)), ("full", inputs.finetune)):
        model, tokenizer = models.load_checkpoint(trained.last_checkpoint().path, params.model.attention)
        encoded = models.encode(tokenizer, rows, params.finetune.max_length)
        scored[name] = models.example_losses(model.to(device), encoded, params.finetune.eval_batch_size, tokenizer.pad_token_id, device)
    (loss, correct), (full_loss, full_correct) = scored["ablated"], scored["full"]
    write_table(workdir, "ablation_examples", [
        {"seed": params.seed, "mode": params.mode, "ablated": params.language, "example_id": r["example_id"],
         "language": r["language"], "split": SPLIT, "loss": loss[i], "correct": correct[i],
         "full_loss": full_loss[i], "full_correct": full_correct[i]}
        for i, r in enumerate(rows)
    ])
    effect = {}
    for language in sorted({r["language"] for r in rows}):
        own = [i for i, r in enumerate(rows) if r["language"] == language]
        effect[language] = sum(loss[i] - full_loss[i] for i in own) / len(own)
    return {**summary, "mode": params.mode, "ablated": params.language, "loss_effect": effect}
