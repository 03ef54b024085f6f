"""Messages that point the right way (#39): each names what the user typed and the command or file
that fixes it, and each file it points to exists."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from langspec.cli import app
from store.db import StoreWriter

REPO = Path(__file__).resolve().parents[2]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


def test_a_store_given_as_its_database_file_is_told_to_name_the_directory(tmp_path, small_spec):
    root = tmp_path / "results"
    StoreWriter(root).close()
    for args in (("query", "SELECT 1"), ("status",), ("run", small_spec, "--executor", "local")):
        code, said = invoke(*args, "--store", root / "langspec.duckdb")
        assert code == 2 and "--store takes the store's directory" in said and f"--store {root}" in said, (args, said)


def test_a_spec_path_that_names_no_file_lists_the_specs_there(monkeypatch):
    monkeypatch.chdir(REPO)
    code, said = invoke("validate", "specs/no-such-spec.yaml")
    assert code == 2 and f"the current directory is {REPO}" in said
    listed = re.search(r"the specs in specs/: (.*)$", said)[1].split(", ")
    assert "demo.yaml" in listed and all((REPO / "specs" / name).is_file() for name in listed)
    assert "e.g. specs/demo.yaml" not in said  # the old hint named a path the user may not have


def test_a_scalar_where_a_list_belongs_is_shown_as_a_list(spec_file, small_spec):
    path = spec_file(small_spec.read_text().replace("seeds: [0]", "seeds: 0"), "scalar.yaml")
    code, said = invoke("validate", path)
    assert code == 2 and "seeds: Input should be a valid list (got 0); write a list, e.g. [0]" in said


def test_out_and_format_that_disagree_are_refused(everyday_study, tmp_path):
    out = tmp_path / "answer.csv"
    code, said = invoke("query", "SELECT 1 AS x", "--store", everyday_study["store"], "--format", "json", "--out", out)
    assert code == 2 and "--format json disagrees with --out" in said and not out.exists()
    code, _ = invoke("query", "SELECT 1 AS x", "--store", everyday_study["store"], "--format", "csv", "--out", out)
    assert code == 0 and out.read_text() == "x\n1\n"


def test_export_points_at_a_page_that_exists(everyday_study, tmp_path):
    code, said = invoke("export", tmp_path / "out", "--store", everyday_study["store"])
    assert code == 0
    page = re.search(r"use one: (\S+)", said)[1]
    assert (REPO / page).is_file() and "Hugging Face" in (REPO / page).read_text()


def test_a_store_without_a_completed_run_is_told_with_its_own_store(tmp_path):
    root = tmp_path / "my store"
    StoreWriter(root).close()
    for args in (("report",), ("analyze", "accuracy")):
        code, said = invoke(*args, "--store", root)
        assert code == 2 and f"run `langspec run SPEC --store '{root}'` first" in said, said
