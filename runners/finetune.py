"""Full fine-tuning (stage 1): all languages mixed, a checkpoint and an evaluation after every epoch."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from langspec.spec import FinetuneSpec, ModelSpec
from runners.context import TaskContext
from runners.data import read_examples
from runners.tables import write_table

VERSION = 1
EVAL_SPLITS = ("validation", "test")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int
    model: ModelSpec
    finetune: FinetuneSpec


def run(params: Params, inputs: dict[str, Path], workdir: Path, ctx: TaskContext) -> dict:
    import torch  # heavy imports live here so that compiling a spec stays fast

    from runners import models, training

    config = params.finetune
    device = torch.device(ctx.device)
    rows = read_examples(inputs["data"])
    train_rows = [r for r in rows if r["split"] == "train"]
    tokenizer = models.build_tokenizer(params.model, [t for r in train_rows for t in (r["text_a"], r["text_b"]) if t])
    num_labels = max(r["label"] for r in rows) + 1
    model = models.build_model(params.model, tokenizer, num_labels, config.max_length, params.seed).to(device)
    pad_id = tokenizer.pad_token_id

    train = models.encode(tokenizer, train_rows, config.max_length)
    evaluation = {s: models.encode(tokenizer, [r for r in rows if r["split"] == s], config.max_length) for s in EVAL_SPLITS}
    orders = training.shuffled_batches(len(train), config.batch_size, params.seed)

    metrics, checkpoints = [], []
    epochs = training.train(
        model, train, orders, epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio, pad_id=pad_id, device=device, report=ctx.report,
    )
    for end in epochs:
        path = f"checkpoints/epoch-{end.epoch}"
        model.save_pretrained(workdir / path)
        tokenizer.save_pretrained(workdir / path)
        checkpoints.append(
            {"seed": params.seed, "variant": "full", "epoch": end.epoch, "step": end.step,
             "learning_rate": end.learning_rate, "path": path}
        )
        for split, encoded in evaluation.items():
            accuracy = models.accuracy_by_language(model, encoded, config.eval_batch_size, pad_id, device)
            metrics += [
                {"seed": params.seed, "variant": "full", "language": language, "split": split,
                 "metric": "accuracy", "value": value, "epoch": end.epoch}
                for language, value in sorted(accuracy.items())
            ]
    write_table(workdir, "metrics", metrics)
    write_table(workdir, "checkpoints", checkpoints)
    final = {m["language"]: m["value"] for m in metrics if m["split"] == "test" and m["epoch"] == config.epochs}
    return {"epochs": config.epochs, "final_loss": end.loss, "test_accuracy": final, "device": str(device)}
