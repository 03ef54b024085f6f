"""One small study run stage by stage (data, fine-tuning, a subnetwork per language), shared by the
tests of the stages downstream of fine-tuning. Trained enough that masking heads changes accuracy."""

from __future__ import annotations

import pytest

from langspec.spec import DataSpec, FinetuneSpec, ModelSpec, PruneSpec
from runners import data, finetune, prune
from runners.context import TaskContext

LANGUAGES = ("ka", "la")
EPOCHS = 4
MAX_LENGTH = 32
PRUNE = PruneSpec(threshold=0.95, step=0.1, batch_size=5)


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """{"data": dir, "finetune": dir, "prune.ka": dir, "prune.la": dir, "summaries": {lang: prune summary},
    "epochs": EPOCHS, "prune": PRUNE, "max_length": MAX_LENGTH, "languages": LANGUAGES}."""
    root = tmp_path_factory.mktemp("study")
    dirs = {name: root / name for name in ("data", "finetune", *(f"prune.{lang}" for lang in LANGUAGES))}
    for path in dirs.values():
        path.mkdir()
    data_spec = DataSpec(languages=list(LANGUAGES), train_per_language=300, validation_per_language=40, test_per_language=40)
    data.run(data.Params(data=data_spec, fingerprint=""), {}, dirs["data"], TaskContext())
    model = ModelSpec(tiny={"layers": 2, "heads": 4, "hidden": 32, "intermediate": 64, "vocab_size": 300})
    finetune.run(
        finetune.Params(seed=0, model=model, finetune=FinetuneSpec(epochs=EPOCHS, lr=2e-3, batch_size=16, max_length=MAX_LENGTH)),
        {"data": dirs["data"]}, dirs["finetune"], TaskContext(),
    )
    summaries = {}
    for lang in LANGUAGES:
        params = prune.Params(seed=0, language=lang, prune=PRUNE, attention="sdpa", max_length=MAX_LENGTH)
        summaries[lang] = prune.run(params, {"data": dirs["data"], "finetune": dirs["finetune"]}, dirs[f"prune.{lang}"], TaskContext())
    return {**dirs, "summaries": summaries, "epochs": EPOCHS, "prune": PRUNE, "max_length": MAX_LENGTH, "languages": LANGUAGES}
