"""A sweep's primary point (analysis.primary_point): named in the spec before the results, it is
the point whose verdicts answer the study; every other point's findings are labelled exploratory.
Checked against hand-written cases of the naming rule, the spec's error for a point outside the
sweep, and the findings of one hand-built store read as the primary point and as another."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import duckdb
import pytest

from langspec.load import load_spec
from langspec.errors import SpecError
from langspec.science import findings
from langspec.science.study import primary_point
from store.migrations import schema_sql
from store.points import point_label, primary_assignments
from tests.langspec.test_findings import K, build

SWEEP = {"prune.threshold": [0.95, 0.9], "finetune.epochs": [3, 5], "tracin.normalize": ["none", "cosine"]}


def test_the_primary_point_defaults_to_every_fields_first_value():
    assert primary_assignments(SWEEP, None) == {"prune.threshold": 0.95, "finetune.epochs": 3, "tracin.normalize": "none"}
    assert point_label(primary_assignments({}, None)) == ""  # no sweep: the only point
    assert point_label({"data.shuffle_languages": False, "planted.silence": 0.0}) == "data.shuffle_languages=false,planted.silence=0.0"


def test_a_named_primary_point_keeps_the_sweeps_order_and_its_own_values():
    chosen = primary_assignments(SWEEP, {"tracin.normalize": "cosine", "prune.threshold": 0.9})
    assert point_label(chosen) == "prune.threshold=0.9,finetune.epochs=3,tracin.normalize=cosine"
    # 5.0 and 5 are one value of the sweep, named as the sweep writes it; a flag is not a number
    assert point_label(primary_assignments(SWEEP, {"finetune.epochs": 5.0})).split(",")[1] == "finetune.epochs=5"
    with pytest.raises(ValueError, match="not one of its swept values"):
        primary_assignments({"planted.on": [False, True]} | SWEEP, {"planted.on": 1})


@pytest.mark.parametrize("primary, message", [
    ("{prune.threshold: 0.9}", "prune.threshold: 0.9 is not one of its swept values [0.95, 0.98]"),
    ("{prune.thresh: 0.95}", "prune.thresh is not swept (the swept fields: prune.threshold)"),
])
def test_a_primary_point_outside_the_sweep_is_a_spec_error_at_its_line(tmp_path, primary, message):
    spec = tmp_path / "study.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: swept
        data: {{source: toy, languages: [ka, kb]}}
        model: {{tiny: {{layers: 1, heads: 2, hidden: 8, intermediate: 8}}}}
        seeds: [0]
        analysis: {{primary_point: {primary}}}
        sweep: {{prune.threshold: [0.95, 0.98]}}
        """))
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert f"{spec}:5:" in str(error.value) and message in str(error.value)


def test_the_store_names_a_runs_primary_point_from_the_spec_it_ran():
    con = duckdb.connect()
    con.execute(schema_sql())
    specs = {1: {"analysis": {"top_k": 5}},  # no sweep
             2: {"analysis": {"top_k": 5, "primary_point": None}, "sweep": SWEEP},
             3: {"analysis": {"top_k": 5, "primary_point": {"finetune.epochs": 5}}, "sweep": SWEEP}}
    for run_id, spec in specs.items():
        con.execute("INSERT INTO runs (run_id, spec_name, spec, status) VALUES (?, 'x', ?, 'completed')", [run_id, json.dumps(spec)])
    assert [primary_point(con, run_id) for run_id in specs] == [
        "", "prune.threshold=0.95,finetune.epochs=3,tracin.normalize=none", "prune.threshold=0.95,finetune.epochs=5,tracin.normalize=none"]


def test_findings_away_from_the_primary_point_are_labelled_exploratory_with_their_verdicts_unchanged():
    data = findings.load(build(), 1, "", K)
    at_primary = findings.findings(data)
    assert all(f.point == {"label": "", "primary_point": "", "exploratory": False} for f in at_primary)
    elsewhere = findings.findings(dataclasses.replace(data, point="prune.threshold=0.9", primary_point="prune.threshold=0.95"))
    for primary, other in zip(at_primary, elsewhere):
        assert other.point == {"label": "prune.threshold=0.9", "primary_point": "prune.threshold=0.95", "exploratory": True}
        assert (other.verdict, other.interval, other.p_adjusted) == (primary.verdict, primary.interval, primary.p_adjusted)
        assert other.sentence == "Exploratory (sweep point prune.threshold=0.9; the primary point is prune.threshold=0.95): " + primary.sentence
        assert other.reasons[-1].startswith("sweep point prune.threshold=0.9 is not the spec's primary point")
    assert any(f.verdict == findings.SUPPORTED for f in elsewhere)  # the label, not a withheld verdict


def test_plan_sizes_what_the_specs_seeds_could_detect_on_a_pilot_run(tmp_path):
    """`langspec plan` reads the last completed run of the spec's name (the hand-built 3-seed run) and
    gives each question's minimum detectable effect at this spec's 6 seeds, as the findings size it."""
    from typer.testing import CliRunner

    from langspec.cli import app

    store = tmp_path / "results"
    store.mkdir()
    pilot = build()
    pilot.execute(f"ATTACH '{store / 'langspec.duckdb'}' AS disk")
    pilot.execute("COPY FROM DATABASE memory TO disk")
    pilot.execute("DETACH disk")
    spec = tmp_path / "hand-built.yaml"
    spec.write_text("name: hand-built\ndata: {source: toy, languages: [ka, kb, la]}\n"
                    "model: {tiny: {layers: 2, heads: 2, hidden: 8, intermediate: 8}}\nseeds: [0, 1, 2, 3, 4, 5]\n")
    result = CliRunner().invoke(app, ["plan", str(spec), "--store", str(store)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "Power, sized on run 1 of hand-built (3 seeds)" in text
    expected = findings.findings(findings.load(build(), 1, "", K), power_seeds=(6,))
    for finding in expected:
        table = finding.power["seeds"]
        if table is None:
            assert f"{finding.question}: {finding.power['detectable']}" in text or finding.power["detectable"] in text
            continue
        six, three = table["6"][0], table["3"][0]  # None: nothing the statistic can reach is detectable
        assert f"6 seeds (this spec) {'nothing detectable' if six is None else f'>= {six:.2g}'}" in text, finding.question
        assert three is None or six < three  # more seeds, smaller detectable effects
    assert any(f.power["seeds"] and f.power["seeds"]["6"][0] is not None for f in expected)

    other = tmp_path / "other.yaml"
    other.write_text(spec.read_text().replace("name: hand-built", "name: other"))
    result = CliRunner().invoke(app, ["plan", str(other), "--store", str(store)], catch_exceptions=False)
    assert "holds no completed run of other; a pilot run with 2 or more seeds" in " ".join(result.output.split())
