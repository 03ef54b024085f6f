"""TracInCP speed, memory and exactness: runners.methods.influence.checkpoint_scores against a one-backward-per-
example loop, the floor (one ordinary batched forward+backward over every example), the bound (the
floor plus the products with the test block that exact scores need), and Captum.

Run (about 5 minutes without Captum on one quiet thread, 9 with; results go in benchmarks/RESULTS.md "## TracIn"):
    PYTHONPATH=. python benchmarks/tracin.py            # add --captum if captum==0.9.* is importable
    # Captum outside the project's dependencies: pip install --no-deps --target /tmp/captum-pkgs captum==0.9.0
    # then PYTHONPATH=.:/tmp/captum-pkgs python benchmarks/tracin.py --captum
    PYTHONPATH=. python benchmarks/tracin.py --projection-dim 1024   # also the approximate, projected scores
Each method runs in its own process so that its peak RSS is its own.
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
import torch.nn.functional as F
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from runners.methods.influence import checkpoint_scores
from tests.reference.influence import naive_scores

# reference: the float64 loop the errors are taken against; bound: the floor's time plus that of the
# products with the test block that any exact method pays (`product_step`, timed on its own)
METHODS = ("fast", "naive", "floor", "bound", "reference")
TIMED = ("fast", "projected", "naive", "floor", "bound", "captum")  # run in interleaved rounds
LEARNING_RATES = (1e-3, 5e-4)  # one per checkpoint


def setup(args) -> tuple[XLMRobertaForSequenceClassification, list[dict], list[dict], list[dict]]:
    """The model, two checkpoints (init and after a few AdamW steps), 32-example train and test batches."""
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        intermediate_size=4 * args.hidden,
        max_position_embeddings=args.seq + 2,
        num_labels=3,
        attn_implementation=args.attention,
    )
    model = XLMRobertaForSequenceClassification(config)
    train, test = batches(args.train, args.seq, args.vocab, seed=1), batches(args.test, args.seq, args.vocab, seed=2)
    checkpoints = [{k: v.clone() for k, v in model.state_dict().items()}]
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATES[0])
    for batch in train[:4]:
        loss = F.cross_entropy(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checkpoints.append({k: v.clone() for k, v in model.state_dict().items()})
    return model, checkpoints, train, test


def batches(n: int, seq: int, vocab: int, seed: int, size: int = 32) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, size):
        b = min(size, n - start)
        ids = torch.randint(3, vocab, (b, seq), generator=gen)
        ids[:, 0] = 0
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 3, (b,), generator=gen)})
    return out


def run_method(method: str, args) -> dict:
    torch.set_num_threads(args.threads)
    model, checkpoints, train, test = setup(args)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    scores = None
    products = 0.0  # seconds in product_step (bound only)
    if method == "captum":
        scores = captum_scores(model, checkpoints, train, test)
    else:
        for lr, state in zip(LEARNING_RATES, checkpoints):
            model.load_state_dict(state)
            if method in ("floor", "bound"):
                floor_step(model, train + test)
                if method == "bound":
                    started = time.perf_counter()
                    product_step(model, train, test)
                    products += time.perf_counter() - started
                continue
            term = {
                "fast": lambda: checkpoint_scores(model, train, test).double(),
                "projected": lambda: checkpoint_scores(model, train, test, projection_dim=args.projection_dim).double(),
                "naive": lambda: naive_scores(model, train, test, dtype=torch.float32).double(),
                "reference": lambda: naive_scores(model, train, test, dtype=torch.float64),
            }[method]()
            scores = lr * term if scores is None else scores + lr * term
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if scores is not None:
        torch.save(scores.double(), args.out)
    return {"method": method, "seconds": seconds, "products_seconds": products, "peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - rss_before) / 1024}


def floor_step(model, all_batches) -> None:
    """One ordinary batched forward and backward (parameter gradients) over every example."""
    model.eval()
    for batch in all_batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        F.cross_entropy(logits, batch["labels"], reduction="sum").backward()
    model.zero_grad(set_to_none=True)


def product_step(model, train, test) -> None:
    """The work an exact method adds to the floor even at the floor's efficiency: the products of each
    train batch's per-example weight gradients with the kept test gradients, (B, P) @ (P, n_test), for
    every encoder Linear (they take T tokens per example, so the Gram identity does not pay at T = 64).
    The per-example weight gradients themselves cost the floor's weight-gradient GEMM in flops, and
    the classifier, biases, LayerNorms and embeddings are left out, so floor + this is a lower bound."""
    n_test = sum(len(b["labels"]) for b in test)
    layers = [m for m in model.roberta.encoder.modules() if isinstance(m, torch.nn.Linear)]
    blocks = [torch.ones(m.weight.numel(), n_test) for m in layers]  # each layer's test block, (P, n_test)
    buffer = torch.ones(max(len(b["labels"]) for b in train) * max(len(block) for block in blocks))  # one reused (B, P)
    for batch in train:
        size = len(batch["labels"])
        for block in blocks:
            buffer[: size * len(block)].view(size, len(block)) @ block


class Logits(torch.nn.Module):
    """The transformers model as Captum wants it: positional inputs in, a logits tensor out."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


