"""Sparse fine-tuning (stage 3): fine-tune again from the same initialisation as full fine-tuning,
with language-pure batches, each updating only its language's subnetwork and the shared parameters.

The loop is `runners.finetune.fine_tune` with masks; the confinement of each step to the batch
language's heads is `runners.heads.only_heads`. Metrics and checkpoints have variant `sft`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from langspec.spec import FinetuneSpec, ModelSpec
from runners.context import TaskContext
from runners.finetune import fine_tune
from runners.prune import mask_role, read_mask

VERSION = 1
TABLES = ("metrics", "checkpoints")  # what a task of this stage hands to the store; a task without them is not done
MEMORY_FIELDS = ("sparse_finetune.batch_size", "finetune.max_length", "finetune.eval_batch_size")  # what to lower when the task runs out of memory
RESUMABLE = True  # like fine-tuning, it continues from its last finished epoch


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int
    languages: tuple[str, ...]
    model: ModelSpec
    finetune: FinetuneSpec  # with sparse_finetune's epochs, lr and batch_size applied
    language_sampling: Literal["proportional", "round_robin"]


def run(params: Params, inputs: dict[str, Path], workdir: Path, ctx: TaskContext) -> dict:
    masks = {language: read_mask(inputs[mask_role(language)]) for language in params.languages}
    summary = fine_tune(
        inputs["data"], workdir, ctx, seed=params.seed, model_spec=params.model, config=params.finetune,
        masks=masks, language_sampling=params.language_sampling,
    )
    return {**summary, "heads_kept": {language: int(mask.sum()) for language, mask in masks.items()}}
