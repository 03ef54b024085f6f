"""Checks before a run starts, so that it fails in a second with what to do rather than in a task
minutes later, and what every task takes from the driver: its input paths made absolute and its
Hugging Face settings.

On the driver (check_hub_access): models and datasets named by a hub id must be reachable or already
cached. A pending data task with `source: hub` and a dataset id (not a directory), and a pending
training task with `model.pretrained` an id (not a directory), need the hub. An id counts as present
when the Hugging Face cache holds it; otherwise the hub must be reachable (HF_HUB_OFFLINE unset and
the endpoint answering within a few seconds).

On every node of a cluster (check_node, run there by RayBackend.on_every_node): the node sees each
input path and hub id, runs the driver's langspec and stage versions, and reaches the store.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel

from langspec.compile import Task
from langspec.errors import PlanError
from runners.data import DataSpec
from runners.methods.sections import ModelSpec
from runners.stage import STAGES, stage

TIMEOUT_S = 3.0

# The driver's settings that every task gets, where they are set: without them a worker on another
# node looks for the hub (and fails offline) or for the model in a cache of its own.
ENV_ALWAYS = ("HF_HUB_OFFLINE", "HF_HOME", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "LANGSPEC_CACHE")


def check_hub_access(pending: list[Task]) -> None:
    needed = sorted(set(_hub_ids(pending)))
    missing = [(kind, name) for kind, name in needed if not _cached(kind, name)]
    if not missing:
        return
    problem = _hub_problem()
    if problem is None:
        return
    listed = ", ".join(f"{kind} {name!r}" for kind, name in missing)
    raise PlanError(
        f"{listed} must come from the Hugging Face hub, but {problem}. Where there is internet, save them "
        "(datasets.load_dataset(ID, LANG).save_to_disk(DIR/LANG) per language; AutoModel and AutoTokenizer "
        ".from_pretrained(ID).save_pretrained(DIR)), copy the directories here and set data.dataset: DIR and "
        "model.pretrained: DIR; or use source: files"
    )


def _hub_ids(tasks: list[Task]):
    for task in tasks:
        params = task.params
        if task.stage == "data" and params.data.source == "hub" and not Path(params.data.dataset).is_dir():
            yield "dataset", params.data.dataset
        model = getattr(params, "model", None)
        if model is not None and model.pretrained and not Path(model.pretrained).is_dir():
            yield "model", model.pretrained


def _cached(kind: str, name: str) -> bool:
    if kind == "model":
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    import datasets

    return (Path(datasets.config.HF_DATASETS_CACHE) / name.replace("/", "___")).is_dir()


def _hub_problem() -> str | None:
    """Why the hub cannot be used from here, or None if it can."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and they are not in the local cache"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", constants.ENDPOINT))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=TIMEOUT_S).close()
    except OSError as error:
        return f"the hub cannot be reached from this machine ({host}:{port}: {error})"
    return None


# --- what every task takes from the driver ----------------------------------------------------


def task_env(names: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The driver's values of ENV_ALWAYS and of `names` (the spec's resources.env_vars), those set here:
    what Ray's runtime_env gives every task. One not set here is left as each node has it."""
    return {name: os.environ[name] for name in dict.fromkeys([*ENV_ALWAYS, *names]) if name in os.environ}


def for_execution(params: BaseModel, cwd: Path | None = None) -> BaseModel:
    """`params` with their input paths absolute, as a worker on any node needs them: `data.path`, and
    `data.dataset` and `model.pretrained` where they name a directory here (else they are hub ids).
    Relative paths are the driver's: against its working directory `cwd`. The task key is not made
    from these (data keys hash the content; see runners.data.fingerprint)."""
    cwd = Path.cwd() if cwd is None else cwd
    updates = {}
    for name in type(params).model_fields:
        value = getattr(params, name)
        if isinstance(value, DataSpec):
            updates[name] = _absolute_data(value, cwd)
        elif isinstance(value, ModelSpec) and value.pretrained and (cwd / value.pretrained).is_dir():
            updates[name] = value.model_copy(update={"pretrained": os.path.abspath(cwd / value.pretrained)})
    return params.model_copy(update=updates) if updates else params


def _absolute_data(data: DataSpec, cwd: Path) -> DataSpec:
    if data.source == "files" and data.path:
        return data.model_copy(update={"path": os.path.abspath(cwd / data.path)})  # abspath keeps links: /shared stays /shared
    if data.source == "hub" and data.dataset and (cwd / data.dataset).is_dir():
        return data.model_copy(update={"dataset": os.path.abspath(cwd / data.dataset)})
    return data


