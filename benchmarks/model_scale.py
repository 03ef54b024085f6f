"""TracIn at the paper's model size on CPU: exact scores against random projections (tracin.projection_dim),
on a random-init model of the xlm-roberta-base shape (vocab 250,002, hidden 768, 12 layers, 12 heads, T = 128).

What it measures, each method in its own process (so that peak RSS is its own): seconds for one checkpoint's
scores (n_test x n_train), the growth of peak RSS over the loaded model, and for each projection dimension the
Pearson correlation with the exact scores and the mean overlap of each test example's top-k proponents at k = 10
and k = 100 (k = 100 needs well over 100 training examples: with n_train = N a random ranking overlaps k/N).

Run (results go in benchmarks/RESULTS.md, "## The model side at the paper's size"):
    PYTHONPATH=. .venv/bin/python benchmarks/model_scale.py --train 256 --test 4 --dims 8192
    PYTHONPATH=. .venv/bin/python benchmarks/model_scale.py --train 32 --test 32 --test-block-mb 1 --dims 8192
The second one gives exact scores what the paper's 500 test examples cost them: with a bounded block
of test gradients, one pass over the training examples per block (a block closes at the first test
batch of 8 that reaches the budget, so 1 MB gives 4 passes; the projection keeps every test example).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def model_and_batches(args):
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(0)
    config = XLMRobertaConfig(  # xlm-roberta-base's shape
        vocab_size=250_002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=514, type_vocab_size=1, num_labels=3, attn_implementation="eager",
    )
    model = XLMRobertaForSequenceClassification(config)
    return model, batches(args.train, args.seq, seed=1), batches(args.test, args.seq, seed=2)


def batches(n: int, seq: int, seed: int, size: int = 8) -> list[dict]:
    """Random token ids with real-looking lengths (a quarter to all of T), padded to T."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, size):
        b = min(size, n - start)
        ids = torch.randint(5, 250_002, (b, seq), generator=gen)
        lengths = torch.randint(seq // 4, seq + 1, (b,), generator=gen)
        mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
        ids[:, 0] = 0
        ids = torch.where(mask.bool(), ids, torch.ones_like(ids))  # pad id 1
        out.append({"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (b,), generator=gen)})
    return out


def run_method(args) -> dict:
    from runners.methods.influence import checkpoint_scores

    torch.set_num_threads(args.threads)
    model, train, test = model_and_batches(args)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    block = args.test_block_mb * 2**20 if args.test_block_mb else None  # None: every test gradient kept, one pass
    scores = checkpoint_scores(model, train, test, projection_dim=args.dim or None, test_block_bytes=block)  # (n_test, n_train)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.save(scores, args.out)
    return {"seconds": seconds, "peak_rss_gb": peak / 2**20, "growth_gb": (peak - before) / 2**20}


def overlap(exact: torch.Tensor, approx: torch.Tensor, k: int) -> float:
    """Mean over test examples of |top-k(exact) ∩ top-k(approx)| / k."""
    k = min(k, exact.shape[1])
    shared = [len(set(e.topk(k).indices.tolist()) & set(a.topk(k).indices.tolist())) / k for e, a in zip(exact, approx)]
    return sum(shared) / len(shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dims", type=int, nargs="+", default=[8192], help="projection dimensions to compare with exact")
    parser.add_argument("--test-block-mb", type=int, default=0, help="tracin.test_block_mb (0: no limit): exact scores then "
                        "take one pass over the training examples per block of test examples, as at the paper's 500")
    parser.add_argument("--dim", type=int, default=0, help=argparse.SUPPRESS)  # one child process: 0 = exact
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.out:
        print(json.dumps(run_method(args)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as folder:
        results, scores = {}, {}
        for dim in [0, *args.dims]:
            out = Path(folder) / f"{dim}.pt"
            command = [sys.executable, __file__, "--train", str(args.train), "--test", str(args.test), "--seq", str(args.seq),
                       "--threads", str(args.threads), "--test-block-mb", str(args.test_block_mb), "--dim", str(dim), "--out", str(out)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            results[dim] = json.loads(done.stdout.strip().splitlines()[-1])
            scores[dim] = torch.load(out).double()
    exact = scores[0]
    print(f"xlm-roberta-base shape, {args.train} train x {args.test} test, T = {args.seq}, {args.threads} threads, "
          f"test_block_mb {args.test_block_mb or 'unlimited'}")
    print("| method | seconds | peak RSS (GB) | RSS growth (GB) | Pearson vs exact | top-10 overlap | top-100 overlap |")
    print("|---|---|---|---|---|---|---|")
    for dim, r in results.items():
        name = "exact" if dim == 0 else f"projection_dim {dim}"
        pearson = torch.corrcoef(torch.stack([exact.ravel(), scores[dim].ravel()]))[0, 1].item()
        print(f"| {name} | {r['seconds']:.1f} | {r['peak_rss_gb']:.2f} | {r['growth_gb']:.2f} | {pearson:.5f} | "
              f"{overlap(exact, scores[dim], 10):.2f} | {overlap(exact, scores[dim], 100):.2f} |")


if __name__ == "__main__":
    main()
