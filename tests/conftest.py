"""Shared fixtures: explicit torch threads, one Ray session for the whole suite, small specs."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the suite never reaches for the network


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    torch.set_num_threads(2)  # an oversubscribed 2-core machine runs 50x slower


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray for the suite (it takes ~6 s to start); the Ray executor joins it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2,
             _temp_dir=f"/tmp/langspec-ray-test-{os.getpid()}", log_to_driver=False)
    yield ray
    ray.shutdown()


# The whole study on two toy languages, every stage and TracIn variant, ~10 s in-process; trained
# enough that pruning masks most heads and a masked model predicts differently.
EVERYDAY_STUDY = """\
    name: everyday
    data: {source: toy, languages: [ka, la], train_per_language: 300, validation_per_language: 40,
           test_per_language: 40, seed: 0}
    model: {tiny: {layers: 2, heads: 4, hidden: 32, intermediate: 64, vocab_size: 300}}
    seeds: [0]
    finetune: {epochs: 4, lr: 2.0e-3, batch_size: 16, max_length: 32}
    prune: {enabled: true, batch_size: 5}
    sparse_finetune: {enabled: true}
    tracin: {enabled: true, train_per_language: 10, test_per_language: 3}
    analysis: {top_k: 5}
    resources: {default: {num_cpus: 1}}
"""


@pytest.fixture(scope="session")
def everyday_study(tmp_path_factory) -> dict:
    """{"spec": path, "store": path} of a store that one real run of the whole study made (local
    executor): what the CLI tests and the documentation's snippets read."""
    from typer.testing import CliRunner

    from langspec.cli import app

    root = tmp_path_factory.mktemp("everyday")
    spec = root / "everyday.yaml"
    spec.write_text(textwrap.dedent(EVERYDAY_STUDY))
    store = root / "results"
    result = CliRunner().invoke(app, ["run", str(spec), "--store", str(store), "--executor", "local"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {"spec": spec, "store": store}


SMALL_SPEC = """\
    name: small
    data: {{source: toy, languages: [ka, la], train_per_language: 60, validation_per_language: 20,
           test_per_language: 20, seed: 0}}
    model: {{tiny: {{layers: 2, heads: 2, hidden: 16, intermediate: 32, vocab_size: 200}}}}
    seeds: [0]
    finetune: {{epochs: {epochs}, lr: 1.0e-3, batch_size: 16, max_length: 32}}
    prune: {{enabled: false}}
    sparse_finetune: {{enabled: false}}
    tracin: {{enabled: false}}
    resources: {{default: {{num_cpus: 1}}}}
"""


@pytest.fixture
def small_spec(tmp_path) -> Path:
    """A spec that trains a 2-layer, 16-wide model on 2 toy languages in about a second."""
    path = tmp_path / "small.yaml"
    path.write_text(textwrap.dedent(SMALL_SPEC.format(epochs=2)))
    return path


def task_keys(spec: Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """Each planned task's name and key, for the spec with `--set`-style overrides."""
    from langspec.compile import compile_spec
    from langspec.load import load_spec

    return {task.name: task.key for task in compile_spec(load_spec(spec, list(overrides))).tasks}


@pytest.fixture
def spec_file(tmp_path):
    """Write a (dedented) YAML spec into the test's directory and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
