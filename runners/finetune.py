"""Full fine-tuning (stage 1): all languages mixed, a checkpoint and an evaluation after every epoch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field, model_serializer

from runners.context import TaskContext
from runners.inputs import Inputs
from runners.methods.fine_tuning import fine_tune
from runners.methods.sections import FinetuneSpec, ModelSpec, PlantedSpec
from runners.stage import Planned, StageParams, Upstream

VERSION = 2  # 2: the full model's predicted-label counts (metric predicted_label_<i>) next to accuracy
READS = ("model", "finetune", "planted")
RESUMABLE = True  # a fine-tuning that dies continues from its last finished epoch
MEMORY_FIELDS = ("finetune.batch_size", "finetune.max_length", "finetune.eval_batch_size")  # what to lower when the task runs out of memory
TABLES = ("metrics", "checkpoints")  # and planted_heads, with planted: a table TABLES cannot require


SECTIONS = {
    "model": (ModelSpec, Field(description="The model to fine-tune.")),
    "finetune": (FinetuneSpec, Field(default_factory=FinetuneSpec, description="Full fine-tuning.")),
    "planted": (PlantedSpec | None, Field(
        None,
        description="A known answer: fine-tune with planted language modules. Each language family (toy data: ka/kb, "
        "la/lb, na/nb, mi; other sources: each language alone) gets a planted set of heads: its examples run and are "
        "trained through that set and the shared parameters, with the other heads cut off (or, with leak, weakened), "
        "and teach those heads to stay silent on them (silence). The model is then evaluated, pruned and "
        "scored with all its heads, like any other; the planted sets are stored (planted_heads) for the analyses "
        "to compare with the pruned ones. None: ordinary fine-tuning.",
    )),
}


class Params(StageParams):
    seed: int
    model: ModelSpec
    finetune: FinetuneSpec
    planted: PlantedSpec | None = None
    families: dict[str, str] | None = None  # language -> family, with planted

    @model_serializer(mode="wrap")
    def _leave_out_unplanted(self, handler):
        """Ordinary fine-tuning keeps the task key it had before `planted` existed."""
        data = handler(self)
        if self.planted is None:
            data.pop("planted", None)
            data.pop("families", None)
        return data


def check(spec) -> None:
    if spec.planted is not None and spec.ablation.enabled:
        raise ValueError("planted and ablation cannot run together: the ablation's models would be fine-tuned without "
                         "the planted modules; disable ablation or remove planted")


def families(data) -> dict[str, str]:
    """language -> family: the toy languages' families, else each language its own."""
    from runners.methods.toy import FAMILIES

    return {lang: FAMILIES[lang] if data.source == "toy" else lang for lang in data.languages}


def tasks(spec, seed: int, upstream: Upstream) -> Iterator[Planned]:
    planted = {"planted": spec.planted, "families": families(spec.data)} if spec.planted is not None else {}
    params = Params(seed=seed, model=spec.model, finetune=spec.finetune, **planted)
    yield Planned({"seed": seed}, params, (("data", upstream.key("data")),))


def run(params: Params, inputs: Inputs, workdir: Path, ctx: TaskContext) -> dict:
    return fine_tune(inputs.data, workdir, ctx, seed=params.seed, model_spec=params.model, config=params.finetune,
                     planted=params.planted, families=params.families)
