"""The data stage: load the examples of every language and split from the spec's source into one
table of the common schema (example_id, language, split, text_a, text_b, label)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_serializer, model_validator

from runners.methods import chatterbot, hub, toy
from runners.context import TaskContext
from runners.errors import DataSourceError
from runners.inputs import Inputs
from runners.stage import MAX_EXAMPLES, MAX_SEED, Planned, Section, StageParams, Upstream, listed_twice
from runners.tables import LABELS_FILE, write_table

VERSION = 2  # 2: writes labels.json, the names of the labels that every checkpoint's id2label carries
READS = ("data",)
RESUMABLE = False
MEMORY_FIELDS = ()  # loading examples needs little memory
TABLES = ("examples",)
SPLITS = ("train", "validation", "test")


TOY_LANGUAGES = ("ka", "kb", "la", "lb", "mi", "na", "nb")
# A language code names a folder (files source, `langspec export`) and goes into shell hints, so it
# is a plain word: en, zh, pt-br, zh_cn, all_languages; never a path or a quote.
LANGUAGE_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class DataSpec(Section):
    source: Literal["toy", "hub", "files", "chatterbot"] = Field(
        "toy",
        description="toy: the built-in synthetic languages (offline); hub: a Hugging Face dataset by id; "
        "files: JSONL/Parquet per language and split under `path`; chatterbot: the chatterbot-corpus package's "
        f"chatbot utterances ({chatterbot.INSTALL}), offline, labelled by category; whole blocks of aligned "
        "conversations go to test, then validation, until each has about its size per language, stratified by "
        "category, so that no translation crosses splits; the rest is train, subsampled to its size.",
    )
    languages: list[str] = Field(
        default=["ka", "kb", "la", "lb", "mi"],
        min_length=1,
        description="Language codes to study. For toy data: ka, kb (family k), la, lb (family l), mi, na, nb (family n). "
        f"For chatterbot: {', '.join(sorted(chatterbot.FOLDERS))}; en, it, ja, ko and uk largely translate one another.",
    )
    train_per_language: int = Field(
        2000, ge=1, le=MAX_EXAMPLES, description="Training examples per language (a subsample for hub/files/chatterbot)."
    )
    validation_per_language: int = Field(
        200, ge=1, le=MAX_EXAMPLES, description="Validation examples per language (chatterbot: about this many)."
    )
    test_per_language: int = Field(200, ge=1, le=MAX_EXAMPLES, description="Test examples per language (chatterbot: about this many).")
    parallel: bool = Field(
        True,
        description="Toy data only: the same underlying items in every language (like XNLI, PAWS-X) "
        "rather than independent items per language (like MARC).",
    )
    lexicon_overlap: float = Field(
        0.5, ge=0.0, le=1.0, description="Toy data only: share of the lexicon that related languages have in common."
    )
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="Seed of data generation and subsampling (independent of the training seeds)."
    )
    shuffle_languages: bool = Field(
        False,
        description="A negative control: permute the language labels of the examples within each split (seeded by "
        "`seed`), so the texts are unchanged, each language keeps its number of examples, and a language's label "
        "says nothing about its text. Every question should then come out not supported.",
    )
    dataset: str | None = Field(
        None,
        description="hub only: a Hugging Face dataset id with one config per language (facebook/xnli, "
        "google-research-datasets/paws-x, mteb/amazon_reviews_multi), or a local directory holding "
        "<language>/ saved with datasets' save_to_disk.",
    )
    path: str | None = Field(None, description="files only: directory holding <language>/<split>.jsonl or .parquet.")
    label_names: list[str] | None = Field(
        None,
        min_length=1,
        description="Names of the labels 0, 1, ... in order, for the checkpoints' id2label. None: the source's own "
        "(toy, XNLI: entailment, neutral, contradiction; PAWS-X: not_paraphrase, paraphrase; MARC: 1 star ... "
        "5 stars; a hub dataset's ClassLabel names where it has them; files: the label ids; chatterbot: the "
        "categories in sorted order).",
    )
    categories: list[str] | None = Field(
        None,
        min_length=1,
        description="chatterbot only: the categories (file names: ai, emotion, ...), the labels in sorted order; None: "
        "all that every language has. example_id is <language>-<category>-c<row>-u<position>: without the language, "
        "its translation group (one ending in -<language> could not be aligned and has a group of its own).",
    )

    @field_validator("languages")
    @classmethod
    def check_language_codes(cls, languages: list[str]) -> list[str]:
        bad = [lang for lang in languages if not LANGUAGE_CODE.fullmatch(lang)]
        if bad:
            raise ValueError(
                f"not a language code: {', '.join(map(repr, bad))}; a code is 1 to 64 letters, digits, _ and -, "
                f"starting with a letter or digit ({LANGUAGE_CODE.pattern}), e.g. en, pt-br, zh_cn"
            )
        return languages

    @field_validator("languages")
    @classmethod
    def check_languages_unique(cls, languages: list[str]) -> list[str]:
        repeated = listed_twice(languages)
        if repeated:
            raise ValueError(f"languages are listed twice: {', '.join(repeated)}; list each once")
        return languages

    @model_validator(mode="after")
    def check_source_fields(self) -> DataSpec:
        if self.source == "toy":
            unknown = [lang for lang in self.languages if lang not in TOY_LANGUAGES]
            if unknown:
                raise ValueError(
                    f"toy data has no language {', '.join(unknown)}; choose from {', '.join(TOY_LANGUAGES)}"
                )
        if self.source == "hub" and not self.dataset:
            raise ValueError("source: hub needs `dataset` (a Hugging Face dataset id, e.g. facebook/xnli)")
        if self.source == "files" and not self.path:
            raise ValueError("source: files needs `path` (a directory with <language>/<split>.jsonl)")
        return self

    @model_validator(mode="after")
    def check_chatterbot_corpus(self) -> DataSpec:
        """Before any run: the package is installed and has every language and category asked for."""
        if self.source != "chatterbot" and self.categories is not None:
            raise ValueError(f"`categories` is for source: chatterbot; leave it out for source: {self.source}")
        try:
            if self.source == "chatterbot":
                chatterbot.categories(list(self.languages), self.categories)
        except DataSourceError as error:
            raise ValueError(str(error)) from None
        return self


SECTIONS = {"data": (DataSpec, Field(default_factory=DataSpec, description="Where the examples come from."))}


class Params(StageParams):
    data: DataSpec
    fingerprint: str  # of the source's content where it lives outside langspec (files, chatterbot); "" for toy

    @model_serializer(mode="wrap")
    def _leave_out_new_defaults(self, handler):
        """Data with its own language labels and no `categories` keeps the task key it had before
        `shuffle_languages` and `categories` existed. Where the fingerprint covers the data's content
        (files, a local hub copy), the directory's name is left out: the key follows the content, not
        where a checkout or a copy lives, so a moved store's results stay cached."""
        dumped = handler(self)
        if not self.data.shuffle_languages:
            dumped["data"].pop("shuffle_languages", None)
        if self.data.categories is None:
            dumped["data"].pop("categories", None)
        if self.fingerprint and self.data.source == "files":
            dumped["data"].pop("path", None)
        if self.fingerprint and self.data.source == "hub":
            dumped["data"].pop("dataset", None)
        return dumped


