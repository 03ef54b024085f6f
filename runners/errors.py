"""The runners' errors: one root, picklable (Ray ships them between processes), each saying what
was wrong and how to fix it. The CLI maps the root to its exit code (langspec.errors.ERROR_ROOTS)."""

from __future__ import annotations


class RunnerError(Exception):
    """Root of every error a stage raises on purpose."""

    exit_code = 1


class DataSourceError(RunnerError):
    """The data a spec names cannot be read: a missing directory, file, split, column or dataset."""

    exit_code = 2


class ModelSourceError(RunnerError):
    """The model a spec names cannot be loaded."""

    exit_code = 2
