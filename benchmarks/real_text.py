"""The real-text study's model on this machine: langspec's fine-tuning loop against the Hugging Face Trainer,
side by side, and TracIn's time per training example, exact and projected (docs/real-text.md).

The model is multilingual-e5-small trimmed to the utterances of specs/real_text_quick.yaml's data (the same
data section), a 10-class head; one torch thread, as the study's tasks run.

Run (about 6 minutes; the Trainer needs accelerate, outside the project's dependencies):
    pip install --no-deps --target /tmp/accelerate-pkgs accelerate==1.15.0 psutil==7.2.2
    PYTHONPATH=.:/tmp/accelerate-pkgs .venv/bin/python benchmarks/real_text.py --steps 20 --repeat 3
Each round times langspec's loop, then the Trainer, on the same batches from the same weights; the ratio is
Trainer time / langspec time (above 1: langspec is faster).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch


def setup(spec_path: str):
    """The trimmed packaged model, its tokenizer and the encoded training rows of the spec's data."""
    from langspec.load import load_spec
    from runners.data import label_names, load_examples
    from runners.methods import models
    from runners.methods.vocabulary import trim_vocabulary

    spec = load_spec(spec_path).spec
    rows = load_examples(spec.data)
    names = label_names(spec.data, rows)
    tokenizer = models.build_tokenizer(spec.model, [])
    model = models.build_model(spec.model, tokenizer, names, spec.finetune.max_length, seed=0)
    model, tokenizer = trim_vocabulary(model, tokenizer, [t for r in rows for t in (r["text_a"], r["text_b"]) if t])
    train = [r for r in rows if r["split"] == "train"]
    return spec, model, tokenizer, models.encode(tokenizer, train, spec.finetune.max_length)


def time_langspec(model, tokenizer, encoded, batches: list[list[int]], lr: float, optimizer: str) -> float:
    from runners.methods import training

    model = copy.deepcopy(model)
    started = time.perf_counter()
    list(training.train(model, encoded, lambda epoch: batches, epochs=1, lr=lr, weight_decay=0.01, warmup_ratio=0.1,
                        optimizer=optimizer, pad_id=tokenizer.pad_token_id, device=torch.device("cpu"), report=lambda *args: None))
    return time.perf_counter() - started


