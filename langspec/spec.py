"""The experiment spec: the sections of the stages, each defined by its stage in runners/<stage>.py
(the single home of its defaults and of its rules across sections), assembled into one model with
the study-wide fields and sections defined here.

Only pydantic and the light stage modules are imported here, so `langspec validate` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, create_model, field_validator, model_validator

from runners.stage import MAX_SEED, STAGES, Section, listed_twice, stage

# --- study-wide sections ----------------------------------------------------------------------


class AnalysisSpec(Section):
    top_k: int = Field(50, ge=1, le=100_000, description="Proponents and opponents per test example.")
    primary_point: dict[str, Any] | None = Field(
        None, description="The sweep point whose verdicts answer the study, named before the results are seen, e.g. "
        "{prune.threshold: 0.95}; a swept field it leaves out takes its first value. Verdicts at every other point are "
        "labelled exploratory (no adjustment over points is made). Default: the first value of every swept field.")


class StageResources(Section):
    num_cpus: float = Field(1, gt=0, le=1024, description="CPU cores per task (also torch's thread count).")
    num_gpus: float = Field(
        0, ge=0, le=1, description="GPUs per task: 0, 1, or a fraction (0.5: two tasks share one GPU). A task runs on one "
        "GPU (its cuda:0), so more than 1 would hold GPUs it never uses.")
    # 3, Ray's own default for tasks: on a cluster a node may be pre-empted or lost more than once in a
    # long study, and a retry after a lost worker costs at most the task (fine-tuning resumes its epochs,
    # TracIn its checkpoints).
    max_retries: int = Field(
        3, ge=0, le=100, description="Ray's retries of a task whose worker or node died (not after an error in the "
        "task, which is recorded and never retried); Ray retries it on any node with room.")


class _Resources(Section):
    default: StageResources = Field(default_factory=StageResources, description="Resources of every stage.")
    queued_report_s: float = Field(
        60, gt=0, le=86_400, description="A task still waiting for a node with room after this many seconds, while none of "
        "the run's tasks is running, is reported with what it asks for and what the cluster has free (a run never "
        "waits silently).",
    )
    env_vars: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list, max_length=100,
        description="Names of environment variables the driver passes to every task on a cluster (through Ray's "
        "runtime_env; a Ray on this machine inherits the driver's environment) beside those it always passes when "
        "they are set (HF_HUB_OFFLINE, HF_HOME, HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE, LANGSPEC_CACHE); one "
        "not set on the driver is left as each node has it. Each task's "
        "manifest records their values, except names that look secret (token, secret, password, key): those are "
        "passed but never recorded.",
    )

    @field_validator("env_vars")
    @classmethod
    def check_env_vars_unique(cls, names: list[str]) -> list[str]:
        repeated = listed_twice(names)
        if repeated:
            raise ValueError(f"environment variables listed twice: {', '.join(repeated)}; list each once")
        return names

    def for_stage(self, stage: str) -> StageResources:
        return getattr(self, stage, None) or self.default


# The default resources and one optional override per stage.
ResourcesSpec = create_model(
    "ResourcesSpec", __base__=_Resources, __module__=__name__,
    **{name: (StageResources | None, Field(None, description=f"Overrides for {name} tasks.")) for name in STAGES},
)


# --- the whole spec ---------------------------------------------------------------------------

SweepValues = Annotated[list[Any], Field(min_length=1)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class _Study(Section):
    """The fields of the spec that no stage owns, and the rules across sections."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name of the study, used in run records.")
    seeds: list[Seed] = Field(
        default=[0], min_length=1, description=f"Training seeds, each from 0 to {MAX_SEED}; each gets its own study."
    )

    @field_validator("seeds")
    @classmethod
    def check_seeds_unique(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds are listed twice; list each seed once")
        return seeds

    @model_validator(mode="after")
    def check_stage_rules(self) -> _Study:
        for name in STAGES:
            stage(name).check(self)
        return self


# name and seeds, the sections of the stages in the order of STAGES, then the study-wide sections.
Spec = create_model(
    "Spec", __base__=_Study, __module__=__name__,
    **{section: definition for name in STAGES for section, definition in stage(name).SECTIONS.items()},
    analysis=(AnalysisSpec, Field(default_factory=AnalysisSpec, description="Analysis settings.")),
    resources=(ResourcesSpec, Field(default_factory=ResourcesSpec, description="Resources per stage.")),
    sweep=(dict[str, SweepValues], Field(
        default_factory=dict,
        description="Dotted field paths mapped to lists of values, e.g. {prune.threshold: [0.9, 0.95]}; "
        "every combination becomes its own set of tasks.",
    )),
)


def json_schema() -> dict:
    """The JSON Schema of a spec file, for editors and check-jsonschema: the Spec model plus
    `extends:`. A file with `name:` and no `extends:` is a whole spec and needs every required
    field; a spec that extends a base, and a base file (no `name:`, e.g. specs/base/paper.yaml),
    may leave them out. The schema checks each file's own keys; `langspec validate` checks the merge."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **Spec.model_json_schema()}
    schema["properties"] = {
        "extends": {"type": "string", "title": "Extends",
                    "description": "Path of a base YAML file (relative to this one) whose fields this spec starts from."},
        **schema["properties"],
    }
    schema["if"] = {"required": ["name"], "not": {"required": ["extends"]}}
    schema["then"] = {"required": schema.pop("required")}
    return schema
