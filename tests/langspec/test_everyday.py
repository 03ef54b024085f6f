"""langspec with the tools researchers already use: pipes and scripts, --help and --version, the
DuckDB CLI (an older DuckDB than the one that writes the store), one report per run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langspec.cli import app

runner = CliRunner()
# The whole study on two toy languages: every stage and TracIn variant, a few seconds in-process.
STUDY = """\
    name: everyday
    data: {source: toy, languages: [ka, la], train_per_language: 60, validation_per_language: 20,
           test_per_language: 20, seed: 0}
    model: {tiny: {layers: 2, heads: 2, hidden: 16, intermediate: 32, vocab_size: 200}}
    seeds: [0]
    finetune: {epochs: 2, lr: 1.0e-3, batch_size: 16, max_length: 32}
    prune: {enabled: true}
    sparse_finetune: {enabled: true}
    tracin: {enabled: true, train_per_language: 10, test_per_language: 3}
    analysis: {top_k: 5}
    resources: {default: {num_cpus: 1}}
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """{"spec": path, "store": path} of a store that one real run of the whole study made."""
    root = tmp_path_factory.mktemp("everyday")
    spec = root / "everyday.yaml"
    spec.write_text(textwrap.dedent(STUDY))
    store = root / "results"
    result = invoke("run", spec, "--store", store, "--executor", "local")
    assert result.exit_code == 0, result.output
    return {"spec": spec, "store": store}


def analysis(store: Path, *args) -> list[dict]:
    result = invoke("analyze", *args, "--store", store, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_version_names_every_package():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.splitlines() == [f"{p} {metadata.version(p)}" for p in ("langspec", "torch", "transformers", "ray", "duckdb")]


@pytest.mark.parametrize("command", [[], ["validate"], ["plan"], ["run"], ["query"], ["analyze"], ["report"], ["status"]])
def test_help_has_no_type_placeholders(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    for placeholder in ("<bool>", "<list", "<str>", "<path>", "<int>", "{spec}", "{sql}", "…"):
        assert placeholder not in result.output, (command, placeholder)
    if not command:  # a command's summary is its first sentence, whole
        assert "Run one of the study's analyses; without NAME, list them." in " ".join(result.output.split())
        assert "run_id defaults" not in result.output


def test_piped_tables_and_messages_are_never_wrapped_or_cut(study, tmp_path):
    status = invoke("status", "--store", study["store"]).output
    rows = [line for line in status.splitlines() if line.startswith("│")]
    assert {name for name in ("tracin[seed=0,variant=subnetwork]", "tracin[seed=0,variant=sft]") if any(name in r for r in rows)} == {
        "tracin[seed=0,variant=subnetwork]", "tracin[seed=0,variant=sft]"}
    wide = invoke("query", f"SELECT '{'x' * 250}' AS long_value, 1 AS a_column_to_the_right", "--store", study["store"]).output
    assert any("x" * 250 in line and line.rstrip().endswith("│") for line in wide.splitlines())  # one row, one line
    deep = tmp_path / ("a-directory-with-a-long-name-" * 4) / "results"
    missing = invoke("query", "SELECT 1", "--store", deep)
    assert missing.exit_code == 2
    assert f"run `langspec run SPEC --store {deep}` first" in missing.output.splitlines()[0]  # the command in one piece


def test_analyze_refuses_unknown_parameters_and_values(study):
    store = study["store"]
    unknown = invoke("analyze", "accuracy", "--param", "kk=3", "--store", store)
    assert unknown.exit_code == 2 and "takes --param point, run_id, not kk" in unknown.output
    split = invoke("analyze", "final_accuracy", "--param", "split=dev", "--store", store)
    assert split.exit_code == 2 and "no split 'dev'; it has test, validation" in split.output
    language = invoke("analyze", "subnetwork_grid", "--param", "language=xx", "--store", store)
    assert language.exit_code == 2 and "no language 'xx'; it has ka, la" in language.output
    name = invoke("analyze", "acuracy", "--store", store)
    assert name.exit_code == 2 and "did you mean 'accuracy'?" in name.output and "in_language_share, influence_mass" in name.output
    assert analysis(store, "final_accuracy", "--param", "split=test")  # the values the store has still work


def duckdb_cli(store: Path, sql: str) -> list[dict]:
    """Rows of `sql` as the DuckDB CLI (package duckdb-cli, DuckDB 1.5) reads the store."""
    binary = Path(sys.executable).with_name("duckdb")
    done = subprocess.run([str(binary), "-readonly", "-json", str(store / "langspec.duckdb"), "-c", sql],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "[]")


def rounded(rows: list[dict]) -> list[dict]:
    """Rows with floats to 9 places (the clients print them differently) and NaN comparable."""
    return [{k: ("nan" if math.isnan(v) else round(v, 9)) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


def test_the_duckdb_cli_reads_the_store_and_runs_the_printed_analyses(study):
    store = study["store"]
    version = subprocess.run([str(Path(sys.executable).with_name("duckdb")), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("v1.5."), version.stdout  # an older DuckDB than the writer's 2.0
    accuracy = duckdb_cli(store, "SELECT variant, language, value FROM final_metrics WHERE split = 'test' ORDER BY ALL")
    assert {(r["variant"], r["language"]) for r in accuracy} == {(v, lang) for v in ("full", "subnetwork", "sft") for lang in ("ka", "la")}
    for args in (["accuracy"], ["in_language_share"], ["similarity_vs_influence"], ["cross_language"], ["subnetwork_grid", "--param", "language=la"],
                 ["in_language_share", "--param", "k=2"]):
        printed = invoke("analyze", *args, "--store", store, "--sql")
        assert printed.exit_code == 0, printed.output
        assert "$" not in printed.output  # every parameter bound
        ours = analysis(store, *args)
        assert ours and rounded(duckdb_cli(store, printed.output)) == rounded(ours), args


def test_report_keeps_one_report_per_run(study):
    store = study["store"]
    first = invoke("report", "--store", store)
    assert first.exit_code == 0, first.output
    page = store / "report" / "run-1" / "index.html"
    assert f"report of run 1: {page}" in first.output and page.is_file()
    again = invoke("report", "--store", store, "--run", "1")
    assert "(replacing the one there)" in again.output
    rerun = invoke("run", study["spec"], "--store", store, "--executor", "local")
    assert "run 2 completed" in rerun.output
    second = invoke("report", "--store", store)
    assert f"report of run 2: {store / 'report' / 'run-2' / 'index.html'}" in second.output
    assert page.is_file() and "run 1</h1>" in page.read_text()  # run 1's report is still there
