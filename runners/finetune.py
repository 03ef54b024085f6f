"""Full fine-tuning (stage 1): all languages mixed, a checkpoint and an evaluation after every epoch."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from langspec.spec import FinetuneSpec, ModelSpec
from runners.context import RESUME_FILE, TaskContext
from runners.data import read_examples, read_label_names
from runners.tables import write_table

VERSION = 1
TABLES = ("metrics", "checkpoints")  # what a task of this stage hands to the store; a task without them is not done
MEMORY_FIELDS = ("finetune.batch_size", "finetune.max_length", "finetune.eval_batch_size")  # what to lower when the task runs out of memory
RESUMABLE = True  # a fine-tuning that dies continues from its last finished epoch
EVAL_SPLITS = ("validation", "test")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int
    model: ModelSpec
    finetune: FinetuneSpec


def run(params: Params, inputs: dict[str, Path], workdir: Path, ctx: TaskContext) -> dict:
    return fine_tune(inputs["data"], workdir, ctx, seed=params.seed, model_spec=params.model, config=params.finetune)


def fine_tune(
    data_dir: Path,
    workdir: Path,
    ctx: TaskContext,
    *,
    seed: int,
    model_spec: ModelSpec,
    config: FinetuneSpec,
    masks: dict | None = None,
    language_sampling: str = "proportional",
) -> dict:
    """Fine-tune from the seed's initialisation; a checkpoint and an evaluation after every epoch.

    Without `masks` (full fine-tuning) batches mix languages. With masks ({language: (L, H) 0/1
    tensor}, sparse fine-tuning) batches are language-pure, a batch of language l runs with mask
    l and updates only l's heads and the shared parameters, and each language is evaluated with
    its own mask.
    """
    import torch  # heavy imports live here so that compiling a spec stays fast

    from runners import heads, models, pruning, training

    variant = "full" if masks is None else "sft"
    device = torch.device(ctx.device)
    rows = read_examples(data_dir)
    train_rows = [r for r in rows if r["split"] == "train"]
    tokenizer = models.build_tokenizer(model_spec, [t for r in train_rows for t in (r["text_a"], r["text_b"]) if t])
    # Saved with every checkpoint: inputs longer than the model was trained on are cut there
    # (pipeline(..., truncation=True)) instead of running past its position embeddings.
    tokenizer.model_max_length = config.max_length
    model = models.build_model(model_spec, tokenizer, read_label_names(data_dir), config.max_length, seed).to(device)
    pad_id = tokenizer.pad_token_id

    train = models.encode(tokenizer, train_rows, config.max_length)
    if masks is None:
        orders = training.shuffled_batches(len(train), config.batch_size, seed)
        step_hook = None
    else:
        masks = {language: mask.to(device) for language, mask in masks.items()}
        orders = training.language_batches(train.languages, config.batch_size, seed, language_sampling)

        def step_hook(indices: list[int], optimizer):
            mask = masks[train.languages[indices[0]]]
            return heads.only_heads(model, optimizer, mask)

    # Evaluation sets: all languages at once, or each language alone (to run under its own mask).
    evaluation = {}
    for split in EVAL_SPLITS:
        split_rows = [r for r in rows if r["split"] == split]
        groups = {None: split_rows} if masks is None else {lang: [r for r in split_rows if r["language"] == lang] for lang in masks}
        evaluation[split] = {lang: models.encode(tokenizer, group, config.max_length) for lang, group in groups.items()}

    # An attempt that died (a killed worker or driver) left its last finished epoch: go on from there.
    resume_path = workdir / RESUME_FILE
    resume = torch.load(resume_path, weights_only=True) if resume_path.is_file() else None
    metrics, checkpoints, loss = [], [], float("nan")
    if resume is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(workdir / f"checkpoints/epoch-{resume['epoch']}" / "model.safetensors", device=str(device)))
        metrics, checkpoints, loss = resume["metrics"], resume["checkpoints"], resume["loss"]
    epochs = training.train(
        model, train, orders, epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio, pad_id=pad_id, device=device, report=ctx.report, step_hook=step_hook,
        resume=resume,
    )
    for end in epochs:
        loss = end.loss
        path = f"checkpoints/epoch-{end.epoch}"
        model.save_pretrained(workdir / path)
        tokenizer.save_pretrained(workdir / path)
        checkpoints.append(
            {"seed": seed, "variant": variant, "epoch": end.epoch, "step": end.step,
             "learning_rate": end.learning_rate, "path": path}
        )
        for split, groups in evaluation.items():
            accuracy = {}
            for language, encoded in groups.items():
                if language is None:
                    accuracy.update(models.accuracy_by_language(model, encoded, config.eval_batch_size, pad_id, device))
                else:
                    batches = models.batches(encoded, config.eval_batch_size, pad_id, device)
                    accuracy[language] = pruning.evaluate_accuracy(model, batches, masks[language])
            metrics += [
                {"seed": seed, "variant": variant, "language": language, "split": split,
                 "metric": "accuracy", "value": value, "epoch": end.epoch}
                for language, value in sorted(accuracy.items())
            ]
        # Written last, atomically: a resume finds this epoch's checkpoint and metrics complete.
        torch.save({**end.state, "metrics": metrics, "checkpoints": checkpoints, "loss": loss}, resume_path.with_suffix(".tmp"))
        os.replace(resume_path.with_suffix(".tmp"), resume_path)
    resume_path.unlink(missing_ok=True)  # the task is complete: nothing to resume, and it is big
    write_table(workdir, "metrics", metrics)
    write_table(workdir, "checkpoints", checkpoints)
    final = {m["language"]: m["value"] for m in metrics if m["split"] == "test" and m["epoch"] == config.epochs}
    return {"epochs": config.epochs, "final_loss": loss, "test_accuracy": final, "device": str(device),
            "resumed_from_epoch": resume["epoch"] if resume else 0}
