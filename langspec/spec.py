"""The experiment spec: the sections of the stages (each defined in its runners/<stage>.py, the
single home of its defaults) assembled into one model, with the study-wide sections defined here.

Only pydantic and the light stage modules are imported here, so `langspec validate` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from runners.data import DataSpec
from runners.finetune import FinetuneSpec, ModelSpec
from runners.prune import PruneSpec
from runners.sparse_finetune import SparseFinetuneSpec
from runners.stage import Section
from runners.tracin import TracinSpec

# --- study-wide sections ----------------------------------------------------------------------


class AnalysisSpec(Section):
    top_k: int = Field(50, ge=1, description="Proponents and opponents per test example.")


class StageResources(Section):
    num_cpus: float = Field(1, gt=0, description="CPU cores per task (also torch's thread count).")
    num_gpus: float = Field(0, ge=0, description="GPUs per task.")
    max_retries: int = Field(1, ge=0, description="Retries after a worker crash (not after an error in the task).")


class ResourcesSpec(Section):
    default: StageResources = Field(default_factory=StageResources, description="Resources of every stage.")
    finetune: StageResources | None = Field(None, description="Overrides for finetune tasks.")
    prune: StageResources | None = Field(None, description="Overrides for prune tasks.")
    sparse_finetune: StageResources | None = Field(None, description="Overrides for sparse fine-tuning tasks.")
    tracin: StageResources | None = Field(None, description="Overrides for TracIn tasks.")

    def for_stage(self, stage: str) -> StageResources:
        return getattr(self, stage, None) or self.default


# --- the whole spec ---------------------------------------------------------------------------

SweepValues = Annotated[list[Any], Field(min_length=1)]


class Spec(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name of the study, used in run records.")
    data: DataSpec = Field(default_factory=DataSpec, description="Where the examples come from.")
    model: ModelSpec = Field(description="The model to fine-tune.")
    seeds: list[int] = Field(default=[0], min_length=1, description="Training seeds; each gets its own study.")
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec, description="Full fine-tuning.")
    prune: PruneSpec = Field(default_factory=PruneSpec, description="Language subnetworks by head pruning.")
    sparse_finetune: SparseFinetuneSpec = Field(
        default_factory=SparseFinetuneSpec, description="Sparse fine-tuning within each language's subnetwork."
    )
    tracin: TracinSpec = Field(default_factory=TracinSpec, description="TracIn influence scores.")
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="Analysis settings.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Resources per stage.")
    sweep: dict[str, SweepValues] = Field(
        default_factory=dict,
        description="Dotted field paths mapped to lists of values, e.g. {prune.threshold: [0.9, 0.95]}; "
        "every combination becomes its own set of tasks.",
    )

    @field_validator("seeds")
    @classmethod
    def check_seeds_unique(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds are listed twice; list each seed once")
        return seeds

    @model_validator(mode="after")
    def check_stage_dependencies(self) -> Spec:
        if self.sparse_finetune.enabled and not self.prune.enabled:
            raise ValueError("sparse_finetune needs the subnetworks: enable prune or disable sparse_finetune")
        needs_masks = {"subnetwork", "sft"} & set(self.tracin.variants)
        if self.tracin.enabled and needs_masks and not self.prune.enabled:
            raise ValueError(f"tracin variants {sorted(needs_masks)} need prune enabled")
        if self.tracin.enabled and "sft" in self.tracin.variants and not self.sparse_finetune.enabled:
            raise ValueError("tracin variant sft needs sparse_finetune enabled")
        scored = min(self.tracin.train_per_language, self.data.train_per_language) * len(self.data.languages)
        if self.tracin.enabled and self.analysis.top_k >= scored:
            raise ValueError(
                f"analysis.top_k ({self.analysis.top_k}) must be smaller than the {scored} training examples TracIn "
                "scores, or every one of them is a proponent; lower analysis.top_k or raise tracin.train_per_language"
            )
        return self


def json_schema() -> dict:
    """The JSON Schema of a spec file, for editors: the Spec model plus `extends:` (a spec that
    extends a base may leave the base's required fields out)."""
    schema = Spec.model_json_schema()
    schema["properties"] = {
        "extends": {"type": "string", "title": "Extends",
                    "description": "Path of a base YAML file (relative to this one) whose fields this spec starts from."},
        **schema["properties"],
    }
    schema["anyOf"] = [{"required": ["extends"]}, {"required": schema.pop("required")}]
    return schema
