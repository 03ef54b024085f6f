"""One small study run stage by stage (data, fine-tuning, a subnetwork per language, sparse
fine-tuning), shared by the tests of the stages downstream of fine-tuning. Trained enough that
masking heads changes accuracy."""

from __future__ import annotations

import pytest

from runners import data, finetune, prune, sparse_finetune
from runners.context import TaskContext
from runners.data import DataSpec
from runners.finetune import FinetuneSpec, ModelSpec
from runners.prune import PruneSpec

LANGUAGES = ("ka", "la")
EPOCHS = 4
MAX_LENGTH = 32
MODEL = ModelSpec(tiny={"layers": 2, "heads": 4, "hidden": 32, "intermediate": 64, "vocab_size": 300})
FINETUNE = FinetuneSpec(epochs=EPOCHS, lr=2e-3, batch_size=16, max_length=MAX_LENGTH)
PRUNE = PruneSpec(threshold=0.95, step=0.1, batch_size=5)


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """{"data": dir, "finetune": dir, "prune.ka": dir, "prune.la": dir, "sft": dir, "summaries": {lang:
    prune summary}, "epochs", "prune", "max_length", "languages", "model", "finetune_spec"}."""
    root = tmp_path_factory.mktemp("study")
    dirs = {name: root / name for name in ("data", "finetune", "sft", *(f"prune.{lang}" for lang in LANGUAGES))}
    for path in dirs.values():
        path.mkdir()
    data_spec = DataSpec(languages=list(LANGUAGES), train_per_language=300, validation_per_language=40, test_per_language=40)
    data.run(data.Params(data=data_spec, fingerprint=""), {}, dirs["data"], TaskContext())
    finetune.run(finetune.Params(seed=0, model=MODEL, finetune=FINETUNE), {"data": dirs["data"]}, dirs["finetune"], TaskContext())
    summaries = {}
    for lang in LANGUAGES:
        params = prune.Params(seed=0, language=lang, prune=PRUNE, attention="sdpa", max_length=MAX_LENGTH)
        summaries[lang] = prune.run(params, {"data": dirs["data"], "finetune": dirs["finetune"]}, dirs[f"prune.{lang}"], TaskContext())
    sparse_finetune.run(
        sparse_finetune.Params(seed=0, languages=LANGUAGES, model=MODEL, finetune=FINETUNE, language_sampling="proportional"),
        {"data": dirs["data"], **{f"prune.{lang}": dirs[f"prune.{lang}"] for lang in LANGUAGES}}, dirs["sft"], TaskContext(),
    )
    return {**dirs, "summaries": summaries, "epochs": EPOCHS, "prune": PRUNE, "max_length": MAX_LENGTH,
            "languages": LANGUAGES, "model": MODEL, "finetune_spec": FINETUNE}
