"""The Stage contract: what a module of runners/ defines to be a stage of the study, the registry
of stages, and the small types the compiler and the stages share.

A stage is one module, `runners/<stage>.py`, listed once in STAGES below. It defines:

    SECTIONS       {name: (model, Field(...))}: the spec sections it owns, each a `Section`;
                   langspec.spec assembles them into the Spec in the order of STAGES.
    READS          the spec sections its params read, its own included. A swept field of one of
                   them, or of a section read upstream of it, appears in the name of its tasks.
    VERSION        part of every task key: bump it when the stage's results change for equal params.
    RESUMABLE      True if an attempt that died leaves its working directory for the next attempt
                   to continue from (context.RESUME_FILE); False: the executor starts afresh.
    MEMORY_FIELDS  the spec fields (dotted paths) to lower when one of its tasks runs out of memory.
    TABLES         the tables it writes under tables/ for the store to ingest.
    Params         a StageParams model of everything that affects its results; its JSON is hashed
                   into the task key, so a field added to it changes every key of the stage.
    check(spec)    its rules across sections (e.g. "sparse_finetune needs prune"); raises ValueError
                   saying how to fix the spec. Runs when the spec is validated.
    tasks(spec, seed, upstream) -> Iterable[Planned]
                   its tasks for one seed, with their inputs taken from the tasks of earlier stages
                   (`upstream`); the defaults it takes from other sections are applied here.
    run(params, inputs, workdir, ctx) -> dict
                   does the work into `workdir` and returns a small JSON summary; it reads what its
                   upstream tasks wrote through `inputs` (runners.inputs.Inputs: typed handles by
                   role, e.g. inputs.data.examples(), inputs.finetune.checkpoints()).

The compiler (langspec.compile) loops over the seeds and, for each, over STAGES in order; it gives
each planned task its key (stage, VERSION, params, input keys), name and resources.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

from runners.context import TaskContext

if TYPE_CHECKING:  # runners.inputs loads pyarrow, which compiling a spec does not need
    from runners.inputs import Inputs

# The stages in the order a seed's study plans them; a new stage is its module and a name here.
STAGES = ("data", "finetune", "ablation", "prune", "mask_transfer", "head_effects", "sparse_finetune", "tracin")


# Upper bounds of the spec's counts and sizes: far above any real study (specs/base/paper.yaml takes
# 20,000 of XNLI's 392,702 training examples per language), and low enough that a typo or a hostile
# spec is refused with its file:line before it plans work, allocates memory or overflows a seed.
MAX_EXAMPLES = 10_000_000  # per language and split
MAX_EPOCHS = 1_000
MAX_BATCH_SIZE = 65_536
MAX_SEED = 2**31 - 1  # fits every RNG; an epoch's shuffle seeds torch with seed * 1_000_003 + epoch, below 2**63


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors, values are immutable, and every number
    is finite (.inf and .nan are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StageParams(BaseModel):
    """Base of every stage's Params: everything that affects its results, whose JSON is hashed into
    its task key; unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Planned:
    """A task as its stage plans it; the compiler adds its key, name and resources."""

    labels: dict[str, object]  # what its name has in brackets: {"seed": 0, "language": "ka"}
    params: BaseModel
    inputs: tuple[tuple[str, str], ...]  # (role, upstream key), e.g. ("data", "3f2a...")


@dataclass
class Upstream:
    """The tasks planned so far for one sweep point: where a stage finds the keys of its inputs."""

    planned: dict[str, list[tuple[dict[str, object], str]]] = field(default_factory=dict)  # stage -> (labels, key)

    def add(self, stage: str, labels: dict[str, object], key: str) -> None:
        self.planned.setdefault(stage, []).append((labels, key))

    def keys(self, stage: str, **labels: object) -> list[tuple[dict[str, object], str]]:
        """(labels, key) of the stage's tasks whose labels include these, in planning order."""
        return [(own, key) for own, key in self.planned.get(stage, []) if labels.items() <= own.items()]

    def key(self, stage: str, **labels: object) -> str:
        """The key of the one task of `stage` with these labels."""
        found = self.keys(stage, **labels)
        if len(found) != 1:
            raise LookupError(f"{len(found)} {stage} tasks with labels {labels} planned before this stage; expected one")
        return found[0][1]


class Stage(Protocol):
    """The contract above, as a type: a stage module satisfies it."""

    SECTIONS: dict[str, tuple[type[Section], FieldInfo]]
    READS: tuple[str, ...]
    VERSION: int
    RESUMABLE: bool
    MEMORY_FIELDS: tuple[str, ...]
    TABLES: tuple[str, ...]
    Params: type[BaseModel]

    def check(self, spec: Any) -> None: ...

    def tasks(self, spec: Any, seed: int, upstream: Upstream) -> Iterable[Planned]: ...

    def run(self, params: Any, inputs: Inputs, workdir: Path, ctx: TaskContext) -> dict: ...


def listed_twice(items: list[str]) -> list[str]:
    """The items a spec's list names more than once, sorted: what a list of languages or of names must not have."""
    return sorted({item for item in items if items.count(item) > 1})


def stage(name: str) -> Stage:
    """The module of a stage in STAGES."""
    if name not in STAGES:
        raise KeyError(f"no stage {name!r}; the stages are {', '.join(STAGES)}")
    return importlib.import_module(f"runners.{name}")  # type: ignore[return-value]  # a module satisfies Stage
