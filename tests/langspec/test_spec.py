"""Every validator of the spec models: one passing and one failing case each, with the message."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from langspec.load import load_spec
from langspec.spec import Spec, json_schema
from runners.data import DataSpec
from runners.methods.sections import FinetuneSpec, ModelSpec, TinyModelSpec

SPECS = sorted((Path(__file__).parents[2] / "specs").glob("*.yaml"))
TINY = {"tiny": {"layers": 2}}


def fails(section, message: str, **fields) -> None:
    with pytest.raises(ValidationError, match=message):
        section(**fields)


def test_languages_unique():
    assert DataSpec(languages=["ka", "kb"]).languages == ["ka", "kb"]
    fails(DataSpec, "languages are listed twice: ka", languages=["ka", "kb", "ka"])


def test_language_codes_are_plain_words():
    for codes in (["ka", "kb", "la", "lb", "mi", "na", "nb"], ["en", "zh", "de", "pt-br", "zh_cn", "all_languages", "X" * 64]):
        assert DataSpec(source="files", path="/data", languages=codes).languages == codes
    for code in ("../../../escaped", "/abs/x", 'ka"; touch x', "en\n", "_x", "-x", "é", "", "X" * 65):
        fails(DataSpec, f"not a language code: {re.escape(repr(code))}; a code is 1 to 64 letters",
              source="files", path="/data", languages=["en", code])


def test_toy_languages_known():
    fails(DataSpec, "toy data has no language xx; choose from ka, kb", languages=["ka", "xx"])
    assert DataSpec(source="files", path="/data", languages=["xx"]).languages == ["xx"]


def test_hub_needs_dataset_and_files_need_path():
    fails(DataSpec, "source: hub needs `dataset`", source="hub", languages=["en"])
    assert DataSpec(source="hub", dataset="facebook/xnli", languages=["en"]).dataset == "facebook/xnli"
    fails(DataSpec, "source: files needs `path`", source="files", languages=["en"])


def test_sizes_positive():
    fails(DataSpec, "greater than or equal to 1", train_per_language=-5)


def test_tiny_hidden_divisible_by_heads():
    assert TinyModelSpec(hidden=64, heads=4).hidden == 64
    fails(TinyModelSpec, r"hidden \(66\) must be divisible by heads \(4\)", hidden=66, heads=4)


def test_model_exactly_one_of_pretrained_and_tiny():
    assert ModelSpec(pretrained="xlm-roberta-base").tiny is None
    fails(ModelSpec, "give exactly one of `pretrained`", pretrained="xlm-roberta-base", tiny={})
    fails(ModelSpec, "give exactly one of `pretrained`")


def test_lr_finite_and_positive():
    assert FinetuneSpec(lr=1e-4).lr == 1e-4
    fails(FinetuneSpec, "Input should be a finite number", lr=math.inf)
    fails(FinetuneSpec, "greater than 0", lr=0.0)
    fails(FinetuneSpec, "greater than 0|finite", lr=math.nan)


def test_seeds_unique():
    assert Spec(name="s", model=TINY, seeds=[0, 1]).seeds == [0, 1]
    fails(Spec, "seeds are listed twice", name="s", model=TINY, seeds=[1, 1])


def test_stage_dependencies():
    assert Spec(name="s", model=TINY).tracin.variants == ["full", "subnetwork", "sft"]
    fails(Spec, "sparse_finetune needs the subnetworks", name="s", model=TINY, prune={"enabled": False})
    fails(Spec, r"tracin variants \['subnetwork'\] need prune enabled", name="s", model=TINY,
          prune={"enabled": False}, sparse_finetune={"enabled": False}, tracin={"variants": ["full", "subnetwork"]})
    fails(Spec, "tracin variant sft needs sparse_finetune enabled", name="s", model=TINY,
          sparse_finetune={"enabled": False})
    only_full = Spec(name="s", model=TINY, prune={"enabled": False}, sparse_finetune={"enabled": False},
                     tracin={"variants": ["full"]})
    assert only_full.tracin.variants == ["full"]


def test_sections_are_frozen_and_closed():
    spec = FinetuneSpec()
    with pytest.raises(ValidationError):
        spec.epochs = 2
    fails(FinetuneSpec, "Extra inputs are not permitted", epoch=2)


def test_every_field_is_described():
    def undescribed(schema: dict) -> list[str]:
        missing = []
        for name, definition in schema.get("$defs", {}).items():
            for field, info in definition.get("properties", {}).items():
                if not info.get("description"):
                    missing.append(f"{name}.{field}")
        return missing

    assert undescribed(Spec.model_json_schema()) == []


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_validate(path):
    loaded = load_spec(path)
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    assert "langspec run specs/" in text.split("\nname:")[0]  # the header says how to run it
    assert loaded.spec.name


def test_committed_json_schema_is_current():
    committed = json.loads((Path(__file__).parents[2] / "specs" / "langspec.schema.json").read_text())
    assert committed == json_schema()
    assert committed["properties"]["extends"]["type"] == "string"


def test_top_k_below_the_scored_training_examples():
    languages = {"languages": ["ka", "la"], "train_per_language": 30}
    fails(Spec, r"analysis.top_k \(50\) must be smaller than the 40 training examples", name="s", model=TINY,
          data=languages, tracin={"train_per_language": 20})
    fails(Spec, r"analysis.top_k \(60\) must be smaller than the 60 training examples", name="s", model=TINY,
          data=languages, tracin={"train_per_language": 200}, analysis={"top_k": 60})  # data has only 30 each
    assert Spec(name="s", model=TINY, data=languages, tracin={"train_per_language": 20}, analysis={"top_k": 39})
    assert Spec(name="s", model=TINY, data=languages, tracin={"enabled": False}, analysis={"top_k": 500})