def check(spec) -> None:
    """No rules across sections."""


def tasks(spec, seed: int, upstream: Upstream) -> Iterator[Planned]:
    if upstream.keys("data"):  # one data task serves every seed
        return
    yield Planned({}, Params(data=spec.data, fingerprint=fingerprint(spec.data)), ())


def run(params: Params, inputs: Inputs, workdir: Path, ctx: TaskContext) -> dict:
    data = params.data
    ctx.report(0, 1, f"loading {data.source} data")
    corpus = _load_chatterbot(data) if data.source == "chatterbot" else None
    rows = corpus.rows if corpus else load_examples(data)
    names = label_names(data, rows)
    if data.shuffle_languages:
        rows = shuffle_languages(rows, data.seed)
    write_table(workdir, "examples", rows)
    (workdir / LABELS_FILE).write_text(json.dumps({"names": names}))
    ctx.report(1, 1, f"{len(rows)} examples")
    counts = {f"{lang}/{split}": 0 for lang in data.languages for split in SPLITS}
    for row in rows:
        counts[f"{row['language']}/{row['split']}"] += 1
    summary = {"examples": len(rows), "num_labels": len(names), "labels": names, "counts": counts}
    return summary | (corpus.summary() if corpus else {})  # chatterbot: unaligned per language/split, duplicates


def load_examples(data: DataSpec) -> list[dict]:
    """The examples of a data section from its source (toy, files, hub or chatterbot), each split
    subsampled to its size with `data.seed`, before `shuffle_languages`: the rows the data stage writes."""
    if data.source == "chatterbot":
        return _load_chatterbot(data).rows
    sizes = {"train": data.train_per_language, "validation": data.validation_per_language, "test": data.test_per_language}
    if data.source == "toy":
        return toy.generate(list(data.languages), sizes, parallel=data.parallel, lexicon_overlap=data.lexicon_overlap, seed=data.seed)
    if data.source == "files":
        return _load_files(Path(data.path), list(data.languages), sizes, data.seed)
    return hub.load(data.dataset, list(data.languages), sizes, data.seed)


