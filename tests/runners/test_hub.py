"""source: hub and model.pretrained on local copies in the hub's own formats (nothing can be
downloaded here): datasets saved with save_to_disk in each dataset's column layout, and a model
and tokenizer saved with save_pretrained. The loading and mapping code is the real one."""

from __future__ import annotations

import json

import datasets
import pyarrow.parquet as pq
import pytest

from runners import data, finetune
from runners.context import TaskContext
from runners.data import DataSpec
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.methods import models
from runners.inputs import Data, Inputs
from store.artifacts import table_path


def hub(dataset, languages: list[str], seed: int = 0) -> DataSpec:
    """A hub data section of 6 train, 3 validation and 3 test examples per language."""
    return DataSpec(source="hub", dataset=str(dataset), languages=languages, train_per_language=6,
                    validation_per_language=3, test_per_language=3, seed=seed)


LAYOUTS = {
    "xnli": lambda i: {"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3},
    "pawsx": lambda i: {"id": i, "sentence1": f"s{i}", "sentence2": f"t{i}", "label": i % 2},
    "marc": lambda i: {"review_id": f"r{i}", "review_body": f"review {i}", "review_title": "t", "stars": 1 + i % 5},
    "marc_mteb": lambda i: {"id": f"r{i}", "text": f"review {i}", "label": i % 5, "label_text": str(i % 5)},
}


def save_hub_copy(root, layout: str, languages=("en", "de"), n=10):
    for language in languages:
        splits = {split: datasets.Dataset.from_list([LAYOUTS[layout](i) for i in range(n)]) for split in data.SPLITS}
        datasets.DatasetDict(splits).save_to_disk(str(root / language))
    return root


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_maps_to_the_common_schema(layout, tmp_path):
    source = save_hub_copy(tmp_path / layout, layout)
    spec = DataSpec(source="hub", dataset=str(source), languages=["en", "de"], train_per_language=6,
                    validation_per_language=3, test_per_language=3)
    data.run(data.Params(data=spec, fingerprint=data.fingerprint(spec)), Inputs({}), tmp_path / "task", TaskContext())
    rows = pq.read_table(table_path(tmp_path / "task", "examples")).to_pylist()
    assert len(rows) == 2 * (6 + 3 + 3)
    for row in rows:
        index = int(row["example_id"].rsplit("-", 1)[1])  # the row of the source it came from
        original = LAYOUTS[layout](index)
        expected = {
            "xnli": (original.get("premise"), original.get("hypothesis"), original.get("label")),
            "pawsx": (original.get("sentence1"), original.get("sentence2"), original.get("label")),
            "marc": (original.get("review_body"), None, original.get("stars", 0) - 1),
            "marc_mteb": (original.get("text"), None, original.get("label")),
        }[layout]
        assert (row["text_a"], row["text_b"], row["label"]) == expected
    # The subsample is deterministic and depends on data.seed.
    again = data.load_examples(hub(source, ["en", "de"], 0))
    assert [r["example_id"] for r in again] == [r["example_id"] for r in rows]
    other = data.load_examples(hub(source, ["en", "de"], 1))
    assert [r["example_id"] for r in other] != [r["example_id"] for r in rows]


def test_unlabelled_rows_are_dropped_and_bad_layouts_explained(tmp_path):
    root = tmp_path / "nli"
    for language in ("en",):
        splits = {split: datasets.Dataset.from_list(
            [{"premise": "a", "hypothesis": "b", "label": -1 if split == "test" else 0}] * 4) for split in data.SPLITS}
        datasets.DatasetDict(splits).save_to_disk(str(root / language))
    rows = data.load_examples(hub(root, ["en"], 0))
    assert {r["split"] for r in rows} == {"train", "validation"}
    odd = tmp_path / "odd"
    datasets.DatasetDict({s: datasets.Dataset.from_list([{"question": "q", "answer": 1}]) for s in data.SPLITS}).save_to_disk(str(odd / "en"))
    with pytest.raises(data.DataSourceError, match="has columns question, answer.*source: files"):
        data.load_examples(hub(odd, ["en"], 0))
    with pytest.raises(data.DataSourceError, match="has no fr/"):
        data.load_examples(hub(root, ["fr"], 0))


def test_a_hub_id_offline_says_what_to_do():
    with pytest.raises(data.DataSourceError, match="could not load 'facebook/xnli' \\(en\\).*save_to_disk"):
        data.load_examples(hub("facebook/xnli", ["en"], 0))
    with pytest.raises(models.ModelSourceError, match="could not load model 'xlm-roberta-base'.*model.pretrained: DIR"):
        models.build_tokenizer(ModelSpec(pretrained="xlm-roberta-base"), [])


def test_local_fingerprint_follows_the_data(tmp_path):
    source = save_hub_copy(tmp_path / "x", "xnli")
    spec = DataSpec(source="hub", dataset=str(source), languages=["en", "de"])
    before = data.fingerprint(spec)
    assert before and data.fingerprint(DataSpec(source="hub", dataset="facebook/xnli", languages=["en"])) == ""
    save_hub_copy(tmp_path / "x", "xnli", n=11)  # the copy changed: the data task must run again
    assert data.fingerprint(spec) != before


def test_fine_tuning_a_pretrained_checkpoint_from_a_local_copy(tmp_path):
    """model.pretrained: a directory in the hub's format (config, weights, tokenizer files)."""
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    source = save_hub_copy(tmp_path / "xnli", "xnli")
    rows = data.load_examples(hub(source, ["en", "de"], 0))
    tokenizer = models.train_tokenizer([t for r in rows for t in (r["text_a"], r["text_b"])], 100)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32, max_position_embeddings=40, pad_token_id=1, type_vocab_size=1)
    base = tmp_path / "xlm-roberta-tiny"
    XLMRobertaForMaskedLM(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    assert json.loads((base / "config.json").read_text())["model_type"] == "xlm-roberta"

    spec = DataSpec(source="hub", dataset=str(source), languages=["en", "de"], train_per_language=6,
                    validation_per_language=3, test_per_language=3)
    data.run(data.Params(data=spec, fingerprint=""), Inputs({}), tmp_path / "data", TaskContext())
    params = finetune.Params(seed=0, model=ModelSpec(pretrained=str(base)),
                             finetune=FinetuneSpec(epochs=1, batch_size=4, max_length=16))
    summary = finetune.run(params, Inputs({"data": tmp_path / "data"}), tmp_path / "ft", TaskContext())
    assert set(summary["test_accuracy"]) == {"en", "de"}
    model, _ = models.load_checkpoint(tmp_path / "ft" / "checkpoints" / "epoch-1")
    pretrained = XLMRobertaForMaskedLM.from_pretrained(base)
    # The encoder started from the saved weights (one epoch at lr 2e-5 moves them only a little).
    start = pretrained.roberta.embeddings.word_embeddings.weight
    assert (model.roberta.embeddings.word_embeddings.weight - start).abs().max() < 1e-3
    # The checkpoint names XNLI's labels, and its tokenizer knows how long an input it was trained on.
    assert model.config.id2label == {0: "entailment", 1: "neutral", 2: "contradiction"}
    tokenizer = models.AutoTokenizer.from_pretrained(tmp_path / "ft" / "checkpoints" / "epoch-1")
    assert tokenizer.model_max_length == 16


@pytest.mark.parametrize("layout, class_names, expected", [
    ("xnli", None, ["entailment", "neutral", "contradiction"]),
    ("xnli", ["yes", "maybe", "no"], ["yes", "maybe", "no"]),  # a dataset's own ClassLabel names win
    ("pawsx", ["0", "1"], ["not_paraphrase", "paraphrase"]),  # PAWS-X's ClassLabel names are digits
    ("marc", None, ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]),
    ("marc_mteb", None, ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]),
])
def test_each_hub_layout_names_its_labels(layout, class_names, expected, tmp_path):
    root = tmp_path / layout
    for language in ("en", "de"):
        splits = {split: datasets.Dataset.from_list([LAYOUTS[layout](i) for i in range(10)]) for split in data.SPLITS}
        if class_names:
            splits = {s: d.cast_column("label", datasets.ClassLabel(names=class_names)) for s, d in splits.items()}
        datasets.DatasetDict(splits).save_to_disk(str(root / language))
    spec = DataSpec(source="hub", dataset=str(root), languages=["en", "de"], train_per_language=6,
                    validation_per_language=3, test_per_language=3)
    summary = data.run(data.Params(data=spec, fingerprint=""), Inputs({}), tmp_path / "task", TaskContext())
    assert Data(tmp_path / "task").label_names() == expected == summary["labels"]
    renamed = spec.model_copy(update={"label_names": [f"class {i}" for i in range(len(expected))]})
    data.run(data.Params(data=renamed, fingerprint=""), Inputs({}), tmp_path / "renamed", TaskContext())
    assert Data(tmp_path / "renamed").label_names() == renamed.label_names  # the spec's names win
