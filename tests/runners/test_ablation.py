"""The ablation stage on a tiny world where language kc is an exact copy of ka and mi stands alone:
what it trains on, that it starts where full fine-tuning starts, and that the measured effects
behave as the world dictates (removing the copy barely matters, removing the unique language hurts
that language most)."""

from __future__ import annotations

import json
import math
import random

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from runners import ablation, finetune, tables
from runners.context import TaskContext
from runners.inputs import Data, Inputs
from runners.methods import fine_tuning
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.methods import models
from store.artifacts import table_path

LANGUAGES = ("ka", "kc", "mi")
TRAIN, TEST, BATCH, EPOCHS = 100, 30, 16, 5
MODEL = ModelSpec(tiny={"layers": 1, "heads": 2, "hidden": 16, "intermediate": 32, "vocab_size": 300})
FINETUNE = FinetuneSpec(epochs=EPOCHS, lr=1e-2, batch_size=BATCH, max_length=16)


def copy_world(data_dir):
    """A task a tiny model learns in a few epochs: the label is which of three keywords a sentence
    holds. ka and mi have keywords (and filler words) of their own; kc is ka's examples again, word
    for word, under another language code."""
    rng = random.Random(0)
    rows = []
    for language in ("ka", "mi"):
        for split, size in (("train", TRAIN), ("validation", TEST), ("test", TEST)):
            for i in range(size):
                label = rng.randrange(3)
                words = [f"{language}{rng.randrange(20)}" for _ in range(5)]
                words.insert(rng.randrange(6), f"{language}key{label}")
                rows.append({"example_id": f"{language}-{split}-{i:06d}", "language": language, "split": split,
                             "text_a": " ".join(words), "text_b": None, "label": label})
    rows += [{**r, "language": "kc", "example_id": "kc" + r["example_id"][2:]} for r in rows if r["language"] == "ka"]
    (data_dir / "tables").mkdir()
    tables.write_table(data_dir, "examples", rows)
    (data_dir / tables.LABELS_FILE).write_text(json.dumps({"names": ["first", "second", "third"]}))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """A 16-wide model gains nothing from a second thread, and on a busy machine loses much to it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("ablation"))


def build_world(root):
    """The data, the full fine-tuning and the two ablations (without kc, without mi) of the copy world."""
    dirs = {name: root / name for name in ("data", "finetune", "without-kc", "without-mi")}
    for path in dirs.values():
        path.mkdir()
    copy_world(dirs["data"])
    finetune.run(finetune.Params(seed=0, model=MODEL, finetune=FINETUNE), Inputs({"data": dirs["data"]}), dirs["finetune"], TaskContext())
    summaries, totals = {}, {}
    for left_out in ("kc", "mi"):
        reported = []
        params = ablation.Params(seed=0, mode="without", language=left_out, model=MODEL, finetune=FINETUNE,
                                 train_languages=tuple(lang for lang in LANGUAGES if lang != left_out))
        summaries[left_out] = ablation.run(params, Inputs({"data": dirs["data"], "finetune": dirs["finetune"]}), dirs[f"without-{left_out}"],
                                           TaskContext(report=lambda done, total, note: reported.append(total)))
        totals[left_out] = reported[-1]
    return dirs, summaries, totals


def effects(task_dir) -> dict[str, float]:
    """E[t, s] of one ablation task, for every test language t: mean of loss - full_loss, a plain loop."""
    rows = pq.read_table(table_path(task_dir, "ablation_examples")).to_pylist()
    by_language: dict[str, list[float]] = {}
    for r in rows:
        by_language.setdefault(r["language"], []).append(r["loss"] - r["full_loss"])
    return {language: sum(values) / len(values) for language, values in by_language.items()}


def test_the_ablation_trains_on_every_language_but_the_left_out_one(world):
    dirs, summaries, totals = world
    for left_out in ("kc", "mi"):
        kept = [lang for lang in LANGUAGES if lang != left_out]
        assert summaries[left_out]["train_examples"] == {lang: TRAIN for lang in kept}
        # The steps it reported are those of batches over exactly the remaining rows.
        assert totals[left_out] == math.ceil(len(kept) * TRAIN / BATCH) * EPOCHS
        metrics = pq.read_table(table_path(dirs[f"without-{left_out}"], "metrics")).to_pylist()
        assert {m["variant"] for m in metrics} == {"without"}
        assert {m["language"] for m in metrics} == set(LANGUAGES)  # every language is still evaluated


def test_the_ablation_starts_from_full_fine_tunings_initialisation(world, tmp_path):
    dirs, _, _ = world
    # Its tokenizer (hence the embedding matrix and every seeded weight) is the one trained on all languages.
    for left_out in ("kc", "mi"):
        ablated = dirs[f"without-{left_out}"] / "checkpoints/epoch-1/tokenizer.json"
        assert ablated.read_bytes() == (dirs["finetune"] / "checkpoints/epoch-1/tokenizer.json").read_bytes()
    # Keeping every language is full fine-tuning, bit for bit: same initialisation, same order rule.
    fine_tuning.fine_tune(Data(dirs["data"]), tmp_path, TaskContext(), seed=0, model_spec=MODEL, config=FINETUNE,
                       train_languages=LANGUAGES, variant="every")
    ours = load_file(tmp_path / f"checkpoints/epoch-{EPOCHS}/model.safetensors")
    theirs = load_file(dirs["finetune"] / f"checkpoints/epoch-{EPOCHS}/model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_the_full_models_scores_are_the_fine_tuned_models(world):
    dirs, _, _ = world
    rows = pq.read_table(table_path(dirs["without-mi"], "ablation_examples")).to_pylist()
    assert len(rows) == len(LANGUAGES) * TEST and {r["split"] for r in rows} == {"test"}
    model, tokenizer = models.load_checkpoint(dirs["finetune"] / f"checkpoints/epoch-{EPOCHS}")
    test = models.encode(tokenizer, Data(dirs["data"]).examples("test"), FINETUNE.max_length)
    accuracy = models.accuracy_by_language(model, test, 7, tokenizer.pad_token_id, torch.device("cpu"))
    for language in LANGUAGES:
        own = [r["full_correct"] for r in rows if r["language"] == language]
        assert sum(own) / len(own) == pytest.approx(accuracy[language])


def test_removing_an_exact_copy_barely_matters_and_a_unique_language_hurts_itself_most(world):
    dirs, _, _ = world
    without_copy, without_mi = effects(dirs["without-kc"]), effects(dirs["without-mi"])
    # mi's examples exist nowhere else: without them mi's loss rises most, far more than any other language's.
    assert without_mi["mi"] == max(without_mi.values())
    assert without_mi["mi"] > 0.5
    assert all(abs(without_mi[lang]) < 0.2 * without_mi["mi"] for lang in ("ka", "kc"))
    # ka and kc lose nothing they cannot learn from the copy, and mi never needed either.
    assert all(abs(effect) < 0.2 * without_mi["mi"] for effect in without_copy.values())
