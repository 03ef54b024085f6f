"""What the executor hands a stage besides its params: where to compute and how to show progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


# A stage that can resume (RESUMABLE = True in its module) keeps its state in this file of its
# working directory while it runs; the executor keeps such a directory for the next attempt.
from store.artifacts import RESUME_FILE  # noqa: E402,F401


def _ignore(done: int, total: int, note: str) -> None:
    pass


@dataclass(frozen=True)
class TaskContext:
    device: str = "cpu"  # "cpu" or "cuda:0" (the GPU Ray assigned)
    num_cpus: int = 1  # torch's thread count
    report: Callable[[int, int, str], None] = field(default=_ignore)  # (done, total, note) progress
