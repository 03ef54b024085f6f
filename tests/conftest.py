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


@pytest.fixture
def spec_file(tmp_path):
    """Write a (dedented) YAML spec into the test's directory and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
