"""Task keys of a `model.pretrained` directory follow its content, not where it lies: a copy or a
moved checkout stays cached, a changed file re-runs the tasks, and a hub id keeps the key it had."""

from __future__ import annotations

import hashlib
import os
import shutil
import textwrap

import pytest
from pydantic import ValidationError

from langspec.compile import compile_spec
from langspec.load import load_spec
from runners.methods import models
from runners.methods.sections import ModelSpec

SPEC = """\
    name: keys
    data: {{source: toy, languages: [ka, la], train_per_language: 20, validation_per_language: 5,
           test_per_language: 5, seed: 0}}
    model: {{pretrained: {model}}}
    seeds: [0]
    finetune: {{epochs: 1, batch_size: 4, max_length: 16}}
    prune: {{enabled: true}}
    sparse_finetune: {{enabled: false}}
    tracin: {{enabled: false}}
    resources: {{default: {{num_cpus: 1}}}}
"""


def save_tiny_model(directory):
    """A model directory in the hub's format: config.json, model.safetensors and the tokenizer's files."""
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    tokenizer = models.train_tokenizer(["ein kleiner satz", "a small sentence", "une petite phrase"], 100)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32, max_position_embeddings=40, pad_token_id=1, type_vocab_size=1)
    XLMRobertaForMaskedLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "xlmr-tiny")


def keys_with(folder, model) -> dict[str, str]:
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(model=model)))
    return {task.name: task.key for task in compile_spec(load_spec(spec)).tasks}


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_copied_or_moved_model_directory_keeps_its_keys(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("LANGSPEC_CACHE", str(tmp_path / "cache"))
    here = keys_with(tmp_path, tiny_model)
    copy = shutil.copytree(tiny_model, tmp_path / "elsewhere" / "copy")
    (copy / ".cache" / "huggingface").mkdir(parents=True)  # what a hub download leaves: not the model
    (copy / ".cache" / "huggingface" / "download.lock").write_text("12345")
    assert keys_with(tmp_path, copy) == here
    monkeypatch.chdir(tmp_path / "elsewhere")  # a relative path is the driver's, from where it runs
    assert keys_with(tmp_path, "copy") == here
    shutil.move(copy, tmp_path / "moved")
    assert keys_with(tmp_path, tmp_path / "moved") == here


@pytest.mark.parametrize("name, offset", [("config.json", 3), ("model.safetensors", -5), ("tokenizer.json", 10)])
def test_a_changed_file_of_the_model_directory_changes_the_keys(tmp_path, tiny_model, monkeypatch, name, offset):
    monkeypatch.setenv("LANGSPEC_CACHE", str(tmp_path / "cache"))
    model = shutil.copytree(tiny_model, tmp_path / "model")
    before = keys_with(tmp_path, model)
    flip_byte(model / name, offset)
    after = keys_with(tmp_path, model)
    assert after["data"] == before["data"]  # the data task reads no model
    assert {name for name in before if after[name] != before[name]} == {name for name in before if name != "data"}


def test_a_hub_id_keeps_the_key_it_had():
    """A hub id is no directory here: the dump that task keys hash is the one langspec always made."""
    assert ModelSpec(pretrained="xlm-roberta-base").model_dump(mode="json") == {
        "pretrained": "xlm-roberta-base", "tiny": None, "attention": "sdpa", "dropout": 0.1}


def test_a_model_directory_with_a_file_that_cannot_be_read_is_refused(tmp_path, tiny_model):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    (model / "vocab.txt").symlink_to(tmp_path / "gone")  # a hub cache's snapshot whose blob is missing
    with pytest.raises(ValidationError, match=r"the directory .*model has a file that cannot be read .*No such file .*model/vocab.txt"):
        ModelSpec(pretrained=str(model))


def test_file_hashes_are_memoized_on_disk_by_path_size_and_mtime(tmp_path, monkeypatch):
    from runners.methods import cache

    monkeypatch.setenv("LANGSPEC_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights" * 1000)
    settled = 1_600_000_000 * 10**9  # long enough ago that no write can share its timestamp
    os.utime(weights, ns=(settled, settled))
    truth = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert cache.file_sha256(weights) == truth
    memos = list((tmp_path / "cache" / "sha256").iterdir())
    assert [memo.read_text() for memo in memos] == [truth]
    # Another process (this one, its memory forgotten) reads the memo rather than the file.
    cache._memoized_sha256.cache_clear()
    memos[0].write_text("0" * 64)
    assert cache.file_sha256(weights) == "0" * 64
    # A new version of the file (its mtime moved) is read again.
    os.utime(weights, ns=(settled + 1, settled + 1))
    assert cache.file_sha256(weights) == truth
    # A file written just now is read every time: a write within its timestamp's tick would go unseen.
    weights.write_bytes(b"other" * 1400)
    assert cache.file_sha256(weights) == hashlib.sha256(b"other" * 1400).hexdigest()
    assert len(list((tmp_path / "cache" / "sha256").iterdir())) == 2