def input_paths(params: BaseModel) -> list[tuple[str, str]]:
    """(spec field, absolute path) of each input path of params made for_execution."""
    found = []
    for name in type(params).model_fields:
        value = getattr(params, name)
        if isinstance(value, DataSpec):
            for field in ("path", "dataset"):
                if getattr(value, field) and os.path.isabs(getattr(value, field)):
                    found.append((f"{name}.{field}", getattr(value, field)))
        elif isinstance(value, ModelSpec) and value.pretrained and os.path.isabs(value.pretrained):
            found.append((f"{name}.pretrained", value.pretrained))
    return found


# --- every node of a cluster ------------------------------------------------------------------

# How long a node looks for the driver's mark in the store: on NFS a file another host just made can
# be hidden for a while; listing the directory asks the server again.
MARK_WAIT_S = 20.0
NODE_TIMEOUT_S = 120.0  # a node's check starts a worker there (a few seconds; more on a busy node)


@dataclass(frozen=True)
class NodeNeeds:
    """What a node must have to run the pending tasks; travels to each node (small, picklable)."""

    paths: tuple[tuple[str, str], ...]  # (spec field, absolute path)
    hub_ids: tuple[tuple[str, str], ...]  # ("model" | "dataset", id)
    store: str  # the store's root, absolute
    mark: tuple[str, str]  # (file under <store>/tasks/, its content): proof that the node's store is the driver's
    langspec: str
    stage_versions: tuple[tuple[str, int], ...]


def node_needs(pending: list[Task], root: Path, mark: tuple[str, str]) -> NodeNeeds:
    from store.db import package_version

    paths = sorted({found for task in pending for found in input_paths(for_execution(task.params))})
    return NodeNeeds(paths=tuple(paths), hub_ids=tuple(sorted(set(_hub_ids(pending)))), store=str(root), mark=mark,
                     langspec=package_version("langspec"), stage_versions=stage_versions())


def stage_versions() -> tuple[tuple[str, int], ...]:
    return tuple((name, stage(name).VERSION) for name in STAGES)


def check_node(needs: NodeNeeds) -> list[str]:
    """Runs on a node: what it lacks of `needs`, each said as what to give it ([] when nothing)."""
    from store.db import package_version

    lacks = []
    if package_version("langspec") != needs.langspec:
        lacks.append(f"langspec {needs.langspec} (it has {package_version('langspec')})")
    mine = dict(stage_versions())
    differ = [f"{name} {version} (it has {mine.get(name, 'none')})" for name, version in needs.stage_versions
              if mine.get(name) != version]
    if differ:
        lacks.append(f"the driver's stage versions: {', '.join(differ)}")
    lacks += [f"{field} {path} (not there)" for field, path in needs.paths if not os.path.exists(path)]
    uncached = [(kind, name) for kind, name in needs.hub_ids if not _cached(kind, name)]
    problem = _hub_problem() if uncached else None
    if problem:
        listed = ", ".join(f"{kind} {name!r}" for kind, name in uncached)
        lacks.append(f"{listed}: {problem} (its cache: HF_HOME={os.environ.get('HF_HOME') or 'unset'})")
    store = _store_problem(needs)
    if store:
        lacks.append(store)
    return lacks


def _store_problem(needs: NodeNeeds) -> str | None:
    tasks = Path(needs.store) / "tasks"
    if not tasks.is_dir():
        return f"the store's directory {needs.store} (not there)"
    name, content = needs.mark
    deadline = time.monotonic() + MARK_WAIT_S
    while _read(tasks / name) != content:
        if time.monotonic() > deadline:
            return (f"the store's directory {needs.store} as the driver has it (it has a directory there without the "
                    f"mark the driver just wrote: another disk, not a filesystem every node shares)")
        time.sleep(0.5)
        os.listdir(tasks)  # NFS looks again at a directory it lists
    if not os.access(tasks, os.W_OK | os.X_OK):
        return f"write access to the store's directory {tasks}"
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def refusal(lacking: dict[str, list[str]], checked: int, cwd: Path) -> PlanError:
    """The error that refuses a run because nodes lack what it needs: each node named, with what it lacks."""
    nodes = "; ".join(f"node {node} lacks {', '.join(lacks)}" for node, lacks in lacking.items())
    return PlanError(
        f"{len(lacking)} of the {checked} node(s) that could run its tasks cannot: {nodes}. Each node needs the "
        f"spec's paths at the same absolute path (a relative path is the driver's, from {cwd}: put the data and "
        "models on a filesystem every node mounts), the hub ids in the Hugging Face cache the driver's HF_HOME "
        "names (or the hub), the driver's langspec install, and the store on the shared filesystem; "
        "see docs/paper-study.md, 'What each node needs'"
    )
