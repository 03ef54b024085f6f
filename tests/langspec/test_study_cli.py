"""The whole study through the `langspec` command, one claim per test: a module-scoped store holds
one run of every stage (run 1), and a second run that sweeps the prune threshold (run 2)."""

from __future__ import annotations

import html
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from langspec.cli import app
from tests.conftest import SMALL_SPEC

runner = CliRunner()
STAGES = ["prune.enabled=true", "sparse_finetune.enabled=true", "tracin.enabled=true", "analysis.top_k=5",
          "tracin.train_per_language=10", "tracin.test_per_language=3"]
ANALYSES = ["accuracy", "in_language_share", "specialization", "cross_language", "subnetwork_similarity",
            "similarity_vs_influence", "dynamics", "influence_mass"]
FIGURES = ["accuracy", "in_language_share", "cross_language", "masks", "jaccard", "dynamics"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def settings(*extra: str) -> list[str]:
    return [arg for setting in (*STAGES, *extra) for arg in ("--set", setting)]


@dataclass(frozen=True)
class Study:
    spec: Path
    store: Path
    first: str  # the output of run 1
    swept: str  # the output of run 2

    def rows(self, sql: str) -> list[dict]:
        return json.loads(invoke("query", sql, "--store", self.store, "--format", "json").output)

    def analysis(self, *args) -> list[dict]:
        result = invoke("analyze", *args, "--store", self.store, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)


@pytest.fixture(scope="module")
def study(tmp_path_factory, ray_session) -> Study:
    root = tmp_path_factory.mktemp("study")
    spec = root / "small.yaml"
    spec.write_text(textwrap.dedent(SMALL_SPEC.format(epochs=2)))
    store = root / "results"
    first = invoke("run", spec, "--store", store, *settings())
    assert first.exit_code == 0, first.output
    # Run 2 sweeps the prune threshold: the point 0.95 is run 1's study again (all cached); the
    # point 0.5 shares its fine-tuning.
    swept = invoke("run", spec, "--store", store, *settings("sweep={prune.threshold: [0.95, 0.5]}"))
    assert swept.exit_code == 0, swept.output
    return Study(spec, store, first.output, swept.output)


def test_run_runs_every_stage(study):
    assert "run 1 completed: 9 ran" in study.first  # data, finetune, 2 x prune, mask_transfer, sft, 3 x tracin
    assert all(variant in study.first for variant in ("full", "subnetwork", "sft"))


def test_the_run_summary_ends_with_the_verdicts(study):
    assert "findings (langspec report" in study.first and "Q2 Subnetworks rely more on in-language data than the full model: inconclusive" in study.first
    assert study.first.rstrip().splitlines()[-1].startswith("  one seed gives no intervals")


def test_tables_hold_every_stage_rows(study):
    grid = study.rows("SELECT language, count(*) AS heads FROM run_subnetwork_masks(1) GROUP BY 1 ORDER BY 1")
    assert grid == [{"language": "ka", "heads": 4}, {"language": "la", "heads": 4}]  # 2 layers x 2 heads
    variants = study.rows("SELECT variant, count(DISTINCT language) AS languages FROM run_metrics(1) "
                          "WHERE split = 'test' GROUP BY 1 ORDER BY 1")
    assert variants == [{"variant": v, "languages": 2} for v in ("full", "sft", "subnetwork")]
    influence = study.rows("SELECT variant, count(*) AS n FROM run_scores(1) GROUP BY 1 ORDER BY 1")
    assert influence == [{"variant": v, "n": 2 * 3 * 2 * 10 * 2} for v in ("full", "sft", "subnetwork")]  # epochs x test x train


def test_a_mask_analysis_reads_one_run(study):
    jaccard = study.analysis("subnetwork_jaccard", "--param", "run_id=1", "--param", "point=")
    assert {r["threshold"] for r in jaccard} == {0.95}  # run 1's prune setting alone, not run 2's 0.5
    assert {(r["language_a"], r["language_b"]) for r in jaccard} == {(a, b) for a in ("ka", "la") for b in ("ka", "la")}
    assert all(r["jaccard"] == 1.0 for r in jaccard if r["language_a"] == r["language_b"])


def test_analyze_takes_named_parameters(study):
    layers = study.analysis("subnetwork_grid", "--param", "language=la", "--param", "run_id=1", "--param", "point=")
    assert [r["layer"] for r in layers] == [0, 1] and all(len(r["heads"].split()) == 2 for r in layers)
    wrong = invoke("analyze", "subnetwork_grid", "--param", "language=la", "--param", "k=5", "--store", study.store)
    assert wrong.exit_code == 2 and "takes --param language, point, run_id, not k" in wrong.output
    missing = invoke("analyze", "subnetwork_grid", "--param", "run_id=1", "--param", "point=", "--store", study.store)
    assert missing.exit_code == 2 and "--param language=..." in missing.output


def test_every_analysis_answers_for_run_1(study):
    results = {name: study.analysis(name, "--param", "run_id=1") for name in ANALYSES}  # k: analysis.top_k
    assert all(results[name] for name in ANALYSES)
    assert {r["variant"] for r in results["in_language_share"]} == {"full", "subnetwork", "sft"}
    assert {r["epoch"] for r in results["dynamics"]} == {1, 2}
    assert study.analysis("in_language_share", "--param", "run_id=1", "--param", "k=1") != results["in_language_share"]


def test_analyze_lists_the_analyses():
    listed = invoke("analyze")
    assert all(name in listed.output for name in ANALYSES)


def test_report_draws_every_figure(study, tmp_path):
    reported = invoke("report", "--store", study.store, "--run", 1, "--out", tmp_path / "report")
    assert reported.exit_code == 0, reported.output
    page = (tmp_path / "report" / "index.html").read_text()
    for figure in FIGURES:
        assert f'src="{figure}.png"' in page
        with Image.open(tmp_path / "report" / f"{figure}.png") as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 150
            assert len(image.convert("L").getcolors(maxcolors=1 << 16)) > 10  # not a blank canvas
    # Run 1's masks keep no heads, so no pair has the size-adjusted Jaccard Q4 correlates: the page says so, drawing nothing
    assert 'src="similarity_vs_influence.png"' not in page and "a mask that keeps no heads has none" in page


def test_report_opens_with_the_findings_of_findings_json(study, tmp_path):
    assert invoke("report", "--store", study.store, "--run", 1, "--out", tmp_path).exit_code == 0
    page = (tmp_path / "index.html").read_text()
    written = json.loads((tmp_path / "findings.json").read_text())
    assert [f["question"] for f in written] == ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "P1"]
    for finding in written:  # the page's first section is findings.json's sentences
        assert finding["interval"] is None  # one seed: no interval over seeds
        label = f"{finding['question']} {finding['verdict']}"  # the page sets the sentence's label in bold
        assert finding["verdict"] == "inconclusive" and f">{label}</b>{html.escape(finding['sentence'].removeprefix(label)[:40])}" in page
    assert page.index("<h2>Findings</h2>") < page.index("<section>")