def _load_chatterbot(data: DataSpec) -> chatterbot.Corpus:
    """Translation groups that no split crosses (runners.methods.chatterbot says how)."""
    sizes = {"train": data.train_per_language, "validation": data.validation_per_language, "test": data.test_per_language}
    return chatterbot.load(list(data.languages), data.categories, sizes, data.seed)


def shuffle_languages(rows: list[dict], seed: int) -> list[dict]:
    """The rows with their `language` values permuted within each split (texts, labels and ids stay)."""
    out = [dict(row) for row in rows]
    for split in SPLITS:
        indices = [i for i, row in enumerate(out) if row["split"] == split]
        languages = [out[i]["language"] for i in indices]
        random.Random(f"shuffle-languages-{seed}-{split}").shuffle(languages)
        for i, language in zip(indices, languages):
            out[i]["language"] = language
    return out


# --- label names ------------------------------------------------------------------------------


def label_names(data: DataSpec, rows: list[dict]) -> list[str]:
    """The names of labels 0, 1, ...: data.label_names, else the source's own; there is one for
    every label in `rows`."""
    if data.label_names is not None:
        names = list(data.label_names)
    elif data.source == "toy":
        names = list(toy.LABELS)
    elif data.source == "hub":
        names = hub.label_names(data.dataset, data.languages[0])
    elif data.source == "chatterbot":
        names = chatterbot.categories(list(data.languages), data.categories)
    else:  # files carry label ids only
        names = [str(label) for label in range(max(r["label"] for r in rows) + 1)]
    highest = max(r["label"] for r in rows)
    if highest >= len(names):
        raise DataSourceError(
            f"the data has labels 0 to {highest}, but {len(names)} label names ({', '.join(names)}); "
            "list a name for each label in data.label_names"
        )
    return names


# --- source: files ----------------------------------------------------------------------------


def fingerprint(data: DataSpec) -> str:
    """What a task key must know about data that lives outside the spec: sha256 over the files a
    `files` or `chatterbot` source reads, or over the dataset fingerprints and features of a local `hub`
    copy; "" otherwise (toy data follows from the spec; a hub id names its data). Each file counts by
    its name inside the source's directory and its content, never by where the directory is."""
    if data.source == "chatterbot":
        return chatterbot.fingerprint(list(data.languages), data.categories)
    if data.source == "files":
        root = Path(data.path)
        files = sorted(_source_files(root, list(data.languages)).values())
    elif data.source == "hub" and Path(data.dataset).is_dir():
        root = Path(data.dataset)  # <language>/<split>/state.json holds the split's fingerprint; dataset_info.json its labels
        files = sorted([*root.glob("*/*/state.json"), *root.glob("*/*/dataset_info.json")])
    else:
        return ""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _source_files(root: Path, languages: list[str]) -> dict[tuple[str, str], Path]:
    if not root.is_dir():
        raise DataSourceError(f"data.path {root} is not a directory; it should hold <language>/<split>.jsonl or .parquet")
    found, missing, empty = {}, [], []
    for language in languages:
        for split in SPLITS:
            candidates = [root / language / f"{split}.{ext}" for ext in ("jsonl", "parquet")]
            existing = [c for c in candidates if c.is_file()]
            if not existing:
                missing.append(f"{language}/{split}.jsonl")
            elif existing[0].stat().st_size == 0:
                empty.append(str(existing[0].relative_to(root)))
            else:
                found[(language, split)] = existing[0]
    if missing:
        raise DataSourceError(f"data.path {root} lacks {', '.join(missing)} (JSONL or Parquet)")
    if empty:
        raise DataSourceError(f"data.path {root}: {', '.join(empty)} are empty; every language needs examples in every split")
    return found


def _load_files(root: Path, languages: list[str], sizes: dict[str, int], seed: int) -> list[dict]:
    rows = []
    for (language, split), path in _source_files(root, languages).items():
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            records = pq.read_table(path).to_pylist()
        if len(records) > sizes[split]:
            records = random.Random(f"{seed}-{language}-{split}").sample(records, sizes[split])
        for index, record in enumerate(records):
            missing = {"text_a", "label"} - record.keys()
            if missing:
                raise DataSourceError(f"{path} record {index} lacks {', '.join(sorted(missing))}")
            rows.append(
                {
                    "example_id": str(record.get("example_id", f"{language}-{split}-{index:06d}")),
                    "language": language,
                    "split": split,
                    "text_a": record["text_a"],
                    "text_b": record.get("text_b"),
                    "label": int(record["label"]),
                }
            )
    return rows
