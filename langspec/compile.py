"""Compile a validated spec into the task graph: pure data, checked whole before anything runs.

A task's key is the sha256 of canonical JSON over its stage, the stage's VERSION, its params and
the keys of its inputs (a Merkle chain): equal keys mean equal results, and changing one field
changes exactly the keys of the tasks that read it and of everything downstream.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from types import ModuleType

from pydantic import BaseModel

from langspec.load import LoadedSpec, SweepPoint
from langspec.spec import StageResources

# The spec sections each stage reads, itself included; a swept field appears in a task's name
# only if its section is read by the task or by something upstream of it.
SECTIONS = {
    "data": {"data"},
    "finetune": {"model", "finetune"},
    "prune": {"prune"},
    "sparse_finetune": {"sparse_finetune"},
    "tracin": {"tracin"},
}


@dataclass(frozen=True)
class Task:
    name: str  # "finetune[seed=0]"
    stage: str
    params: BaseModel
    inputs: tuple[tuple[str, str], ...]  # (role, upstream key), e.g. ("data", "3f2a...")
    resources: StageResources
    key: str

    @property
    def short_key(self) -> str:
        return self.key[:12]


@dataclass(frozen=True)
class TaskGraph:
    tasks: tuple[Task, ...]  # in topological order
    # Each sweep point's label and the keys of its tasks (a task shared by points is under each);
    # one point labelled "" when the spec has no sweep.
    points: tuple[tuple[str, tuple[str, ...]], ...]

    def __getitem__(self, key: str) -> Task:
        return self._by_key[key]

    @property
    def _by_key(self) -> dict[str, Task]:
        return {task.key: task for task in self.tasks}

    def dependents(self, key: str) -> list[Task]:
        return [task for task in self.tasks if any(upstream == key for _, upstream in task.inputs)]


def stage_module(stage: str) -> ModuleType:
    return importlib.import_module(f"runners.{stage}")


def stage_tables(stage: str) -> tuple[str, ...]:
    """The tables a stage hands to the store (its module's TABLES); a task without them is not done."""
    return tuple(stage_module(stage).TABLES)


def task_key(stage: str, version: int, params: BaseModel, inputs: tuple[tuple[str, str], ...]) -> str:
    canonical = json.dumps(
        {"stage": stage, "version": version, "params": params.model_dump(mode="json"), "inputs": sorted(inputs)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def compile_spec(loaded: LoadedSpec) -> TaskGraph:
    tasks: dict[str, Task] = {}
    points = []
    for point in loaded.points:
        point_tasks = _point_tasks(point)
        for task in point_tasks:
            tasks.setdefault(task.key, task)
        points.append((point_label(point.assignments), tuple(task.key for task in point_tasks)))
    return TaskGraph(tuple(tasks.values()), tuple(points))


def point_label(assignments: dict[str, object]) -> str:
    """path=value pairs joined by commas: a sweep point's name ("prune.threshold=0.9,finetune.epochs=3";
    "" for no sweep) and what a task name has in brackets ("seed=0,language=ka")."""
    return ",".join(f"{path}={value}" for path, value in assignments.items())


def _point_tasks(point: SweepPoint) -> list[Task]:
    """The tasks of one sweep combination. Tasks shared with other combinations get equal keys."""
    spec = point.spec
    data_module = stage_module("data")
    fingerprint = data_module.fingerprint(spec.data)
    data_task = _make_task(point, "data", {}, data_module.Params(data=spec.data, fingerprint=fingerprint), (), SECTIONS["data"])
    tasks = [data_task]
    for seed in spec.seeds:
        params = stage_module("finetune").Params(seed=seed, model=spec.model, finetune=spec.finetune)
        sections = SECTIONS["data"] | SECTIONS["finetune"]
        finetune = _make_task(point, "finetune", {"seed": seed}, params, (("data", data_task.key),), sections)
        tasks.append(finetune)
        upstream = (("data", data_task.key), ("finetune", finetune.key))
        prune = {}
        if spec.prune.enabled:
            for language in spec.data.languages:
                params = stage_module("prune").Params(
                    seed=seed, language=language, prune=spec.prune,
                    attention=spec.model.attention, max_length=spec.finetune.max_length,
                )
                labels = {"seed": seed, "language": language}
                prune[language] = _make_task(point, "prune", labels, params, upstream, sections | SECTIONS["prune"])
            tasks += prune.values()
        masks = tuple((stage_module("prune").mask_role(lang), task.key) for lang, task in prune.items())
        sparse = None
        if spec.sparse_finetune.enabled:
            sft = spec.sparse_finetune
            overrides = {"epochs": sft.epochs, "lr": sft.lr, "batch_size": sft.batch_size}
            params = stage_module("sparse_finetune").Params(
                seed=seed, languages=tuple(spec.data.languages), model=spec.model,
                finetune=spec.finetune.model_copy(update={k: v for k, v in overrides.items() if v is not None}),
                language_sampling=sft.language_sampling,
            )
            read = sections | SECTIONS["prune"] | SECTIONS["sparse_finetune"]
            sparse = _make_task(point, "sparse_finetune", {"seed": seed}, params, (("data", data_task.key),) + masks, read)
            tasks.append(sparse)
        if spec.tracin.enabled:
            for variant in spec.tracin.variants:
                params = stage_module("tracin").Params(  # the other variants are not this task's business
                    seed=seed, variant=variant, languages=tuple(spec.data.languages),
                    tracin=spec.tracin.model_copy(update={"variants": [variant]}),
                    attention=spec.model.attention, max_length=spec.finetune.max_length,
                )
                inputs, read = upstream, sections | SECTIONS["tracin"]
                if variant == "subnetwork":
                    inputs, read = upstream + masks, read | SECTIONS["prune"]
                elif variant == "sft":
                    inputs = (("data", data_task.key), ("sft", sparse.key)) + masks
                    read = read | SECTIONS["prune"] | SECTIONS["sparse_finetune"]
                tasks.append(_make_task(point, "tracin", {"seed": seed, "variant": variant}, params, inputs, read))
    return tasks


def _make_task(
    point: SweepPoint,
    stage: str,
    labels: dict[str, object],
    params: BaseModel,
    inputs: tuple[tuple[str, str], ...],
    sections: set[str],
) -> Task:
    swept = {path: value for path, value in point.assignments.items() if path.split(".")[0] in sections}
    parts = point_label({**labels, **swept})
    name = f"{stage}[{parts}]" if parts else stage
    version = stage_module(stage).VERSION
    resources = point.spec.resources.for_stage(stage)
    return Task(name, stage, params, inputs, resources, task_key(stage, version, params, inputs))
