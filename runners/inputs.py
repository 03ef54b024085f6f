"""Typed handles on a task's inputs: a stage reads what its upstream tasks wrote through these
(`inputs.data.examples()`, `inputs.finetune.checkpoints()`, `inputs.masks(languages)`), never by paths.

The executor builds `Inputs` from the planned roles (runners.stage.Planned.inputs) and the task
directories of their keys (store.artifacts.task_dir)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from runners.tables import LABELS_FILE
from store.artifacts import table_path

if TYPE_CHECKING:
    from runners.stage import Upstream


@dataclass(frozen=True)
class Data:
    """A data task's examples and label names."""

    path: Path

    def examples(self, split: str | None = None, language: str | None = None) -> list[dict]:
        """Its examples, optionally of one split and language, in stored order."""
        rows = pq.read_table(table_path(self.path, "examples")).to_pylist()
        return [r for r in rows if (split is None or r["split"] == split) and (language is None or r["language"] == language)]

    def label_names(self) -> list[str]:
        return json.loads((self.path / LABELS_FILE).read_text())["names"]


@dataclass(frozen=True)
class Checkpoint:
    epoch: int
    learning_rate: float
    path: Path  # the saved model's directory (models.load_checkpoint reads it)


@dataclass(frozen=True)
class Trained:
    """A fine-tuning task (finetune or sparse_finetune): its checkpoints."""

    path: Path

    def checkpoints(self) -> list[Checkpoint]:
        """One per epoch, in epoch order."""
        rows = pq.read_table(table_path(self.path, "checkpoints")).to_pylist()
        return [Checkpoint(r["epoch"], r["learning_rate"], self.path / r["path"]) for r in sorted(rows, key=lambda r: r["epoch"])]

    def last_checkpoint(self) -> Checkpoint:
        return self.checkpoints()[-1]


@dataclass(frozen=True)
class Subnetwork:
    """A prune task: one language's head mask."""

    path: Path

    def mask(self):
        """The final mask as an (L, H) float tensor of 0/1."""
        import torch

        rows = pq.read_table(table_path(self.path, "subnetworks")).to_pylist()
        mask = torch.zeros(max(r["layer"] for r in rows) + 1, max(r["head"] for r in rows) + 1)  # (L, H)
        for r in rows:
            mask[r["layer"], r["head"]] = float(r["kept"])
        return mask


def mask_role(language: str) -> str:
    """The input role under which a downstream task receives a language's prune task."""
    return f"prune.{language}"


def mask_inputs(upstream: Upstream, seed: int) -> tuple[tuple[str, str], ...]:
    """The inputs that give a downstream task every language's subnetwork of the seed's multilingual
    model: (mask_role, key); `inputs.masks(languages)` then reads them."""
    return tuple((mask_role(labels["language"]), key) for labels, key in upstream.keys("prune", seed=seed) if "model" not in labels)


class Inputs:
    """A task's inputs by role: the roles its stage planned, each a typed handle."""

    def __init__(self, dirs: dict[str, Path]):
        self._dirs = dict(dirs)

    def _dir(self, role: str) -> Path:
        if role not in self._dirs:
            raise KeyError(f"this task has no input {role!r}; its inputs are {', '.join(self._dirs) or 'none'}")
        return self._dirs[role]

    @property
    def data(self) -> Data:
        return Data(self._dir("data"))

    @property
    def finetune(self) -> Trained:
        return Trained(self._dir("finetune"))

    @property
    def sft(self) -> Trained:
        return Trained(self._dir("sft"))

    @property
    def ablation(self) -> Trained:
        """An ablation task (e.g. a model fine-tuned on one language only)."""
        return Trained(self._dir("ablation"))

    def __contains__(self, role: str) -> bool:
        return role in self._dirs

    def subnetwork(self, language: str) -> Subnetwork:
        return Subnetwork(self._dir(mask_role(language)))

    def masks(self, languages) -> dict:
        """{language: (L, H) mask} of the given languages."""
        return {language: self.subnetwork(language).mask() for language in languages}
