"""Promise 7: every kind of bad input gets a clear message and exit code 2, and writes nothing."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from langspec.cli import app

GOOD = """\
name: t
data: {source: toy, languages: [ka, la], train_per_language: 20, validation_per_language: 5, test_per_language: 5}
model: {tiny: {layers: 1, heads: 2, hidden: 16, intermediate: 32, vocab_size: 100}}
finetune: {epochs: 1}
prune: {enabled: false}
sparse_finetune: {enabled: false}
tracin: {enabled: false}
"""

# (what, spec text, --set overrides, expected fragment of the message)
CASES = [
    ("empty file", "", [], "the spec is empty"),
    ("YAML syntax error", "name: t\ndata: {source: toy\n", [], "invalid YAML"),
    ("list where a mapping is expected", GOOD.replace("finetune: {epochs: 1}", "finetune: [1, 2]"), [], "finetune"),
    ("unknown top-level key", GOOD + "tracing: {}\n", [], "did you mean 'tracin'"),
    ("unknown nested key", GOOD.replace("epochs: 1", "epoch: 1"), [], "did you mean 'epochs'"),
    ("negative size", GOOD.replace("train_per_language: 20", "train_per_language: -5"), [], "greater than or equal to 1"),
    ("NaN learning rate", GOOD.replace("epochs: 1", "epochs: 1, lr: .nan"), [], "finetune.lr: Input should be a finite number (got nan)"),
    ("duplicate languages", GOOD.replace("[ka, la]", "[ka, la, ka]"), [], "listed twice"),
    ("unknown language", GOOD.replace("[ka, la]", "[ka, xx]"), [], "toy data has no language xx"),
    ("a files path that does not exist", GOOD.replace("source: toy", "source: files, path: /no/such/dir"), [], "is not a directory"),
    ("an override of an unknown field", GOOD, ["finetune.epocs=2"], "did you mean 'epochs'"),
    ("an override with a bad value", GOOD, ["finetune.epochs=0"], "greater than or equal to 1"),
    ("a model id while the hub is unreachable", GOOD.replace(
        "model: {tiny: {layers: 1, heads: 2, hidden: 16, intermediate: 32, vocab_size: 100}}", "model: {pretrained: no-such/model}"),
     [], "model 'no-such/model' must come from the Hugging Face hub, but HF_HUB_OFFLINE is set"),
    ("a dataset id while the hub is unreachable", GOOD.replace("source: toy", "source: hub, dataset: facebook/xnli")
     .replace("[ka, la]", "[en, de]"), [], "dataset 'facebook/xnli' must come from the Hugging Face hub"),
]


@pytest.mark.parametrize("what, text, overrides, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_is_refused_before_anything_is_written(what, text, overrides, expected, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    store = tmp_path / "store"
    args = ["run", str(spec), "--store", str(store), "--executor", "local"] + [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split()), result.output
    assert not store.exists()


def test_a_missing_spec_file(tmp_path):
    result = CliRunner().invoke(app, ["run", str(tmp_path / "nope.yaml"), "--store", str(tmp_path / "store")])
    assert result.exit_code == 2 and "spec file not found" in " ".join(result.output.split()) and not (tmp_path / "store").exists()


def test_sql_that_writes_is_refused(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(GOOD))
    store = tmp_path / "store"
    assert CliRunner().invoke(app, ["run", str(spec), "--store", str(store), "--executor", "local"]).exit_code == 0
    for sql in ("DELETE FROM metrics", "DROP TABLE runs", "INSERT INTO meta VALUES ('a', 'b')"):
        result = CliRunner().invoke(app, ["query", sql, "--store", str(store)])
        assert result.exit_code == 2 and "read-only" in result.output, sql
    counted = CliRunner().invoke(app, ["query", "SELECT count(*) AS n FROM metrics WHERE metric = 'accuracy'", "--store", str(store), "--format", "csv"])
    assert counted.output.split() == ["n", "4"]  # 2 languages x 2 splits x 1 epoch: untouched
