"""Every data source names its labels (labels.json beside the examples): what the checkpoints'
id2label carries."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from runners.data import DataSpec, Params, run, shuffle_languages
from runners import data
from runners.methods import toy
from runners.context import TaskContext
from runners.inputs import Data, Inputs
from store.artifacts import table_path


def run_data(spec: DataSpec, workdir) -> list[str]:
    data.run(data.Params(data=spec, fingerprint=data.fingerprint(spec)), Inputs({}), workdir, TaskContext())
    return Data(workdir).label_names()


def write_files(root, labels: list[int]) -> None:
    for language in ("en", "de"):
        for split in data.SPLITS:
            path = root / language / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({"text_a": f"t{i}", "label": label}) + "\n" for i, label in enumerate(labels)))


def test_toy_labels_are_the_nli_labels(tmp_path):
    spec = DataSpec(languages=["ka"], train_per_language=30, validation_per_language=5, test_per_language=5)
    assert run_data(spec, tmp_path / "task") == ["entailment", "neutral", "contradiction"] == list(toy.LABELS)
    rows = Data(tmp_path / "task").examples()
    assert {r["label"] for r in rows} == {toy.ENTAILMENT, toy.NEUTRAL, toy.CONTRADICTION}


def test_files_labels_are_their_ids_unless_the_spec_names_them(tmp_path):
    write_files(tmp_path / "files", [0, 1, 3, 1])
    spec = DataSpec(source="files", path=str(tmp_path / "files"), languages=["en", "de"])
    assert run_data(spec, tmp_path / "ids") == ["0", "1", "2", "3"]
    named = spec.model_copy(update={"label_names": ["bad", "poor", "good", "great"]})
    assert run_data(named, tmp_path / "named") == ["bad", "poor", "good", "great"]
    too_few = spec.model_copy(update={"label_names": ["bad", "good"]})
    with pytest.raises(data.DataSourceError, match="labels 0 to 3, but 2 label names \\(bad, good\\)"):
        run_data(too_few, tmp_path / "too_few")


def test_shuffled_languages_keep_texts_and_counts_and_lose_their_language(tmp_path):
    """The negative control: within each split the language labels are a permutation of the real
    ones, the texts and labels stay, and a label no longer tells the language: about 1/5 of the rows
    keep their own; the ordinary data task keeps its key."""
    spec = DataSpec(languages=["ka", "kb", "la", "lb", "mi"], train_per_language=60, validation_per_language=10, test_per_language=10)
    rows = toy.generate(list(spec.languages), {"train": 60, "validation": 10, "test": 10}, parallel=True, lexicon_overlap=0.5, seed=0)
    shuffled = shuffle_languages(rows, seed=0)
    assert [(r["example_id"], r["text_a"], r["text_b"], r["label"], r["split"]) for r in shuffled] == [
        (r["example_id"], r["text_a"], r["text_b"], r["label"], r["split"]) for r in rows]
    for split in ("train", "validation", "test"):
        assert Counter(r["language"] for r in shuffled if r["split"] == split) == Counter(r["language"] for r in rows if r["split"] == split)
    kept = sum(a["language"] == b["language"] for a, b in zip(rows, shuffled)) / len(rows)
    assert 0.1 < kept < 0.3  # a permutation of 5 equal groups keeps 1/5 in expectation
    assert shuffle_languages(rows, seed=0) == shuffled and shuffle_languages(rows, seed=1) != shuffled
    ordinary = Params(data=spec, fingerprint="").model_dump(mode="json")
    assert "shuffle_languages" not in ordinary["data"]
    control = Params(data=spec.model_copy(update={"shuffle_languages": True}), fingerprint="").model_dump(mode="json")
    assert control["data"]["shuffle_languages"] is True
    run(Params(data=spec.model_copy(update={"shuffle_languages": True}), fingerprint=""), Inputs({}), tmp_path, TaskContext())
    stored = pq.read_table(table_path(tmp_path, "examples")).to_pylist()
    assert sorted((r["example_id"], r["language"]) for r in stored) == sorted((r["example_id"], r["language"]) for r in shuffled)
