"""The `langspec` command end to end: run, cached re-run, query, validate, plan, status."""

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


def test_whole_study_end_to_end_and_named_queries(small_spec, tmp_path, ray_session):
    store = tmp_path / "results"
    stages = ["prune.enabled=true", "sparse_finetune.enabled=true", "tracin.enabled=true", "analysis.top_k=5",
              "tracin.train_per_language=10", "tracin.test_per_language=3"]
    result = invoke("run", small_spec, "--store", store, *[a for s in stages for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert "run 1 completed: 9 ran" in result.output  # data, finetune, 2 x prune, mask_transfer, sft, 3 x tracin
    assert "findings (langspec report" in result.output and "Q2 Subnetworks rely more on in-language data:" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("  one seed gives no intervals")  # the summary ends with the verdicts
    assert all(variant in result.output for variant in ("full", "subnetwork", "sft"))

    def rows(*args):
        return json.loads(invoke("query", *args, "--store", store, "--format", "json").output)

    grid = rows("SELECT language, count(*) AS heads FROM subnetworks GROUP BY 1 ORDER BY 1")
    assert grid == [{"language": "ka", "heads": 4}, {"language": "la", "heads": 4}]  # 2 layers x 2 heads
    variants = rows("SELECT variant, count(DISTINCT language) AS languages FROM metrics WHERE split = 'test' GROUP BY 1 ORDER BY 1")
    assert variants == [{"variant": v, "languages": 2} for v in ("full", "sft", "subnetwork")]
    influence = rows("SELECT variant, count(*) AS n FROM influence GROUP BY 1 ORDER BY 1")
    assert influence == [{"variant": v, "n": 2 * 3 * 2 * 10 * 2} for v in ("full", "sft", "subnetwork")]  # epochs x test x train
    jaccard = rows("SELECT * FROM subnetwork_jaccard")  # a parameterless analysis is a view
    assert {(r["language_a"], r["language_b"]) for r in jaccard} == {(a, b) for a in ("ka", "la") for b in ("ka", "la")}
    assert all(r["jaccard"] == 1.0 for r in jaccard if r["language_a"] == r["language_b"])

    def analysis(*args):
        result = invoke("analyze", *args, "--store", store, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    layers = analysis("subnetwork_grid", "--param", "language=la")
    assert [r["layer"] for r in layers] == [0, 1] and all(len(r["heads"].split()) == 2 for r in layers)
    names = ["accuracy", "in_language_share", "specialization", "cross_language", "subnetwork_similarity",
             "similarity_vs_influence", "dynamics", "influence_mass"]
    results = {name: analysis(name) for name in names}  # run_id and k default to run 1 and analysis.top_k
    assert all(results[name] for name in names)
    assert {r["variant"] for r in results["in_language_share"]} == {"full", "subnetwork", "sft"}
    assert {r["epoch"] for r in results["dynamics"]} == {1, 2}
    fewer = analysis("in_language_share", "--param", "k=1")
    assert fewer != results["in_language_share"]
    missing = invoke("analyze", "subnetwork_grid", "--store", store)
    assert missing.exit_code == 2 and "--param language=..." in missing.output
    listed = invoke("analyze")
    assert all(name in listed.output for name in names)

    reported = invoke("report", "--store", store, "--out", tmp_path / "report")
    assert reported.exit_code == 0, reported.output
    page = (tmp_path / "report" / "index.html").read_text()
    figures = ["accuracy", "in_language_share", "cross_language", "masks", "jaccard", "similarity_vs_influence", "dynamics"]
    from PIL import Image

    for figure in figures:
        path = tmp_path / "report" / f"{figure}.png"
        assert f'src="{figure}.png"' in page
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 150
            assert len(image.convert("L").getcolors(maxcolors=1 << 16)) > 10  # not a blank canvas
    written = json.loads((tmp_path / "report" / "findings.json").read_text())
    assert [f["question"] for f in written] == ["Q1", "Q2", "Q3", "Q4", "Q5", "P1"]
    for finding in written:  # the page's first section is findings.json's sentences
        assert finding["interval"] is None  # one seed: no interval over seeds
        assert finding["verdict"] in ("inconclusive", "not supported") and finding["sentence"][:40] in page
    assert page.index("<h2>Findings</h2>") < page.index("<section>")
    transfer = analysis("mask_transfer")
    assert {(r["language"], r["mask_language"]) for r in transfer} == {(a, b) for a in ("ka", "la") for b in ("ka", "la")}
    for bad in ("0", "20", "-1"):  # 0 < k < 20, the training examples TracIn scored
        refused = invoke("report", "--store", store, "--k", bad, "--out", tmp_path / "bad")
        assert refused.exit_code == 2 and "k (proponents per test example) must be" in refused.output, refused.output
    assert invoke("analyze", "in_language_share", "--param", "k=0", "--store", store).exit_code == 2
    unknown = invoke("analyze", "in_language_share", "--param", "kk=3", "--store", store)
    assert unknown.exit_code == 2 and "not kk" in unknown.output
    assert not (tmp_path / "bad").exists()

    # A second run sweeps the prune threshold: its analyses take one point at a time. The point
    # 0.95 is run 1's study again (all cached); the point 0.5 shares its fine-tuning.
    swept = invoke("run", small_spec, "--store", store, *[a for s in stages for a in ("--set", s)],
                   "--set", "sweep={prune.threshold: [0.95, 0.5]}")
    assert swept.exit_code == 0, swept.output
    assert "run 2 completed" in swept.output
    unpicked = invoke("analyze", "accuracy", "--store", store)
    assert unpicked.exit_code == 2
    assert "--param point=..." in unpicked.output and "'prune.threshold=0.5', 'prune.threshold=0.95'" in unpicked.output
    same = analysis("accuracy", "--param", "point=prune.threshold=0.95")
    assert same == results["accuracy"]
    lower = analysis("accuracy", "--param", "point=prune.threshold=0.5")
    assert [r["full"] for r in lower] == [r["full"] for r in same]  # the shared fine-tuning
    assert analysis("accuracy", "--param", "run_id=1") == results["accuracy"]  # run 1's only point is the default
    assert analysis("accuracy", "--param", "run_id=1", "--param", "point=") == results["accuracy"]  # '' by name
    reported = invoke("report", "--store", store, "--out", tmp_path / "swept", "--point", "prune.threshold=0.5")
    assert reported.exit_code == 0, reported.output
    swept_page = (tmp_path / "swept" / "index.html").read_text()
    assert "[prune.threshold=0.5]" in swept_page and 'src="threshold_sweep.png"' in swept_page
    with Image.open(tmp_path / "swept" / "threshold_sweep.png") as image:
        assert len(image.convert("L").getcolors(maxcolors=1 << 16)) > 10
    sweep = [r for r in analysis("threshold_sweep") if r["seed"] == "mean"]
    assert [r["threshold"] for r in sweep] == [0.5, 0.95] and sweep[0]["sparsity"] >= sweep[1]["sparsity"]
