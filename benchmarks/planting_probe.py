"""A probe of how to plant language modules that the instrument can find (#24, docs/known-answers.md).

Planting by head masks alone (`planted:` today) leaves a model that is at chance with all its heads:
a language's out-of-set heads were never trained on its inputs. This probe trains the demo's world
(5 toy languages, the tiny 4 x 4 x 64 model, batch 32, lr 1e-3) at a planted overlap with each
example's loss under its family's planted set, plus LAMBDA times a consistency term: the KL
divergence of the all-heads prediction from the (detached) planted-set prediction, taken in the same
forward on the batch twice over. It prints each language's test accuracy with all heads and under
its planted set, the heads that importance pruning (threshold 0.95, step 0.1) keeps, and their
Jaccard with the planted set against random masks of that size.

    EPOCHS=10 PYTHONPATH=. .venv/bin/python benchmarks/planting_probe.py OVERLAP SEED LAMBDA
    # LAMBDA 0: no consistency term (masked training, as `planted:` does, up to the draws of dropout)
"""

import os
import sys
import time

import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from langspec.science.stats import random_mask_jaccard
from runners.methods.sections import ModelSpec, TinyModelSpec
from runners.methods import heads, models, pruning, toy
from runners.methods.models import collate

LANGUAGES = ["ka", "kb", "la", "lb", "mi"]
LAYERS, HEADS, BATCH = 4, 4, 32


def main(overlap: float, seed: int, lam: float, epochs: int) -> None:
    torch.set_num_threads(2)
    rows = toy.generate(LANGUAGES, {"train": 1000, "validation": 100, "test": 100}, parallel=True, lexicon_overlap=0.5, seed=0)
    spec = ModelSpec(tiny=TinyModelSpec())
    train_rows = [r for r in rows if r["split"] == "train"]
    tokenizer = models.build_tokenizer(spec, [t for r in train_rows for t in (r["text_a"], r["text_b"]) if t])
    model = models.build_model(spec, tokenizer, list(toy.LABELS), 64, seed)
    sets = heads.planted_sets(LAYERS, HEADS, sorted({toy.FAMILIES[lang] for lang in LANGUAGES}), overlap, seed)
    masks = {lang: sets[toy.FAMILIES[lang]] for lang in LANGUAGES}
    train = models.encode(tokenizer, train_rows, 64)
    own = torch.stack([masks[lang] for lang in train.languages])  # (N, L, H)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    steps = epochs * ((len(train) + BATCH - 1) // BATCH)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    started = time.time()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
        for i in range(0, len(order), BATCH):
            indices = order[i : i + BATCH]
            batch = collate(train, indices, tokenizer.pad_token_id, torch.device("cpu"))
            size = len(indices)
            twice = {k: torch.cat([v, v]) for k, v in batch.items() if k != "labels"}  # planted set, then all heads
            with heads.head_mask(model, torch.cat([own[indices], torch.ones(size, LAYERS, HEADS)])):
                logits = model(**twice).logits
            planted, everything = logits[:size], logits[size:]
            task = F.cross_entropy(planted, batch["labels"])
            consistency = F.kl_div(F.log_softmax(everything, -1), F.log_softmax(planted.detach(), -1), log_target=True, reduction="batchmean")
            (task + lam * consistency).backward()
            optimizer.step()
            optimizer.zero_grad()
            schedule.step()
    print(f"overlap {overlap}, seed {seed}, lambda {lam}, {epochs} epochs: trained in {time.time() - started:.0f} s")
    model.eval()
    excess = []
    for lang in LANGUAGES:
        def batches(split: str, size: int) -> list[dict]:
            encoded = models.encode(tokenizer, [r for r in rows if r["split"] == split and r["language"] == lang], 64)
            return list(models.batches(encoded, size, tokenizer.pad_token_id, torch.device("cpu")))

        test, validation = batches("test", 128), batches("validation", 32)
        all_heads = pruning.evaluate_accuracy(model, test, torch.ones(LAYERS, HEADS))
        under_set = pruning.evaluate_accuracy(model, test, masks[lang])
        mask, _, _ = pruning.iterative_prune(
            LAYERS, HEADS, lambda m: heads.head_importance(model, validation, m),
            lambda m: pruning.evaluate_accuracy(model, validation, m), None, threshold=0.95, step=0.1,
        )
        planted_set = masks[lang]
        both, either = float((mask * planted_set).sum()), float(((mask + planted_set) > 0).sum())
        random = random_mask_jaccard(LAYERS * HEADS, int(planted_set.sum()), int(mask.sum()))
        jaccard = both / either if either else 0.0
        excess.append(jaccard - random)
        print(f"{lang}: accuracy all heads {all_heads:.3f}, planted set {under_set:.3f}; planted {int(planted_set.sum())}, "
              f"kept {int(mask.sum())}, J {jaccard:.2f} (random masks {random:.2f})")
    print(f"mean J - random: {sum(excess) / len(excess):+.3f}")


if __name__ == "__main__":
    main(float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(os.environ.get("EPOCHS", 5)))
