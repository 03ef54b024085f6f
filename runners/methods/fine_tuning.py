"""The fine-tuning loop that the finetune, sparse_finetune and ablation stages share: a checkpoint and
an evaluation after every epoch, resumable from the last finished epoch, optionally confined to
head masks (sparse fine-tuning) or planted modules (a known answer)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from runners.context import RESUME_FILE, TaskContext
from runners.inputs import Data
from runners.methods.sections import FinetuneSpec, ModelSpec, PlantedSpec
from runners.tables import write_table

EVAL_SPLITS = ("validation", "test")
PREDICTED_PREFIX = "predicted_label_"  # metric predicted_label_<i>: examples predicted as label i (the full model)


def plant(model, families: dict[str, str], overlap: float, seed: int, workdir: Path) -> dict:
    """{language: (L, H) planted set of its family}, laid out by the training seed; written to the
    planted_heads table."""
    from runners.methods import heads

    layers, heads_per_layer = heads.head_grid(model)
    sets = heads.planted_sets(layers, heads_per_layer, sorted(set(families.values())), overlap, seed)
    masks = {lang: sets[family] for lang, family in sorted(families.items())}
    write_table(workdir, "planted_heads", [
        {"seed": seed, "language": lang, "family": families[lang], "layer": l, "head": h, "kept": bool(mask[l, h])}
        for lang, mask in masks.items() for l in range(layers) for h in range(heads_per_layer)
    ])
    return masks


def fine_tune(
    data: Data,
    workdir: Path,
    ctx: TaskContext,
    *,
    seed: int,
    model_spec: ModelSpec,
    config: FinetuneSpec,
    masks: dict | None = None,
    language_sampling: str = "proportional",
    train_languages: tuple[str, ...] | None = None,
    variant: str | None = None,
    planted: PlantedSpec | None = None,
    families: dict[str, str] | None = None,
) -> dict:
    """Fine-tune from the seed's initialisation; a checkpoint and an evaluation after every epoch.

    Without `masks` (full fine-tuning) batches mix languages. With masks ({language: (L, H) 0/1
    tensor}, sparse fine-tuning) batches are language-pure, a batch of language l runs with mask
    l and updates only l's heads and the shared parameters, and each language is evaluated with
    its own mask.

    `train_languages` (the ablation) trains on those languages' examples only, from the same
    initialisation (the tokenizer is still built on every language's training text, so the
    embedding matrix and every seeded weight are those of full fine-tuning) and with the same order
    rules over the remaining rows; every language is still evaluated. `variant` names the rows of
    the metrics and checkpoints tables (default: full, or sft with masks).

    `planted` (the `planted:` section, with `families`, language -> family: full fine-tuning with
    planted modules, laid out by `plant` and written to the planted_heads table): batches still mix
    languages, and each example runs with its own language's set open and the other heads at gate
    `planted.leak` (per-example gates), so at leak 0 a head gets the task's gradient only from the
    examples whose set holds it, and `planted.silence` weighs the term that keeps the other heads
    silent on them (`heads.planted_modules`); with every head in every set, or at leak 1 without
    the silence term, this is ordinary fine-tuning, bit for bit. The model is evaluated with all
    heads, as pruning and TracIn then use it, and also under each language's planted set, its other
    heads cut off whatever the leak (metric rows of variant `planted`).
    """
    import torch  # heavy imports live here so that compiling a spec stays fast

    from runners.methods import heads, models, pruning, training

    variant = variant or ("full" if masks is None else "sft")
    device = torch.device(ctx.device)
    rows = data.examples()
    train_rows = [r for r in rows if r["split"] == "train"]
    tokenizer = models.build_tokenizer(model_spec, [t for r in train_rows for t in (r["text_a"], r["text_b"]) if t])
    # Saved with every checkpoint: inputs longer than the model was trained on are cut there
    # (pipeline(..., truncation=True)) instead of running past its position embeddings.
    tokenizer.model_max_length = config.max_length
    label_names = data.label_names()
    model = models.build_model(model_spec, tokenizer, label_names, config.max_length, seed).to(device)
    trimmed = {}
    if model_spec.trim_vocabulary:  # on every row, so that the ablation and SFT trim to the same vocabulary
        from runners.methods.vocabulary import trim_vocabulary

        before = (len(tokenizer), sum(p.numel() for p in model.parameters()))
        model, tokenizer = trim_vocabulary(model, tokenizer, [t for r in rows for t in (r["text_a"], r["text_b"]) if t])
        trimmed = {"vocabulary": {"tokens_before": before[0], "tokens_after": len(tokenizer),
                                  "parameters_before": before[1], "parameters_after": sum(p.numel() for p in model.parameters())}}
    pad_id = tokenizer.pad_token_id
    planted_masks = plant(model, families, planted.overlap, seed, workdir) if planted is not None else None  # {language: (L, H)}

    if train_languages is not None:
        train_rows = [r for r in train_rows if r["language"] in train_languages]
    train = models.encode(tokenizer, train_rows, config.max_length)
    if masks is None:
        orders = training.shuffled_batches(len(train), config.batch_size, seed)
        step_hook = None
        if planted_masks is not None:
            sets = torch.stack([planted_masks[language] for language in train.languages]).to(device)  # (N, L, H)

            def step_hook(indices: list[int], optimizer):
                return heads.planted_modules(model, sets[indices], planted.silence, planted.leak)
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
    # With planted modules, also each language alone, to run under its planted set (variant `planted`).
    planted_evaluation = {
        split: {lang: models.encode(tokenizer, [r for r in rows if r["split"] == split and r["language"] == lang], config.max_length)
                for lang in sorted(planted_masks)}
        for split in EVAL_SPLITS
    } if planted_masks is not None else {}

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
        warmup_ratio=config.warmup_ratio, optimizer=config.optimizer, pad_id=pad_id, device=device, report=ctx.report, step_hook=step_hook,
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
            accuracy, label_counts = {}, {}
            for language, encoded in groups.items():
                if language is None:
                    predicted = models.predict(model, encoded, config.eval_batch_size, pad_id, device)
                    accuracy.update(models.accuracy_of(encoded, predicted))
                    label_counts.update(models.predicted_label_counts(encoded, predicted, len(label_names)))
                else:
                    batches = models.batches(encoded, config.eval_batch_size, pad_id, device)
                    accuracy[language] = pruning.evaluate_accuracy(model, batches, masks[language])
            metrics += [
                {"seed": seed, "variant": variant, "language": language, "split": split,
                 "metric": "accuracy", "value": value, "epoch": end.epoch}
                for language, value in sorted(accuracy.items())
            ]
            for language, encoded in planted_evaluation.get(split, {}).items():  # the model under each planted set
                batches = models.batches(encoded, config.eval_batch_size, pad_id, device)
                metrics.append({"seed": seed, "variant": "planted", "language": language, "split": split,
                                "metric": "accuracy", "value": pruning.evaluate_accuracy(model, batches, planted_masks[language]),
                                "epoch": end.epoch})
            metrics += [  # the sanity gate "not collapsed" of langspec.science.findings reads these
                {"seed": seed, "variant": variant, "language": language, "split": split,
                 "metric": f"{PREDICTED_PREFIX}{label}", "value": float(count), "epoch": end.epoch}
                for language, counts in sorted(label_counts.items()) for label, count in enumerate(counts)
            ]
        # Written last, atomically: a resume finds this epoch's checkpoint and metrics complete.
        torch.save({**end.state, "metrics": metrics, "checkpoints": checkpoints, "loss": loss}, resume_path.with_suffix(".tmp"))
        os.replace(resume_path.with_suffix(".tmp"), resume_path)
    resume_path.unlink(missing_ok=True)  # the task is complete: nothing to resume, and it is big
    write_table(workdir, "metrics", metrics)
    write_table(workdir, "checkpoints", checkpoints)
    final = {m["language"]: m["value"] for m in metrics
             if m["metric"] == "accuracy" and m["split"] == "test" and m["epoch"] == config.epochs}
    return {"epochs": config.epochs, "final_loss": loss, "test_accuracy": final, "device": str(device),
            "resumed_from_epoch": resume["epoch"] if resume else 0,
            "train_examples": dict(sorted(Counter(train.languages).items())),  # per language: what it trained on
            **trimmed}
