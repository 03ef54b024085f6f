"""Checks before a run starts, so that it fails in a second with what to do rather than in a task
minutes later: models and datasets named by a hub id must be reachable or already cached.

What needs the hub: a pending data task with `source: hub` and a dataset id (not a directory), and
a pending training task with `model.pretrained` an id (not a directory). An id counts as present
when the Hugging Face cache holds it; otherwise the hub must be reachable (HF_HUB_OFFLINE unset
and the endpoint answering within a few seconds).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from langspec.compile import Task
from langspec.errors import PlanError

TIMEOUT_S = 3.0


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
