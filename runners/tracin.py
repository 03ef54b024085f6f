"""TracIn influence (stage 4): one task per (seed, variant) scores every sampled training example
against every sampled test example at every checkpoint of the fine-tuning run:

    influence(z, z', c) = lr_c * <grad L(w_c, z), grad L(w_c, z')>,  TracInCP = sum over c.

Variants: `full` (the fine-tuned model, no masks) and `subnetwork` (the same checkpoints, the test
gradient taken under the test language's subnetwork mask). The exact, batched inner products are
in `runners.influence`; this module picks the examples, the masks and the checkpoints, and writes
the scores to the `influence` table as columns (never row by row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from langspec.spec import TracinSpec
from runners.context import TaskContext
from runners.data import read_examples
from runners.tables import write_arrow

VERSION = 1
PARAM_GROUPS = {"embeddings": "embeddings", "encoder": "encoder", "classifier": None}  # under the base model, or the head


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int
    variant: Literal["full", "subnetwork"]
    languages: tuple[str, ...]
    tracin: TracinSpec
    attention: Literal["sdpa", "eager"]
    max_length: int


def prune_role(language: str) -> str:
    return f"prune.{language}"


def run(params: Params, inputs: dict[str, Path], workdir: Path, ctx: TaskContext) -> dict:
    import numpy as np
    import pyarrow as pa
    import torch

    from runners import influence, models

    config = params.tracin
    device = torch.device(ctx.device)
    checkpoints = sorted(pq.read_table(inputs["finetune"] / "tables" / "checkpoints.parquet").to_pylist(), key=lambda c: c["epoch"])
    train_rows = [r for lang in params.languages for r in read_examples(inputs["data"], "train", lang)[: config.train_per_language]]
    test_rows = {lang: read_examples(inputs["data"], "test", lang)[: config.test_per_language] for lang in params.languages}
    masks = {lang: subnetwork_mask(inputs[prune_role(lang)]) for lang in params.languages} if params.variant == "subnetwork" else {}

    tokenizer = models.load_checkpoint(inputs["finetune"] / checkpoints[0]["path"], params.attention)[1]
    pad_id = tokenizer.pad_token_id
    train = models.encode(tokenizer, train_rows, params.max_length)
    train_order = sorted(range(len(train)), key=lambda i: len(train.input_ids[i]))  # length-sorted: little padding
    test_ids, test_batches, test_masks = [], [], []
    for lang, rows in test_rows.items():  # language-pure test batches: one mask per batch
        encoded = models.encode(tokenizer, rows, params.max_length)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded.input_ids[i]))
        test_ids += [encoded.example_ids[i] for i in order]
        for batch in models.batches(encoded, config.batch_size, pad_id, device, order):
            test_batches.append(batch)
            test_masks.append(masks.get(lang))
    train_ids = [train.example_ids[i] for i in train_order]

    columns = {"checkpoint": [], "test_id": [], "train_id": [], "score": []}
    n_test, n_train = len(test_ids), len(train_ids)
    for done, checkpoint in enumerate(checkpoints):
        ctx.report(done, len(checkpoints), f"checkpoint {checkpoint['epoch']}: {n_test} x {n_train} scores")
        model = models.load_checkpoint(inputs["finetune"] / checkpoint["path"], params.attention)[0].to(device)
        scores = influence.checkpoint_scores(
            model, models.batches(train, config.batch_size, pad_id, device, train_order), test_batches,
            test_masks=test_masks if masks else None, param_names=parameter_names(model, config.params),
        )  # (n_test, n_train)
        scores = (scores.double() * checkpoint["learning_rate"]).float().numpy().ravel()
        columns["checkpoint"].append(np.full(n_test * n_train, checkpoint["epoch"], dtype=np.int32))
        columns["test_id"].append(np.repeat(np.array(test_ids, dtype=object), n_train))
        columns["train_id"].append(np.tile(np.array(train_ids, dtype=object), n_test))
        columns["score"].append(scores)
    ctx.report(len(checkpoints), len(checkpoints), "writing scores")
    rows = n_test * n_train * len(checkpoints)
    write_arrow(workdir, "influence", pa.table({
        "seed": pa.repeat(pa.scalar(params.seed, pa.int32()), rows),
        "variant": pa.repeat(pa.scalar(params.variant), rows),
        "checkpoint": np.concatenate(columns["checkpoint"]),
        "test_id": pa.array(np.concatenate(columns["test_id"]), type=pa.string()),
        "train_id": pa.array(np.concatenate(columns["train_id"]), type=pa.string()),
        "score": np.concatenate(columns["score"]),
    }))
    return {"train_examples": n_train, "test_examples": n_test, "checkpoints": len(checkpoints), "scores": rows}


def subnetwork_mask(prune_dir: Path):
    """A prune task's final mask as an (L, H) float tensor of 0/1."""
    import torch

    rows = pq.read_table(prune_dir / "tables" / "subnetworks.parquet").to_pylist()
    layers = max(r["layer"] for r in rows) + 1
    heads = max(r["head"] for r in rows) + 1
    mask = torch.zeros(layers, heads)
    for r in rows:
        mask[r["layer"], r["head"]] = float(r["kept"])
    return mask


def parameter_names(model, groups: list[str]) -> list[str] | None:
    """`tracin.params` groups as parameter-name prefixes; None (every trainable parameter) when all are chosen."""
    if set(groups) == set(PARAM_GROUPS):
        return None
    base = model.base_model_prefix
    heads = [name.split(".")[0] for name, _ in model.named_parameters() if not name.startswith(base + ".")]
    prefixes = []
    for group in groups:
        prefixes += sorted(set(heads)) if PARAM_GROUPS[group] is None else [f"{base}.{PARAM_GROUPS[group]}"]
    return prefixes
