"""Promises 3, 5, 6 and 9: a failing task, two processes on one store, the store's format, and a
task that runs out of memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import duckdb
from typer.testing import CliRunner

from langspec.cli import app
from store.db import StoreWriter
from store.migrations import SCHEMA_VERSION

SPEC = """\
name: f
data: {{source: {source}, languages: [ka, la], train_per_language: 20, validation_per_language: 5, test_per_language: 5}}
model: {{tiny: {{layers: 1, heads: 2, hidden: 16, intermediate: {intermediate}, vocab_size: 100}}}}
seeds: [0, 1]
finetune: {{epochs: 1}}
prune: {{enabled: false}}
sparse_finetune: {{enabled: false}}
tracin: {{enabled: false}}
"""


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_files(root, corrupt_la_train=False):
    for language in ("ka", "la"):
        for split, n in (("train", 20), ("validation", 5), ("test", 5)):
            path = root / language / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = [json.dumps({"text_a": f"{language} {i}", "text_b": f"b {i % 3}", "label": i % 3}) for i in range(n)]
            if corrupt_la_train and (language, split) == ("la", "train"):
                lines[3] = "{not json"
            path.write_text("\n".join(lines) + "\n")


def test_a_failing_task_is_reported_and_a_fixed_rerun_runs_only_what_is_missing(tmp_path):
    source = tmp_path / "files"
    write_files(source, corrupt_la_train=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(source=f"files, path: {source}", intermediate=32))
    store = tmp_path / "store"
    failed = run("run", spec, "--store", store, "--executor", "local")
    assert failed.exit_code == 1
    said = " ".join(failed.output.split())
    assert "run 1 failed: 1 failed, 2 skipped" in said and "failed data: JSONDecodeError" in said
    error = run("query", "SELECT outcome, error FROM tasks WHERE name = 'data'", "--store", store, "--format", "json")
    [row] = json.loads(error.output)
    assert row["outcome"] == "failed" and "Traceback" in row["error"] and "JSONDecodeError" in row["error"]
    first_line = row["error"].splitlines()[0]
    assert row["error"].count(first_line) == 1 and said.count(" ".join(first_line.split())) == 1  # stored and said once
    skipped = json.loads(run("query", "SELECT name, outcome FROM tasks WHERE run_id = 1 AND name <> 'data' ORDER BY name",
                             "--store", store, "--format", "json").output)
    assert skipped == [{"name": "finetune[seed=0]", "outcome": "skipped"}, {"name": "finetune[seed=1]", "outcome": "skipped"}]

    write_files(source)  # the fix
    fixed = run("run", spec, "--store", store, "--executor", "local")
    assert fixed.exit_code == 0 and "run 2 completed: 3 ran" in fixed.output
    again = run("run", spec, "--store", store, "--executor", "local")
    assert "run 3 completed: 3 cached" in again.output


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "langspec", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_a_second_process_is_turned_away_without_touching_the_store(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(source="toy", intermediate=32))
    store = tmp_path / "store"
    assert run("run", spec, "--store", store, "--executor", "local").exit_code == 0
    def contents():
        with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as con:
            return [con.sql(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in ("runs", "tasks", "results", "metrics")]

    before = contents()
    with StoreWriter(store):  # a run in progress, as far as other processes can tell
        second = _cli("run", spec, "--store", store, "--executor", "local")
        assert second.returncode == 2 and f"in use by another langspec run (pid {os.getpid()})" in " ".join(second.stderr.split())
        reader = _cli("query", "SELECT count(*) FROM runs", "--store", store)
        assert reader.returncode == 0 and "1 row" in reader.stdout  # a run's store is readable between its writes
    assert contents() == before


def test_the_store_records_its_format_and_refuses_another(tmp_path):
    StoreWriter(tmp_path).close()
    with duckdb.connect(str(tmp_path / "langspec.duckdb")) as con:
        meta = dict(con.sql("SELECT key, value FROM meta").fetchall())
        assert meta["schema_version"] == str(SCHEMA_VERSION) and meta["duckdb_version"] == duckdb.__version__
        assert meta["langspec_version"]
        con.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    result = run("run", "specs/demo.yaml", "--store", tmp_path)
    assert result.exit_code == 2 and "schema version 0" in result.output and "new --store" in " ".join(result.output.split())


# `langspec run` in a process whose address space is capped at 4 GB, as a batch scheduler caps a job's memory.
CAPPED_RUN = "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)); " \
             "from langspec.cli import app; sys.argv[0] = 'langspec'; app()"


def test_out_of_memory_names_the_task_and_the_fields_to_lower(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(source="toy", intermediate=32_768).replace("hidden: 16", "hidden: 8192"))  # 1 GB a layer
    done = subprocess.run([sys.executable, "-c", CAPPED_RUN, "run", str(spec), "--store", str(tmp_path / "store"),
                           "--executor", "local"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    said = " ".join((done.stdout + done.stderr).split())
    assert "finetune[seed=0] ran out of memory on cpu" in said
    assert "smaller finetune.batch_size or finetune.max_length or finetune.eval_batch_size, or a smaller model" in said
