"""The `langspec` command end to end: run, cached re-run, query, validate, plan, status (the whole
study through the command: test_study_cli.py)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from langspec.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_run_query_and_cached_rerun(small_spec, tmp_path, ray_session):
    store = tmp_path / "results"
    first = invoke("run", small_spec, "--store", store)
    assert first.exit_code == 0, first.output
    assert "run 1 completed: 2 ran" in first.output
    assert "test accuracy at the last epoch" in first.output and "ka" in first.output

    queried = invoke("query", "SELECT language, count(*) AS n FROM metrics WHERE metric = 'accuracy' GROUP BY 1 ORDER BY 1",
                     "--store", store, "--format", "json")
    assert json.loads(queried.output) == [{"language": "ka", "n": 4}, {"language": "la", "n": 4}]  # 2 splits x 2 epochs

    second = invoke("run", small_spec, "--store", store)
    assert "run 2 completed: 2 cached" in second.output

    planned = invoke("plan", small_spec, "--store", store, "--set", "finetune.epochs=3")
    assert "data" in planned.output and "cached" in planned.output
    assert "finetune[seed=0]" in planned.output and "will run: finetune.epochs 2 -> 3" in planned.output

    status = invoke("status", "--store", store)
    assert "completed" in status.output and "finetune[seed=0]" in status.output

    refused = invoke("query", "DELETE FROM metrics", "--store", store)
    assert refused.exit_code == 2 and "read-only" in refused.output


def test_validate_reports_every_problem_with_exit_code_2(spec_file):
    path = spec_file("name: t\nmodel: {tiny: {layers: 0}}\nfinetune: {epoch: 2}\n")
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert f"{path}:2:" in result.output and "model.tiny.layers" in result.output
    assert f"{path}:3:" in result.output and "did you mean 'epochs'" in result.output


def test_validate_accepts_a_good_spec(small_spec):
    result = invoke("validate", small_spec, "--set", "seeds=[0, 1]")
    assert result.exit_code == 0 and "valid" in result.output and "seeds [0, 1]" in result.output


def test_query_without_a_store(tmp_path):
    result = invoke("query", "SELECT 1", "--store", tmp_path / "none")
    assert result.exit_code == 2 and "no store at" in result.output


def test_schema_is_json_schema():
    schema = json.loads(invoke("schema").output)
    assert schema["title"] == "Spec" and "finetune" in schema["properties"]
