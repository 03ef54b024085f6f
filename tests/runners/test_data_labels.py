"""Every data source names its labels (labels.json beside the examples): what the checkpoints'
id2label carries."""

from __future__ import annotations

import json

import pytest

from runners.data import DataSpec
from runners import data
from runners.methods import toy
from runners.context import TaskContext
from runners.inputs import Data, Inputs


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
