"""What storing every example's gradient norm (#24) costs a TracIn checkpoint at the demo's size: the
demo's tiny XLM-R (4 layers, 4 heads, hidden 64, random init), 1,000 training and 100 test examples
of 20-40 tokens, batches of 32, exact scores, torch threads 2. Times `checkpoint_scores` of the
checkout on PYTHONPATH: run it in this checkout and in one from before #24, side by side.

    git worktree add /tmp/before-24 68e8a74
    for i in 1 2 3; do PYTHONPATH=/tmp/before-24 .venv/bin/python benchmarks/norms_cost.py; PYTHONPATH=. .venv/bin/python benchmarks/norms_cost.py; done
"""

from __future__ import annotations

import time

import torch
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from runners.methods.influence import checkpoint_scores


def batches(n: int, generator: torch.Generator) -> list[dict]:
    out = []
    for start in range(0, n, 32):
        size = min(32, n - start)
        length = int(torch.randint(20, 41, (1,), generator=generator))
        ids = torch.randint(5, 2000, (size, length), generator=generator)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 3, (size,), generator=generator)})
    return out


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=2000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                              intermediate_size=128, max_position_embeddings=130, num_labels=3)
    model = XLMRobertaForSequenceClassification(config).eval()
    generator = torch.Generator().manual_seed(0)
    train, test = batches(1000, generator), batches(100, generator)
    start = time.perf_counter()
    scores = checkpoint_scores(model, train, test)
    print(f"checkpoint_scores {tuple(scores.shape)}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
