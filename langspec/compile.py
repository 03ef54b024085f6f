"""Compile a validated spec into the task graph: pure data, checked whole before anything runs.

A task's key is the sha256 of canonical JSON over its stage, the stage's VERSION, its params and
the keys of its inputs (a Merkle chain): equal keys mean equal results, and changing one field
changes exactly the keys of the tasks that read it and of everything downstream.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pydantic import BaseModel

from langspec.load import LoadedSpec, SweepPoint
from langspec.spec import StageResources
from runners.stage import STAGES, Planned, Upstream, stage
from store.points import point_label


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


def stage_tables(name: str) -> tuple[str, ...]:
    """The tables a stage hands to the store (its TABLES); a task without them is not done."""
    return tuple(stage(name).TABLES)


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


def _point_tasks(point: SweepPoint) -> list[Task]:
    """The tasks of one sweep combination: each seed's study, stage by stage in the order of STAGES.
    Tasks shared with other seeds or combinations (the data) get equal keys."""
    upstream = Upstream()
    reads: dict[str, set[str]] = {}  # key -> the spec sections read by the task or upstream of it
    tasks = []
    for seed in point.spec.seeds:
        for name in STAGES:
            module = stage(name)
            for planned in module.tasks(point.spec, seed, upstream):
                read = set(module.READS).union(*(reads[key] for _, key in planned.inputs))
                task = _make_task(point, name, module.VERSION, planned, read)
                reads[task.key] = read
                upstream.add(name, planned.labels, task.key)
                tasks.append(task)
    return tasks


def _make_task(point: SweepPoint, stage: str, version: int, planned: Planned, sections: set[str]) -> Task:
    """A planned task with its key, its name (a swept field appears if the task or its upstream reads
    its section) and its resources."""
    swept = {path: value for path, value in point.assignments.items() if path.split(".")[0] in sections}
    parts = point_label({**planned.labels, **swept})
    name = f"{stage}[{parts}]" if parts else stage
    resources = point.spec.resources.for_stage(stage)
    key = task_key(stage, version, planned.params, planned.inputs)
    return Task(name, stage, planned.params, planned.inputs, resources, key)