def time_trainer(model, tokenizer, encoded, batches: list[list[int]], lr: float) -> float:
    """The Trainer on the same batches in the same order (a sampler that yields them), the same optimizer
    settings (AdamW, linear warm-up over 10% of the steps and decay), no evaluation, no saving."""
    from torch.utils.data import Dataset, Sampler
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    class Rows(Dataset):
        def __len__(self):
            return len(encoded)

        def __getitem__(self, i):
            return {"input_ids": encoded.input_ids[i], "labels": encoded.labels[i]}

    class InOrder(Sampler):
        def __iter__(self):
            return iter([i for batch in batches for i in batch])

        def __len__(self):
            return sum(map(len, batches))

    class FixedOrderTrainer(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return InOrder()

    arguments = TrainingArguments(output_dir="/tmp/real-text-trainer", per_device_train_batch_size=len(batches[0]),
                                  num_train_epochs=1, learning_rate=lr, weight_decay=0.01, warmup_steps=0.1,  # a float < 1: a share of the steps
                                  lr_scheduler_type="linear", logging_strategy="no", save_strategy="no", report_to=[],
                                  use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = FixedOrderTrainer(model=copy.deepcopy(model), args=arguments, train_dataset=Rows(),
                                data_collator=DataCollatorWithPadding(tokenizer))
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def tracin_sample(encoded, examples: int) -> tuple[list[int], list[int]]:
    """`examples` training rows and 100 others as test examples, drawn across the languages (seeded)."""
    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(0)).tolist()
    return order[:examples], order[examples:examples + 100]


def time_tracin(model, tokenizer, encoded, examples: int, projection_dim: int | None) -> tuple[float, torch.Tensor]:
    """Seconds per training example of one checkpoint's TracIn scores against 100 test examples, and the
    scores, (100, examples)."""
    from runners.methods import models
    from runners.methods.influence import checkpoint_scores

    pad = tokenizer.pad_token_id
    train_rows, test_rows = tracin_sample(encoded, examples)
    train = list(models.batches(encoded, 32, pad, torch.device("cpu"), train_rows))
    test = list(models.batches(encoded, 32, pad, torch.device("cpu"), test_rows))
    started = time.perf_counter()
    scores = checkpoint_scores(model.eval(), train, test, projection_dim=projection_dim)
    return (time.perf_counter() - started) / examples, scores


def agreement(exact: torch.Tensor, projected: torch.Tensor, encoded, examples: int) -> dict[str, float]:
    """How far projected scores stand from exact ones: Pearson r over all (test, train) pairs; the mean
    share of each test example's top-k proponents that both find (k = 20, the real study's top_k, and 100);
    and S+ (the share of a test example's top 20 from its own language) by each, its mean and the mean
    absolute difference per test example."""
    from model_scale import overlap

    train_rows, test_rows = tracin_sample(encoded, examples)
    languages = [encoded.languages[i] for i in train_rows]

    def s_plus(scores: torch.Tensor) -> torch.Tensor:
        top = scores.topk(20, dim=1).indices.tolist()
        return torch.tensor([sum(languages[j] == encoded.languages[t] for j in row) / 20 for t, row in zip(test_rows, top)])

    r = torch.corrcoef(torch.stack([exact.flatten(), projected.flatten()]).double())[0, 1]
    exact_s, projected_s = s_plus(exact), s_plus(projected)
    return {"pearson": float(r), "top20_overlap": overlap(exact, projected, 20), "top100_overlap": overlap(exact, projected, 100),
            "s_plus_exact": float(exact_s.mean()), "s_plus_projected": float(projected_s.mean()),
            "s_plus_mean_abs_difference": float((exact_s - projected_s).abs().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="specs/real_text_quick.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tracin-examples", type=int, default=256)
    parser.add_argument("--projection-dim", type=int, default=1024)
    parser.add_argument("--checkpoint", default=None, help="TracIn on this saved checkpoint (a fine-tuned model's "
                        "directory, with its trimmed tokenizer) instead of the untrained one")
    parser.add_argument("--optimizer", choices=["foreach", "fused"], default=None,
                        help="langspec's AdamW (finetune.optimizer; default: the spec's); the Trainer's is fused")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec, model, tokenizer, encoded = setup(args.spec)
    size = spec.finetune.batch_size
    batches = [list(range(i * size, (i + 1) * size)) for i in range(args.steps)]
    rounds = []
    for round_ in range(args.repeat):  # --repeat 0: TracIn only
        ours = time_langspec(model, tokenizer, encoded, batches, spec.finetune.lr, args.optimizer or spec.finetune.optimizer)
        theirs = time_trainer(model, tokenizer, encoded, batches, spec.finetune.lr)
        rounds.append({"langspec_s": ours, "trainer_s": theirs, "ratio": theirs / ours})
        print(f"round {round_ + 1}: langspec {ours:.1f} s, Trainer {theirs:.1f} s, ratio {theirs / ours:.3f}", flush=True)
    if args.checkpoint:
        from runners.data import load_examples
        from runners.methods import models

        model, tokenizer = models.load_checkpoint(args.checkpoint)
        train = [r for r in load_examples(spec.data) if r["split"] == "train"]
        encoded = models.encode(tokenizer, train, spec.finetune.max_length)
    exact_s, exact = time_tracin(model, tokenizer, encoded, args.tracin_examples, None)
    projected_s, projected = time_tracin(model, tokenizer, encoded, args.tracin_examples, args.projection_dim)
    tracin = {"exact_s_per_example": exact_s, "projected_s_per_example": projected_s, **agreement(exact, projected, encoded, args.tracin_examples)}
    print(f"TracIn, one checkpoint, 100 test examples: exact {exact_s * 1000:.0f} ms per training example, projected to "
          f"{args.projection_dim} {projected_s * 1000:.0f} ms; projected against exact: Pearson {tracin['pearson']:.5f}, "
          f"top-20 overlap {tracin['top20_overlap']:.3f}, top-100 {tracin['top100_overlap']:.3f}; S+ exact "
          f"{tracin['s_plus_exact']:.3f}, projected {tracin['s_plus_projected']:.3f}, mean |difference| per test example "
          f"{tracin['s_plus_mean_abs_difference']:.3f}")
    figures = {"steps": args.steps, "batch_size": size, "optimizer": args.optimizer or spec.finetune.optimizer, "rounds": rounds,
               "median_ratio": statistics.median(r["ratio"] for r in rounds) if rounds else None, "tracin": tracin,
               "parameters": sum(p.numel() for p in model.parameters())}
    print(json.dumps({"median_ratio": figures["median_ratio"], "parameters": figures["parameters"]}))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    main()
