"""langspec's errors: one root, picklable (Ray ships them between processes), each saying what,
where and how to fix it. The runners and the store own their errors under roots of their own."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runners.errors import RunnerError
from store.errors import StoreError


class LangspecError(Exception):
    """Root of every error langspec raises on purpose; the CLI prints it without a traceback."""

    exit_code = 1


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec, located as precisely as the input allows."""

    where: str  # "specs/demo.yaml:12:5" or "--set finetune.epochs"
    path: str  # "finetune.epochs"
    message: str

    def __str__(self) -> str:
        field = f" {self.path}:" if self.path else ""
        return f"{self.where}:{field} {self.message}"


def _reading_order(problem: SpecProblem) -> tuple:
    """Problems in the order a reader meets them: by file, then line and column numerically."""
    match = re.fullmatch(r"(.*):(\d+):(\d+)", problem.where)
    if match is None:
        return (problem.where, 0, 0)
    return (match[1], int(match[2]), int(match[3]))


class SpecError(LangspecError):
    """The spec is invalid; carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[SpecProblem]):
        self.problems = sorted(problems, key=_reading_order)
        count = len(self.problems)
        lines = [f"{count} problem{'s' if count > 1 else ''} in the spec:"] + [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))

    def __reduce__(self):
        return (SpecError, (self.problems,))


class PlanError(LangspecError):
    """The spec is valid but cannot run here (a stage without a runner, too few GPUs, ...)."""

    exit_code = 2


class UsageError(LangspecError):
    """A command-line option with a value it does not take."""

    exit_code = 2


# The root of each package's errors; the CLI prints any of them without a traceback and exits with
# its `exit_code` (1: a task or run failed, 2: the input is wrong).
ERROR_ROOTS = (LangspecError, RunnerError, StoreError)
