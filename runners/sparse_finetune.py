"""Sparse fine-tuning (stage 3): fine-tune again from the same initialisation as full fine-tuning,
with language-pure batches, each updating only its language's subnetwork and the shared parameters.

The loop is `runners.methods.fine_tuning.fine_tune` with masks; the confinement of each step to the batch
language's heads is `runners.methods.heads.only_heads`. Metrics and checkpoints have variant `sft`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from runners.context import TaskContext
from runners.inputs import Inputs, mask_inputs
from runners.methods.fine_tuning import fine_tune
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.stage import MAX_BATCH_SIZE, MAX_EPOCHS, Planned, Section, StageParams, Upstream

VERSION = 1
READS = ("data", "model", "finetune", "sparse_finetune")
RESUMABLE = True  # like fine-tuning, it continues from its last finished epoch
MEMORY_FIELDS = ("sparse_finetune.batch_size", "finetune.max_length", "finetune.eval_batch_size")  # what to lower when the task runs out of memory
TABLES = ("metrics", "checkpoints")


class SparseFinetuneSpec(Section):
    enabled: bool = Field(True, description="Fine-tune again, each language updating only its own subnetwork.")
    language_sampling: Literal["proportional", "round_robin"] = Field(
        "proportional", description="Order of the language-pure batches."
    )
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="Epochs (None: finetune.epochs).")
    lr: float | None = Field(None, gt=0.0, description="Peak learning rate (None: finetune.lr).")
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH_SIZE, description="Batch size (None: finetune.batch_size).")


SECTIONS = {
    "sparse_finetune": (
        SparseFinetuneSpec,
        Field(default_factory=SparseFinetuneSpec, description="Sparse fine-tuning within each language's subnetwork."),
    )
}


class Params(StageParams):
    seed: int
    languages: tuple[str, ...]
    model: ModelSpec
    finetune: FinetuneSpec  # with sparse_finetune's epochs, lr and batch_size applied
    language_sampling: Literal["proportional", "round_robin"]


def check(spec) -> None:
    if spec.sparse_finetune.enabled and not spec.prune.enabled:
        raise ValueError("sparse_finetune needs the subnetworks: enable prune or disable sparse_finetune")


def tasks(spec, seed: int, upstream: Upstream) -> Iterator[Planned]:
    """One task per seed. Its epochs, lr and batch_size default to fine-tuning's: the same run,
    each language confined to its subnetwork."""
    sparse = spec.sparse_finetune
    if not sparse.enabled:
        return
    overrides = {"epochs": sparse.epochs, "lr": sparse.lr, "batch_size": sparse.batch_size}
    params = Params(
        seed=seed, languages=tuple(spec.data.languages), model=spec.model,
        finetune=spec.finetune.model_copy(update={k: v for k, v in overrides.items() if v is not None}),
        language_sampling=sparse.language_sampling,
    )
    yield Planned({"seed": seed}, params, (("data", upstream.key("data")),) + mask_inputs(upstream, seed))


def run(params: Params, inputs: Inputs, workdir: Path, ctx: TaskContext) -> dict:
    masks = inputs.masks(params.languages)
    summary = fine_tune(
        inputs.data, workdir, ctx, seed=params.seed, model_spec=params.model, config=params.finetune,
        masks=masks, language_sampling=params.language_sampling,
    )
    return {**summary, "heads_kept": {language: int(mask.sum()) for language, mask in masks.items()}}