def captum_scores(model, checkpoints, train, test) -> torch.Tensor:
    """Captum 0.9 TracInCP, exact mode (per-example loss, one autograd.grad per example)."""
    from captum.influence import TracInCP

    def load(module, path):
        saved = torch.load(path)
        module.inner.load_state_dict(saved["state"])
        return saved["lr"]

    cat = lambda batches, key: torch.cat([b[key] for b in batches])  # noqa: E731
    dataset = torch.utils.data.TensorDataset(cat(train, "input_ids"), cat(train, "attention_mask"), cat(train, "labels"))
    loss = torch.nn.CrossEntropyLoss(reduction="none")  # per-example losses: Captum's exact mode
    with tempfile.TemporaryDirectory() as folder:
        paths = [str(Path(folder) / f"c{i}.pt") for i in range(len(checkpoints))]
        for path, lr, state in zip(paths, LEARNING_RATES, checkpoints):
            torch.save({"state": state, "lr": lr}, path)
        tracin = TracInCP(Logits(model).eval(), dataset, paths, checkpoints_load_func=load, loss_fn=loss, batch_size=32)
        return tracin.influence((cat(test, "input_ids"), cat(test, "attention_mask"), cat(test, "labels")), k=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--test", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=5000)
    parser.add_argument("--attention", default="eager", choices=["eager", "sdpa"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds of fast, naive, floor, bound (fastest kept)")
    parser.add_argument("--captum", action="store_true", help="also time Captum 0.9 TracInCP (exact mode), in every round")
    parser.add_argument("--projection-dim", type=int, help="also time checkpoint_scores with this projection_dim (approximate)")
    parser.add_argument("--method", choices=[*METHODS, "captum", "projected"], help=argparse.SUPPRESS)  # one child process
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(json.dumps(run_method(args.method, args)))
        return
    report(args)


def report(args) -> None:
    with tempfile.TemporaryDirectory() as folder:
        print_table(args, Path(folder))


def print_table(args, folder: Path) -> None:
    methods = [*METHODS, "captum"] if args.captum else list(METHODS)
    if args.projection_dim:
        methods.insert(1, "projected")
    results = {}
    passthrough = [a for a in sys.argv[1:] if a != "--captum"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    # The timed methods run in interleaved rounds and keep their fastest: a shared machine's load
    # drifts over minutes, and this keeps the ratios between methods fair.
    timed = [m for m in methods if m in TIMED]
    schedule = [m for _ in range(args.rounds) for m in timed] + [m for m in methods if m not in timed]
    products = []  # product_step's seconds in each bound run
    for method in schedule:
        out = folder / f"{method}.pt"
        command = [sys.executable, __file__, *passthrough, "--method", method, "--out", str(out)]
        child = subprocess.run(command, capture_output=True, text=True, env=env)
        if child.returncode != 0:
            sys.exit(f"{method} failed:\n{child.stderr}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        products += [result["products_seconds"]] if method == "bound" else []
        if method not in results or result["seconds"] < results[method]["seconds"]:
            results[method] = result
        print(f"{method}: {result['seconds']:.2f} s", file=sys.stderr, flush=True)
    # The bound from its parts, each at its best: the floor's best time (the floor's own runs) plus the
    # products' best, so that the noise of two separate processes cannot put it below the floor.
    results["bound"]["seconds"] = results["floor"]["seconds"] + min(products)
    reference = torch.load(folder / "reference.pt")
    pairs = args.train * args.test
    print(f"tiny XLM-R, {args.attention}, T={args.seq}, hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, "
          f"{args.train} train x {args.test} test, 2 checkpoints, {args.threads} thread(s), torch {torch.__version__}, "
          f"best of {args.rounds} interleaved rounds" + (f", projection_dim {args.projection_dim}" if args.projection_dim else "") + "\n")
    print("| method | time (s) | pairs/s | vs naive | vs floor | peak RSS (MB) | RSS growth (MB) | max rel. error |")
    print("|---|---|---|---|---|---|---|---|")
    for method in methods:
        r = results[method]
        error = "-"
        if (folder / f"{method}.pt").exists() and method != "reference":
            scores = torch.load(folder / f"{method}.pt")
            error = f"{float((scores - reference).abs().max() / reference.abs().max()):.1e}"
        rate = "-" if method in ("floor", "bound") else f"{2 * pairs / r['seconds']:,.0f}"
        print(f"| {method} | {r['seconds']:.2f} | {rate} | {results['naive']['seconds'] / r['seconds']:.2f}x | "
              f"{r['seconds'] / results['floor']['seconds']:.2f}x | {r['peak_rss_mb']:.0f} | {r['rss_growth_mb']:.0f} | {error} |")

    if args.captum:
        captum, fast, bound = (results[m]["seconds"] for m in ("captum", "fast", "bound"))
        print(f"\nfast is {captum / fast:.1f}x Captum; the bound is {captum / bound:.1f}x Captum, the most any exact method "
              f"with dense per-example products can reach here; fast is {fast / bound:.2f}x the bound")
    if args.projection_dim:
        print_agreement(torch.load(folder / "projected.pt"), reference)


def print_agreement(scores: torch.Tensor, reference: torch.Tensor) -> None:
    """How far the projected (approximate) scores are from the exact ones, beyond the max error."""
    ranks = torch.stack([x.flatten().argsort().argsort().double() for x in (scores, reference)])
    pearson = float(torch.corrcoef(torch.stack([scores.flatten(), reference.flatten()]))[0, 1])
    print(f"\nprojected vs reference: relative Frobenius error {float((scores - reference).norm() / reference.norm()):.3f}, "
          f"Pearson {pearson:.4f}, Spearman {float(torch.corrcoef(ranks)[0, 1]):.4f}")


if __name__ == "__main__":
    main()
