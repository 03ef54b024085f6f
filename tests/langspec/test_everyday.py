"""langspec with the tools researchers already use: pipes and scripts, --help and --version, the
DuckDB CLI (an older DuckDB than the one that writes the store), one report per run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langspec.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def study(everyday_study) -> dict:
    """{"spec": path, "store": path} of a store that one real run of the whole study made (conftest.py)."""
    return everyday_study


def analysis(store: Path, *args) -> list[dict]:
    result = invoke("analyze", *args, "--store", store, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_version_names_every_package():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.splitlines() == [f"{p} {metadata.version(p)}" for p in ("langspec", "torch", "transformers", "ray", "duckdb")]


@pytest.mark.parametrize("command", [[], ["validate"], ["plan"], ["run"], ["query"], ["analyze"], ["report"], ["status"], ["export"], ["schema"], ["verify"]])
def test_help_has_no_type_placeholders(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    for placeholder in ("<bool>", "<list", "<str>", "<path>", "<int>", "{spec}", "{sql}", "…"):
        assert placeholder not in result.output, (command, placeholder)
    if not command:  # a command's summary is its first sentence, whole
        assert "Run one of the study's analyses; without NAME, list them." in " ".join(result.output.split())
        assert "run_id defaults" not in result.output


def test_validate_shows_a_value_error_next_to_an_unknown_key(spec_file):
    path = spec_file("name: t\nmodel: {tiny: {layers: 2}}\n")
    result = invoke("validate", path, "--set", "finetune.lrr=1", "--set", "finetune.lr=abc")
    assert result.exit_code == 2 and "2 problems" in result.output
    assert "unknown field 'lrr'; did you mean 'lr'?" in result.output and "'abc'" in result.output


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
    from langspec.science.report import report_dir

    assert report_dir(store, 4, "prune.threshold=0.9") == store / "report" / "run-4" / "prune.threshold=0.9"


# --- checkpoints in Hugging Face tools ----------------------------------------------------------


def store_rows(store: Path, sql: str) -> list[dict]:
    return json.loads(invoke("query", sql, "--store", store, "--format", "json").output)


def held_out_examples(store: Path, language: str) -> list[dict]:
    return store_rows(store, f"SELECT text_a, text_b, label FROM examples WHERE split = 'test' AND language = '{language}' ORDER BY example_id")


def stored_accuracy(store: Path, variant: str, language: str) -> float:
    [row] = store_rows(store, f"SELECT value FROM final_metrics WHERE variant = '{variant}' AND language = '{language}' AND split = 'test' AND metric = 'accuracy'")
    return row["value"]


def pipeline_accuracy(classify, examples: list[dict]) -> tuple[float, list[str]]:
    predicted = [p["label"] for p in classify([{"text": e["text_a"], "text_pair": e["text_b"]} for e in examples])]
    label2id = classify.model.config.label2id
    return sum(label2id[p] == e["label"] for p, e in zip(predicted, examples)) / len(examples), predicted


def test_a_checkpoint_classifies_in_a_plain_pipeline(study):
    from transformers import pipeline

    store = study["store"]
    [last] = store_rows(store, "SELECT path FROM checkpoints WHERE variant = 'full' ORDER BY epoch DESC LIMIT 1")
    classify = pipeline("text-classification", model=str(store / last["path"]))
    assert classify.model.config.id2label == {0: "entailment", 1: "neutral", 2: "contradiction"}
    assert classify.tokenizer.model_max_length == 32  # finetune.max_length
    first = held_out_examples(store, "ka")[0]
    answer = classify({"text": first["text_a"], "text_pair": first["text_b"]})
    assert answer["label"] in ("entailment", "neutral", "contradiction") and 0 < answer["score"] <= 1
    for language in ("ka", "la"):  # the pipeline's predictions are the ones langspec scored
        accuracy, _ = pipeline_accuracy(classify, held_out_examples(store, language))
        assert accuracy == pytest.approx(stored_accuracy(store, "full", language), abs=1e-12)
    # An input longer than the model was trained on is cut at model_max_length when asked to.
    long = {"text": " ".join([first["text_a"]] * 20), "text_pair": first["text_b"]}
    assert classify(long, truncation=True)["label"] in classify.model.config.label2id


def test_an_exported_subnetwork_reproduces_the_stored_accuracy(study, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from langspec.science.subnetwork import apply_head_mask

    store = study["store"]
    exported = invoke("export", tmp_path / "subnetworks", "--store", store)
    assert exported.exit_code == 0, exported.output
    changed = 0
    for language in ("ka", "la"):
        document = json.loads((tmp_path / "subnetworks" / "seed-0" / language / "subnetwork.json").read_text())
        assert len(document["head_mask"]) == 2 and all(len(layer) == 4 for layer in document["head_mask"])
        assert 0 < sum(map(sum, document["head_mask"])) < 8  # some heads kept, some masked
        examples = held_out_examples(store, language)
        for variant in ("subnetwork", "sft"):
            checkpoint = document["checkpoints"][variant]
            model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
            tokenizer = AutoTokenizer.from_pretrained(checkpoint)
            assert model.config.id2label == {0: "entailment", 1: "neutral", 2: "contradiction"} and tokenizer.model_max_length == 32
            _, unmasked = pipeline_accuracy(pipeline("text-classification", model=model, tokenizer=tokenizer), examples)
            apply_head_mask(model, document["head_mask"])
            accuracy, masked = pipeline_accuracy(pipeline("text-classification", model=model, tokenizer=tokenizer), examples)
            assert accuracy == pytest.approx(stored_accuracy(store, variant, language), abs=1e-12), (language, variant)
            assert accuracy == pytest.approx(document["test_accuracy"][variant], abs=1e-12)
            changed += masked != unmasked
    assert changed  # the mask matters: without it some predictions differ
    # A masked model saves as an ordinary checkpoint that a plain pipeline runs as the subnetwork.
    model.save_pretrained(tmp_path / "la-sft")
    tokenizer.save_pretrained(tmp_path / "la-sft")
    saved, _ = pipeline_accuracy(pipeline("text-classification", model=str(tmp_path / "la-sft")), examples)
    assert saved == pytest.approx(stored_accuracy(store, "sft", "la"), abs=1e-12)


def test_an_empty_answer_says_which_stage_its_run_lacks(study):
    store = study["store"]
    for name, said in (("ablation_effect", "no rows: run 1 has no ablation tasks: ablation.enabled is false"),
                       ("influence_validity", "no rows: run 1 has no ablation tasks: ablation.enabled is false"),
                       ("planted_recovery", "no rows: run 1 has no planted modules: its spec has no `planted:` section")):
        result = runner.invoke(app, ["analyze", name, "--store", str(store), "--format", "json", "--param", "run_id=1"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == [] and said in result.stderr  # stdout stays JSON
    for name in ("accuracy", "in_language_share", "mask_transfer"):  # their stages ran: rows, and nothing said
        result = runner.invoke(app, ["analyze", name, "--store", str(store), "--format", "json", "--param", "run_id=1"])
        assert json.loads(result.stdout) and "no rows" not in result.stderr
