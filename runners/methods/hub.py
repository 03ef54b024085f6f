"""The `hub` data source: the examples of a Hugging Face dataset with one config per language, by id or
from a local save_to_disk copy, mapped to the data stage's common schema by their column layout
(runners.data; its `fingerprint` covers a local copy)."""

from __future__ import annotations

import random
from pathlib import Path

from runners.errors import DataSourceError

SPLITS = ("train", "validation", "test")  # the data stage's

STARS = ("1 star", "2 stars", "3 stars", "4 stars", "5 stars")  # MARC: stars 1-5 are labels 0-4
# Each hub layout's label names, for datasets whose label column does not name them itself.
LABELS = {
    "premise/hypothesis": ("entailment", "neutral", "contradiction"),  # XNLI's order
    "sentence1/sentence2": ("not_paraphrase", "paraphrase"),  # PAWS-X: 1 = paraphrase
    "review_body/stars": STARS,
    "text/label": STARS,
}


# How a dataset's columns map to the common schema, recognised by its column names:
# NLI (XNLI), paraphrase pairs (PAWS-X), and reviews (MARC: review text; stars 1-5 become labels
# 0-4, or an existing 0-4 `label`).
LAYOUTS = {
    "premise/hypothesis": (("premise", "hypothesis", "label"), lambda r: (r["premise"], r["hypothesis"], r["label"])),
    "sentence1/sentence2": (("sentence1", "sentence2", "label"), lambda r: (r["sentence1"], r["sentence2"], r["label"])),
    "review_body/stars": (("review_body", "stars"), lambda r: (r["review_body"], None, r["stars"] - 1)),
    "text/label": (("text", "label"), lambda r: (r["text"], None, r["label"])),
}


def load(dataset: str, languages: list[str], sizes: dict[str, int], seed: int) -> list[dict]:
    """The examples of every language and split, each split subsampled to its size in `sizes` with `seed`;
    unlabelled rows left out."""
    rows = []
    for language in languages:
        splits = _splits(dataset, language)
        for split in SPLITS:
            if split not in splits:
                raise DataSourceError(f"{dataset} ({language}) has no {split} split; it has {', '.join(splits)}")
            table = splits[split]
            layout = _layout(table.column_names, dataset)
            columns, to_example = LAYOUTS[layout]
            indices = list(range(len(table)))
            if len(indices) > sizes[split]:
                indices = sorted(random.Random(f"{seed}-{language}-{split}").sample(indices, sizes[split]))
            for index, record in zip(indices, table.select(indices).select_columns(list(columns)).to_list()):
                text_a, text_b, label = to_example(record)
                if label is None or label < 0:  # unlabelled rows (e.g. a test split without gold labels)
                    continue
                rows.append({"example_id": f"{language}-{split}-{index:06d}", "language": language, "split": split,
                             "text_a": text_a, "text_b": text_b, "label": int(label)})
    return rows


def _splits(dataset: str, language: str):
    """The DatasetDict of one language: from a local save_to_disk copy, or downloaded from the hub."""
    import datasets

    local = Path(dataset)
    if local.is_dir():
        if not (local / language).is_dir():
            raise DataSourceError(f"data.dataset {dataset} has no {language}/ (saved with save_to_disk per language)")
        return datasets.load_from_disk(str(local / language))
    try:
        return datasets.load_dataset(dataset, language)
    except Exception as error:  # network, unknown id or config: say what to do instead
        raise DataSourceError(
            f"could not load {dataset!r} ({language}) from the Hugging Face hub: {type(error).__name__}: "
            f"{' '.join(str(error).split())} "
            "Without internet, save it where there is: datasets.load_dataset(ID, LANG).save_to_disk(DIR/LANG) "
            "for each language, copy DIR here and set data.dataset: DIR; or use source: files"
        ) from None


def _layout(columns: list[str], dataset: str) -> str:
    for name, (needed, _) in LAYOUTS.items():
        if set(needed) <= set(columns):
            return name
    raise DataSourceError(
        f"{dataset} has columns {', '.join(columns)}; langspec reads "
        + "; ".join(" + ".join(needed) for needed, _ in LAYOUTS.values())
        + ". Convert it to JSONL per language and split and use source: files"
    )


def label_names(dataset: str, language: str) -> list[str]:
    """The names a hub dataset gives its labels (a ClassLabel with words, like XNLI's), else its layout's."""
    train = _splits(dataset, language)["train"]
    feature = train.features.get("label")
    names = getattr(feature, "names", None)
    if names and not all(name.isdigit() for name in names):  # PAWS-X's ClassLabel names are "0", "1"
        return list(names)
    return list(LABELS[_layout(train.column_names, dataset)])
