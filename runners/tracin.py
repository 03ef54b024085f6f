"""TracIn influence (stage 4): one task per (seed, variant) scores every sampled training example
against every sampled test example at every checkpoint of the fine-tuning run:

    influence(z, z', c) = lr_c * <grad L(w_c, z), grad L(w_c, z')>,  TracInCP = sum over c,

or, with `tracin.normalize: cosine`, lr_c times the cosine of the two gradients (each divided by its
norm at that checkpoint). Every task also writes each example's gradient norm per checkpoint
(`gradient_norms`), whichever form it scores.

Variants: `full` (the fine-tuned model, no masks); `subnetwork` (the same checkpoints, the test
gradient taken under the test language's subnetwork mask); `sft` (the sparsely fine-tuned
checkpoints, the train gradient under the train example's language's mask and the test gradient
under the test language's). The batched inner products (exact, or approximate from random
projections with `tracin.projection_dim`) are in `runners.methods.influence`; this module picks the
examples, the masks and the checkpoints, and writes the scores with their example numbers, TracInCP
and ranked proponents as the store keeps them (store/influence.py), as columns, never row by row.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from runners.context import RESUME_FILE, TaskContext
from runners.inputs import Inputs, mask_inputs
from runners.stage import MAX_BATCH_SIZE, MAX_EXAMPLES, MAX_SEED, Planned, Section, StageParams, Upstream
from runners.tables import write_arrow
from store.influence import influence_tables
from store.queries import k_fits

VERSION = 2  # 2: tracin.normalize, and the gradient_norms table
READS = ("data", "model", "finetune", "tracin")
RESUMABLE = True  # a task that dies keeps its finished checkpoints' scores: a retry recomputes at most one
MEMORY_FIELDS = ("tracin.batch_size", "tracin.test_block_mb", "tracin.projection_dim", "finetune.max_length")  # what to lower when the task runs out of memory
# Also written: influence_examples, tracin_cp, proponents (store/influence.py); `influence` alone is
# required, so that a task directory written before them (text ids) stays a complete, cached result.
TABLES = ("influence", "gradient_norms")
PARAM_GROUPS = {"embeddings": "embeddings", "encoder": "encoder", "classifier": None}  # under the base model, or the head


class TracinSpec(Section):
    enabled: bool = Field(True, description="TracIn influence of training examples on test examples.")
    variants: list[Literal["full", "subnetwork", "sft"]] = Field(
        default=["full", "subnetwork", "sft"], min_length=1, description="Which models to score."
    )
    train_per_language: int = Field(
        200, ge=1, le=MAX_EXAMPLES, description="Training examples scored per language: the first N of its train split."
    )
    test_per_language: int = Field(
        20, ge=1, le=MAX_EXAMPLES, description="Influence-test examples per language: the first N of its test split."
    )
    params: list[Literal["embeddings", "encoder", "classifier"]] = Field(
        default=["embeddings", "encoder", "classifier"], min_length=1, description="Parameter groups of the gradients."
    )
    normalize: Literal["none", "cosine"] = Field(
        "none",
        description="none: the paper's TracIn, lr x <g, g'>. cosine: lr x <g, g'> / (|g| |g'|), each example's gradient "
        "(masked and projected as scored) divided by its norm at each checkpoint, so that examples with large "
        "gradients do not dominate every ranking (Barshan et al. 2020, Hanawa et al. 2021).",
    )
    batch_size: int = Field(
        32, ge=1, le=MAX_BATCH_SIZE, description="Examples per gradient batch (bounds memory; no effect on scores)."
    )
    test_block_mb: float | None = Field(
        4096, gt=0, le=1_048_576, description="Memory (MB) for the test examples' gradients kept while the training examples stream "
        "past; more test examples are scored in blocks, the training gradients computed once per block (slower, same "
        "scores). None: no limit.",
    )
    projection_dim: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="None: exact scores. An integer d: approximate scores, for models too large for exact ones: each "
        "parameter tensor's per-example gradient with more than d entries becomes a seeded random projection to at "
        "most d numbers (Kronecker-factored for matrices, never forming the per-example gradient), the same for train, "
        "test and every checkpoint; each score is an unbiased estimate whose error shrinks as d grows "
        "(runners/methods/influence/ documents the construction).",
    )
    projection_seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seed of the random projection (with each parameter's name); only used with projection_dim. "
        "Independent of the training seeds, so every seed and variant is scored with the same P; change it to see "
        "how much the scores owe to the draw of P.",
    )


SECTIONS = {"tracin": (TracinSpec, Field(default_factory=TracinSpec, description="TracIn influence scores."))}


class Params(StageParams):
    seed: int
    variant: Literal["full", "subnetwork", "sft"]
    languages: tuple[str, ...]
    tracin: TracinSpec
    attention: Literal["sdpa", "eager"]
    max_length: int


def check(spec) -> None:
    tracin = spec.tracin
    if not tracin.enabled:
        return
    needs_masks = {"subnetwork", "sft"} & set(tracin.variants)
    if needs_masks and not spec.prune.enabled:
        raise ValueError(f"tracin variants {sorted(needs_masks)} need prune enabled")
    if "sft" in tracin.variants and not spec.sparse_finetune.enabled:
        raise ValueError("tracin variant sft needs sparse_finetune enabled")
    scored = min(tracin.train_per_language, spec.data.train_per_language) * len(spec.data.languages)
    if not k_fits(spec.analysis.top_k, scored):
        raise ValueError(
            f"analysis.top_k ({spec.analysis.top_k}) must be smaller than the {scored} training examples TracIn "
            "scores, or every one of them is a proponent; lower analysis.top_k or raise tracin.train_per_language"
        )


def tasks(spec, seed: int, upstream: Upstream) -> Iterator[Planned]:
    """One task per variant, on the seed's fine-tuned (full, subnetwork) or sparsely fine-tuned (sft)
    checkpoints, run as they were trained (model.attention, finetune.max_length)."""
    if not spec.tracin.enabled:
        return
    data = ("data", upstream.key("data"))
    masks = mask_inputs(upstream, seed)
    for variant in spec.tracin.variants:
        params = Params(
            seed=seed, variant=variant, languages=tuple(spec.data.languages),
            tracin=spec.tracin.model_copy(update={"variants": [variant]}),  # the other variants are not this task's business
            attention=spec.model.attention, max_length=spec.finetune.max_length,
        )
        if variant == "sft":
            inputs = (data, ("sft", upstream.key("sparse_finetune", seed=seed))) + masks
        else:
            inputs = (data, ("finetune", upstream.key("finetune", seed=seed))) + (masks if variant == "subnetwork" else ())
        yield Planned({"seed": seed, "variant": variant}, params, inputs)


def run(params: Params, inputs: Inputs, workdir: Path, ctx: TaskContext) -> dict:
    import torch

    from runners.methods import influence, models

    config = params.tracin
    device = torch.device(ctx.device)
    checkpoints = (inputs.sft if params.variant == "sft" else inputs.finetune).checkpoints()
    masks = inputs.masks(params.languages) if params.variant != "full" else {}
    tokenizer = models.load_checkpoint(checkpoints[0].path, params.attention)[1]
    examples = inputs.data.examples()  # read once; each side below picks its split and languages

    def language_pure(split: str, per_language: int, masked: bool):
        """Length-sorted batches of one language each, their example ids in column order, and
        each batch's mask (None where this side's gradient is unmasked)."""
        ids, batches, batch_masks = [], [], []
        for lang in params.languages:
            rows = [r for r in examples if r["split"] == split and r["language"] == lang][:per_language]
            encoded = models.encode(tokenizer, rows, params.max_length)
            order = sorted(range(len(encoded)), key=lambda i: len(encoded.input_ids[i]))
            ids += [encoded.example_ids[i] for i in order]
            for batch in models.batches(encoded, config.batch_size, tokenizer.pad_token_id, device, order):
                batches.append(batch)
                batch_masks.append(masks[lang] if masked else None)
        return ids, batches, batch_masks if masked else None

    train_ids, train_batches, train_masks = language_pure("train", config.train_per_language, params.variant == "sft")
    test_ids, test_batches, test_masks = language_pure("test", config.test_per_language, params.variant != "full")

    resume_path = workdir / RESUME_FILE
    order = {"test_ids": test_ids, "train_ids": train_ids, "epochs": [c.epoch for c in checkpoints]}
    terms, norms = _resumed(resume_path, order)  # the checkpoints an earlier attempt finished
    resumed = len(terms)
    n_test, n_train = len(test_ids), len(train_ids)
    for done, checkpoint in enumerate(checkpoints):
        if done < resumed:
            continue
        ctx.report(done, len(checkpoints), f"checkpoint {checkpoint.epoch}: {n_test} x {n_train} scores"
                   + (f" (resumed after {resumed} of {len(checkpoints)})" if resumed else ""))
        model = models.load_checkpoint(checkpoint.path, params.attention)[0].to(device)
        result = influence.checkpoint_influence(
            model, train_batches, test_batches, train_masks=train_masks, test_masks=test_masks,
            param_names=parameter_names(model, config.params),
            projection_dim=config.projection_dim, projection_seed=config.projection_seed,  # same P at every checkpoint
            test_block_bytes=int(config.test_block_mb * 2**20) if config.test_block_mb else None,
        )
        scores = result.cosine() if config.normalize == "cosine" else result.scores  # (n_test, n_train)
        terms.append((checkpoint.epoch, (scores.double() * checkpoint.learning_rate).float().numpy()))
        norms.append((checkpoint.epoch, result.test_norms, result.train_norms))
        _save_progress(resume_path, order, terms, norms)
    ctx.report(len(checkpoints), len(checkpoints), "ranking and writing scores")
    # The example numbers, TracInCP and the ranked proponents, computed here where the scores already
    # are: the driver's ingest then only copies the tables (store/influence.py).
    for name, table in influence_tables(params.seed, params.variant, test_ids, train_ids, terms).items():
        write_arrow(workdir, name, table)
    write_arrow(workdir, "gradient_norms", _norms_table(params.seed, params.variant, test_ids, train_ids, norms))
    resume_path.unlink(missing_ok=True)  # the task is complete: nothing to resume, and it is as big as the scores
    rows = n_test * n_train * len(checkpoints)
    return {"train_examples": n_train, "test_examples": n_test, "checkpoints": len(checkpoints), "scores": rows,
            "resumed_checkpoints": resumed}


def _resumed(path: Path, order: dict) -> tuple[list, list]:
    """(terms, norms) of the checkpoints an earlier attempt at this task finished, in checkpoint
    order; nothing if there is no state or it is of other examples or checkpoints."""
    import torch

    if not path.is_file():
        return [], []
    state = torch.load(path, weights_only=True)
    if state["order"] != order:
        return [], []
    terms = [(epoch, scores.numpy()) for epoch, scores in state["terms"]]
    return terms, [tuple(row) for row in state["norms"]]


def _save_progress(path: Path, order: dict, terms: list, norms: list) -> None:
    """The finished checkpoints' scores and norms, written whole or not at all (a rename)."""
    import torch

    state = {"order": order, "terms": [(epoch, torch.from_numpy(scores)) for epoch, scores in terms], "norms": norms}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def _norms_table(seed: int, variant: str, test_ids: list[str], train_ids: list[str], norms: list) -> pa.Table:
    """One row per (checkpoint, example): the norm of the gradient the scores multiplied."""
    import numpy as np
    import pyarrow as pa

    ids = test_ids + train_ids
    roles = ["test"] * len(test_ids) + ["train"] * len(train_ids)
    columns = {"seed": [], "variant": [], "checkpoint": [], "role": [], "example_id": [], "norm": []}
    for epoch, test_norms, train_norms in norms:
        columns["seed"] += [seed] * len(ids)
        columns["variant"] += [variant] * len(ids)
        columns["checkpoint"] += [epoch] * len(ids)
        columns["role"] += roles
        columns["example_id"] += ids
        columns["norm"].append(np.concatenate([test_norms.numpy(), train_norms.numpy()]))
    columns["norm"] = np.concatenate(columns["norm"]) if columns["norm"] else np.zeros(0)
    return pa.table(columns)


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
