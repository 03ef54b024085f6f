"""Each package's errors: one root per package, all picklable (Ray ships them), and the CLI prints
any of them as one line and exits with its code."""

from __future__ import annotations

import pickle

import pytest
from typer.testing import CliRunner

from langspec.cli import app
from langspec.errors import ERROR_ROOTS, SpecError, SpecProblem


def subclasses(cls: type) -> list[type]:
    return [cls] + [sub for direct in cls.__subclasses__() for sub in subclasses(direct)]


ERRORS = [cls for root in ERROR_ROOTS for cls in subclasses(root)]


def test_the_roots_are_one_per_package():
    assert {root.__module__ for root in ERROR_ROOTS} == {"langspec.errors", "runners.errors", "store.errors"}
    assert {"DataSourceError", "ModelSourceError", "QueryError", "PlanError", "UsageError"} <= {cls.__name__ for cls in ERRORS}


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_survives_pickling_and_has_an_exit_code(cls):
    args = ([SpecProblem("spec.yaml:3:5", "finetune.epochs", "must be >= 1")],) if cls is SpecError else ("what and how to fix it",)
    error = cls(*args)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and str(copy) == str(error)
    assert cls.exit_code in (1, 2)


def test_a_runner_error_while_planning_is_one_line_and_exit_2(spec_file, tmp_path):
    # The `files` source is fingerprinted at compile time: its missing directory is a DataSourceError.
    spec = spec_file("""\
        name: t
        data: {source: files, path: nowhere, languages: [ka]}
        model: {tiny: {}}
        tracin: {enabled: false}
    """)
    result = CliRunner().invoke(app, ["plan", str(spec), "--store", str(tmp_path / "store")])
    assert result.exit_code == 2, result.output
    assert "error: data.path nowhere is not a directory" in result.output and "Traceback" not in result.output
    assert issubclass(type(result.exception), SystemExit)


def test_a_store_error_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["query", "SELECT 1", "--store", str(tmp_path / "none")])
    assert result.exit_code == 2, result.output
    assert "error: no store at" in result.output and "Traceback" not in result.output

