"""One small study run stage by stage (data, fine-tuning, a subnetwork per language, sparse
fine-tuning), shared by the tests of the stages downstream of fine-tuning. Trained enough that
masking heads changes accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from runners import data, finetune, prune, sparse_finetune
from runners.context import TaskContext
from runners.data import DataSpec
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.prune import PruneSpec
from runners.inputs import Inputs, mask_role

LANGUAGES = ("ka", "la")
EPOCHS = 4
MAX_LENGTH = 32
MODEL = ModelSpec(tiny={"layers": 2, "heads": 4, "hidden": 32, "intermediate": 64, "vocab_size": 300})
FINETUNE = FinetuneSpec(epochs=EPOCHS, lr=2e-3, batch_size=16, max_length=MAX_LENGTH)
PRUNE = PruneSpec(threshold=0.95, step=0.1, batch_size=5)


@dataclass(frozen=True)
class Study:
    """A small study run by the stages themselves: each task's directory under the role by which a
    downstream task receives it (data, finetune, prune.<language>, sft), and the settings it ran with."""

    dirs: dict[str, Path]
    summaries: dict[str, dict]  # language -> its prune task's summary
    languages: tuple[str, ...]
    epochs: int
    max_length: int
    model: ModelSpec
    prune: PruneSpec

    @property
    def data(self) -> Path:
        return self.dirs["data"]

    @property
    def finetune(self) -> Path:
        return self.dirs["finetune"]

    @property
    def sft(self) -> Path:
        return self.dirs["sft"]

    def subnetwork(self, language: str) -> Path:
        """The prune task directory of a language."""
        return self.dirs[mask_role(language)]

    def inputs(self, *roles: str) -> Inputs:
        """The inputs a stage's run() takes, of these roles."""
        return Inputs({role: self.dirs[role] for role in roles})


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Study:
    root = tmp_path_factory.mktemp("study")
    dirs = {name: root / name for name in ("data", "finetune", "sft", *(mask_role(lang) for lang in LANGUAGES))}
    for path in dirs.values():
        path.mkdir()
    data_spec = DataSpec(languages=list(LANGUAGES), train_per_language=300, validation_per_language=40, test_per_language=40)
    data.run(data.Params(data=data_spec, fingerprint=""), Inputs({}), dirs["data"], TaskContext())
    finetune.run(finetune.Params(seed=0, model=MODEL, finetune=FINETUNE), Inputs({"data": dirs["data"]}), dirs["finetune"], TaskContext())
    summaries = {}
    for lang in LANGUAGES:
        params = prune.Params(seed=0, language=lang, prune=PRUNE, attention="sdpa", max_length=MAX_LENGTH)
        summaries[lang] = prune.run(params, Inputs({"data": dirs["data"], "finetune": dirs["finetune"]}), dirs[mask_role(lang)], TaskContext())
    sparse_finetune.run(
        sparse_finetune.Params(seed=0, languages=LANGUAGES, model=MODEL, finetune=FINETUNE, language_sampling="proportional"),
        Inputs({"data": dirs["data"], **{mask_role(lang): dirs[mask_role(lang)] for lang in LANGUAGES}}), dirs["sft"], TaskContext(),
    )
    return Study(dirs, summaries, LANGUAGES, EPOCHS, MAX_LENGTH, MODEL, PRUNE)
