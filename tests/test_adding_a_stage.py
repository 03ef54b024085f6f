"""docs/adding-a-stage.md, done: a throwaway stage with a table of its own, registered in the places
that page lists and no others, compiles from a spec, runs on the local executor and is queried from
the store.

It runs in a process of its own, which registers the stage before langspec is imported, as the code
of those places would: the module (`runners.probe`), its name in `runners.stage.STAGES`, its Arrow
schema in `runners.tables.SCHEMAS`, its DDL in the store's `tables.sql` (here a copy with the DDL
appended) and its name in `store.task_rows.STAGE_TABLES`. The generated files the page lists (the JSON
Schema, the reference pages, the import contracts) are not read by a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = '''
import json, sys, types
from pathlib import Path

import pyarrow as pa
import torch
from pydantic import Field

torch.set_num_threads(1)
from runners import stage as registry, tables
from runners.stage import Planned, Section, StageParams

probe = types.ModuleType("runners.probe")  # runners/probe.py


class ProbeSpec(Section):
    enabled: bool = Field(False, description="Count each language's training examples.")


class Params(StageParams):
    seed: int
    languages: tuple[str, ...]


def tasks(spec, seed, upstream):
    if spec.probe.enabled:
        yield Planned({"seed": seed}, Params(seed=seed, languages=tuple(spec.data.languages)), (("data", upstream.key("data")),))


def run(params, inputs, workdir, ctx):
    rows = [{"seed": params.seed, "language": language, "examples": len(inputs.data.examples("train", language))}
            for language in params.languages]
    tables.write_table(workdir, "probe_counts", rows)
    return {"languages": len(rows)}


probe.__dict__.update(
    VERSION=1, READS=("probe", "data"), RESUMABLE=False, MEMORY_FIELDS=(), TABLES=("probe_counts",),
    SECTIONS={"probe": (ProbeSpec, Field(default_factory=ProbeSpec, description="A throwaway stage."))},
    Params=Params, check=lambda spec: None, tasks=tasks, run=run,
)
sys.modules["runners.probe"] = probe
registry.STAGES = (*registry.STAGES, "probe")  # runners/stage.py
tables.SCHEMAS["probe_counts"] = pa.schema([("seed", pa.int32()), ("language", pa.string()), ("examples", pa.int32())])  # runners/tables.py

from store import db, task_rows  # noqa: E402

work = Path(sys.argv[1])
schema = work / "tables.sql"  # store/schema/tables.sql, with the stage's DDL
schema.write_text(db.SCHEMA_FILES[0].read_text()
                  + "CREATE TABLE IF NOT EXISTS probe_counts (task_key VARCHAR, seed INTEGER, language VARCHAR, examples INTEGER);\\n")
db.SCHEMA_FILES = (schema, *db.SCHEMA_FILES[1:])
task_rows.STAGE_TABLES = (*task_rows.STAGE_TABLES, "probe_counts")  # store/task_rows.py

from langspec.compile import compile_spec  # noqa: E402
from langspec.execute import execute  # noqa: E402
from langspec.load import load_spec  # noqa: E402
from store.connections import connect_read_only  # noqa: E402

graph = compile_spec(load_spec(sys.argv[2]))
result = execute(graph, load_spec(sys.argv[2]), work / "store", executor="local")
with connect_read_only(work / "store") as con:
    counts = con.sql("SELECT language, examples FROM probe_counts ORDER BY language").fetchall()
    outcomes = con.sql("SELECT stage, outcome FROM tasks ORDER BY stage").fetchall()
print(json.dumps({"status": result.status, "stages": [t.stage for t in graph.tasks], "counts": counts, "outcomes": outcomes}))
'''

SPEC = """\
name: probe
data: {source: toy, languages: [ka, la], train_per_language: 30, validation_per_language: 5, test_per_language: 5}
model: {tiny: {layers: 1, heads: 2, hidden: 16, intermediate: 32, vocab_size: 200}}
finetune: {epochs: 1, batch_size: 16, max_length: 24}
prune: {enabled: false}
sparse_finetune: {enabled: false}
tracin: {enabled: false}
probe: {enabled: true}
resources: {default: {num_cpus: 1}}
"""


def test_a_throwaway_stage_with_its_own_table_runs_and_is_queried(tmp_path):
    (tmp_path / "probe.yaml").write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), str(tmp_path / "probe.yaml")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["status"] == "completed"
    assert found["stages"] == ["data", "finetune", "probe"]  # planned after the stages before it in STAGES
    assert found["counts"] == [["ka", 30], ["la", 30]]  # the spec's train_per_language, counted by the stage
    assert ["probe", "ran"] in found["outcomes"]


def test_without_its_section_the_spec_is_refused_as_an_unknown_field(tmp_path):
    # The control: the same spec without registering the stage fails validation, so the run above
    # is the registration's doing.
    from langspec.errors import SpecError
    from langspec.load import load_spec

    (tmp_path / "probe.yaml").write_text(SPEC)
    try:
        load_spec(tmp_path / "probe.yaml")
    except SpecError as error:
        assert "probe" in str(error)
    else:
        raise AssertionError("a spec with an unregistered `probe:` section was accepted")