def test_mask_transfer_pairs_every_language_with_every_mask(study):
    transfer = study.analysis("mask_transfer", "--param", "run_id=1")
    assert {(r["language"], r["mask_language"]) for r in transfer} == {(a, b) for a in ("ka", "la") for b in ("ka", "la")}


def test_report_and_analyze_refuse_a_bad_k_or_parameter(study, tmp_path):
    for bad in ("0", "20", "-1"):  # 0 < k < 20, the training examples TracIn scored
        refused = invoke("report", "--store", study.store, "--run", 1, "--k", bad, "--out", tmp_path / "bad")
        assert refused.exit_code == 2 and "k (proponents per test example) must be" in refused.output, refused.output
    assert invoke("analyze", "in_language_share", "--param", "run_id=1", "--param", "k=0", "--store", study.store).exit_code == 2
    unknown = invoke("analyze", "in_language_share", "--param", "kk=3", "--store", study.store)
    assert unknown.exit_code == 2 and "not kk" in unknown.output
    assert not (tmp_path / "bad").exists()


def test_a_swept_run_needs_its_point(study):
    assert "run 2 completed" in study.swept
    unpicked = invoke("analyze", "accuracy", "--store", study.store)
    assert unpicked.exit_code == 2
    assert "--param point=..." in unpicked.output and "'prune.threshold=0.5', 'prune.threshold=0.95'" in unpicked.output


def test_a_sweep_point_equal_to_run_1_gives_run_1s_answers(study):
    first = study.analysis("accuracy", "--param", "run_id=1")
    assert study.analysis("accuracy", "--param", "point=prune.threshold=0.95") == first
    assert study.analysis("accuracy", "--param", "run_id=1", "--param", "point=") == first  # '' by name
    lower = study.analysis("accuracy", "--param", "point=prune.threshold=0.5")
    assert [r["full"] for r in lower] == [r["full"] for r in first]  # the shared fine-tuning


def test_report_of_one_sweep_point(study, tmp_path):
    reported = invoke("report", "--store", study.store, "--out", tmp_path / "swept", "--point", "prune.threshold=0.5")
    assert reported.exit_code == 0, reported.output
    swept_page = (tmp_path / "swept" / "index.html").read_text()
    assert "[prune.threshold=0.5]" in swept_page and 'src="threshold_sweep.png"' in swept_page
    with Image.open(tmp_path / "swept" / "threshold_sweep.png") as image:
        assert len(image.convert("L").getcolors(maxcolors=1 << 16)) > 10


def test_the_threshold_sweep_sets_sparsity_against_the_threshold(study):
    sweep = [r for r in study.analysis("threshold_sweep") if r["seed"] == "mean"]
    assert [r["threshold"] for r in sweep] == [0.5, 0.95] and sweep[0]["sparsity"] >= sweep[1]["sparsity"]


def test_a_sweeps_first_point_is_its_primary_and_the_others_are_exploratory(study, tmp_path):
    """Run 2 sweeps prune.threshold: [0.95, 0.5] with no analysis.primary_point: 0.95 answers the study."""
    for point, exploratory in (("prune.threshold=0.95", False), ("prune.threshold=0.5", True)):
        reported = invoke("report", "--store", study.store, "--out", tmp_path / point, "--point", point)
        assert reported.exit_code == 0, reported.output
        answers = json.loads((tmp_path / point / "findings.json").read_text())
        assert {json.dumps(a["point"]) for a in answers} == {json.dumps(
            {"label": point, "primary_point": "prune.threshold=0.95", "exploratory": exploratory})}
        assert all(a["sentence"].startswith("Exploratory (") == exploratory for a in answers)
    said = " ".join(study.swept.split())  # the run's own summary says the same of each point
    assert "findings at prune.threshold=0.95 (the primary point)" in said
    assert "findings at prune.threshold=0.5 (exploratory)" in said
