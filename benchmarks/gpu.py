"""What the paper's study costs on one GPU (issue #13), measured through langspec's own code on a random-init
model of the xlm-roberta-base shape (vocab 250,002, hidden 768, 12 layers, 12 heads, FFN 3072, 3 labels, the
spec's attention and dropout) and random full-length token sequences (T = 128, no padding: an upper bound for
real pairs, which are shorter):

  1. matmul peak: an 8192^3 GEMM in fp32 (TF32 off), TF32 and bf16, timed with CUDA events;
  2. the fine-tuning step at the paper's settings through runners.methods.training.train (the finetune
     stage's loop: batch 32, AdamW, bf16 autocast on CUDA), full and sparse (half the heads, heads.only_heads):
     the median step, model TFLOP/s and its fraction of the bf16 peak;
  3. evaluation forwards (models.predict, fp32) and head importance (heads.head_importance, fp32);
  4. TracIn through checkpoint_scores (fp32, TF32 off): exact and projected pairs/s at 256 train x 32 test,
     Pearson and top-10 overlap of projected against exact; then the projected scores at the spec's test
     count for two train sizes, a line: seconds = fixed + per_train x n_train;
  5. the projected wall time of specs/xnli.yaml on one GPU, term by term, from its compiled task graph.

On the device machine run benchmarks/gpu.sh (it installs what is missing and keeps the log); the CPU check
of the script itself (tiny model, a few examples, one thread; its figures mean nothing):
    PYTHONPATH=. .venv/bin/python benchmarks/gpu.py --device cpu --tiny
Results: gpu.json in --out ($OUT, or a temporary folder), rewritten after every part so that a run cut short
keeps what it measured; a part that fails keeps its traceback there and the others still run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

PAD = 1  # XLM-R's pad id; 0 is <s>, ids 0-4 are its special tokens
LABELS = 3


@dataclass(frozen=True)
class Sizes:
    vocab: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    positions: int  # max_position_embeddings
    seq: int  # T: every example is this long
    gemm: int  # n of the n x n x n matmul
    batch: int  # fine-tuning batch (= prune's and TracIn's gradient batch)
    eval_batch: int
    warmup_steps: int
    timed_steps: int
    eval_examples: int
    importance_examples: int
    tracin_train: int  # exact against projected
    tracin_test: int
    fit_train: tuple[int, int]  # train sizes of the projected line
    fit_test: int | None  # its test examples; None: the spec's (tracin.test_per_language x languages)


# The paper specs' settings (specs/base/paper.yaml: batch 32, max_length 128, eval_batch_size 256); main()
# checks them against the spec. Sized from the CPU figures in benchmarks/RESULTS.md for seconds per part on an
# H200 (not yet measured there); TracIn exact at 32 test examples keeps ~11 GB of test gradients.
BASE = Sizes(vocab=250_002, hidden=768, layers=12, heads=12, ffn=3072, positions=514, seq=128, gemm=8192, batch=32,
             eval_batch=256, warmup_steps=5, timed_steps=30, eval_examples=2048, importance_examples=512,
             tracin_train=256, tracin_test=32, fit_train=(256, 768), fit_test=None)
TINY = Sizes(vocab=1000, hidden=64, layers=2, heads=4, ffn=256, positions=34, seq=32, gemm=256, batch=8, eval_batch=32,
             warmup_steps=2, timed_steps=5, eval_examples=64, importance_examples=32, tracin_train=32, tracin_test=8,
             fit_train=(16, 32), fit_test=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and few examples: checks the script, on CPU")
    parser.add_argument("--spec", default="specs/xnli.yaml", help="the spec whose wall time is projected")
    parser.add_argument("--projection-dim", type=int, default=8192)
    parser.add_argument("--out", default=os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-bench-"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"torch {torch.__version__} sees no CUDA device; run with --device cpu --tiny to check the script")
    if device.type == "cpu":
        torch.set_num_threads(1)  # a check of the script, not a measurement
    sizes = TINY if args.tiny else BASE
    out = Path(args.out) / "gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    from langspec.compile import compile_spec
    from langspec.load import load_spec

    loaded = load_spec(args.spec)
    spec, graph = loaded.points[0].spec, compile_spec(loaded)
    if not args.tiny:
        check_paper_settings(spec, sizes, args.projection_dim)
    fit_test = sizes.fit_test or spec.tracin.test_per_language * len(spec.data.languages)

    results = {"provenance": provenance(device, args), "sizes": asdict(sizes)}
    failed = []

    def measure(part: str, work) -> None:
        """results[part] = work(), or its traceback: one part's failure (a CUDA-only bug, out of memory)
        must not cost the device time of the others. The JSON is rewritten after every part."""
        try:
            results[part] = work()
        except Exception:
            traceback.print_exc()
            results[part] = {"error": traceback.format_exc()}
            failed.append(part)
        results["seconds_so_far"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"[{results['seconds_so_far']:7.1f} s] {part}: {json.dumps(rounded(results[part]))}", flush=True)

    measure("matmul_peak", lambda: matmul_peak(sizes.gemm, device))
    model = random_model(sizes, spec.model, device)
    measure("model", lambda: {"parameters": sum(p.numel() for p in model.parameters()),
                              "linear_parameters": linear_parameters(model)})
    bf16_peak = results["matmul_peak"].get("bf16", {}).get("tflops", math.nan)
    measure("finetune_step", lambda: finetune_step(model, sizes, spec.finetune, device, False, bf16_peak))
    measure("sft_step", lambda: finetune_step(model, sizes, spec.finetune, device, True, bf16_peak))
    measure("eval_forward", lambda: eval_forward(model, sizes, device))
    measure("head_importance", lambda: head_importance(model, sizes, device))
    test_block = int(spec.tracin.test_block_mb * 2**20) if spec.tracin.test_block_mb else None
    measure("tracin", lambda: tracin(model, sizes, device, args.projection_dim, test_block))
    measure("tracin_fit", lambda: tracin_fit(model, sizes, device, args.projection_dim, test_block, fit_test))
    measure("estimate", lambda: {"spec": args.spec, "tiny_model": args.tiny,
                                 **wall_time(spec, graph, results, args.projection_dim)})
    if failed:
        raise SystemExit(f"failed: {failed}; each one's traceback is in {out}")
    print_estimate(results["estimate"])
    print(f"results: {out}")


def rounded(value):
    """Floats to 4 significant digits, for the log (the JSON keeps them whole)."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def check_paper_settings(spec, sizes: Sizes, projection_dim: int) -> None:
    """Fail before measuring when the figures would not be the spec's."""
    settings = {"finetune.batch_size": (spec.finetune.batch_size, sizes.batch),
                "finetune.max_length": (spec.finetune.max_length, sizes.seq),
                "finetune.eval_batch_size": (spec.finetune.eval_batch_size, sizes.eval_batch),
                "tracin.batch_size": (spec.tracin.batch_size, sizes.batch),
                "prune.batch_size": (spec.prune.batch_size, sizes.batch),
                "tracin.projection_dim": (spec.tracin.projection_dim, projection_dim)}
    differ = {key: pair for key, pair in settings.items() if pair[0] != pair[1]}
    if differ:
        raise SystemExit(f"the spec's settings differ from what is measured (spec, measured): {differ}; "
                         "change BASE or --projection-dim")


def provenance(device: torch.device, args) -> dict:
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
    except OSError:  # no git on the machine
        commit = None
    return {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "transformers": transformers.__version__, "git_commit": commit, "args": vars(args),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
    }


# --- 1. the matmul peak ------------------------------------------------------------------------


def elapsed(work, device: torch.device) -> float:
    """Seconds of work(): CUDA events on a GPU, the wall clock on a CPU."""
    if device.type != "cuda":
        start = time.perf_counter()
        work()
        return time.perf_counter() - start
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    work()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000


def matmul_peak(n: int, device: torch.device, reps: int = 10) -> dict:
    """TFLOP/s of an n x n x n product in fp32 (TF32 off, what exact TracIn runs in), TF32 and bf16."""
    saved = torch.backends.cuda.matmul.allow_tf32
    peaks = {}
    kinds = (("fp32", torch.float32, False), ("tf32", torch.float32, True), ("bf16", torch.bfloat16, False))
    for name, dtype, tf32 in kinds:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a, b, c = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(3))
        for _ in range(3):
            torch.mm(a, b, out=c)
        seconds = elapsed(lambda: [torch.mm(a, b, out=c) for _ in range(reps)], device) / reps
        peaks[name] = {"n": n, "seconds": seconds, "tflops": 2 * n**3 / seconds / 1e12}
        del a, b, c
    torch.backends.cuda.matmul.allow_tf32 = saved
    return peaks


# --- the model and its data --------------------------------------------------------------------


def random_model(sizes: Sizes, model_spec, device: torch.device):
    """A random-init XLM-R classifier laid out like runners.methods.models.build_model's."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=sizes.vocab, hidden_size=sizes.hidden, num_hidden_layers=sizes.layers, num_attention_heads=sizes.heads,
        intermediate_size=sizes.ffn, max_position_embeddings=sizes.positions, type_vocab_size=1, pad_token_id=PAD,
        bos_token_id=0, eos_token_id=2, num_labels=LABELS, hidden_dropout_prob=model_spec.dropout,
        attention_probs_dropout_prob=model_spec.dropout, attn_implementation=model_spec.attention,
    )
    with device:  # initialised where it runs: the 250,002 x 768 embedding is slow to fill on a CPU
        return XLMRobertaForSequenceClassification(config)


def linear_parameters(model) -> int:
    """The encoder's Linear weights: the N of a step's 6 N B T matmul flops (the embeddings are lookups, and
    the classifier sees one token per example)."""
    return sum(m.weight.numel() for m in model.base_model.encoder.modules() if isinstance(m, torch.nn.Linear))


def random_examples(n: int, sizes: Sizes, seed: int):
    """n examples of T tokens: <s> then random ids, no padding; random labels."""
    from runners.methods.models import Encoded

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, sizes.vocab, (n, sizes.seq), generator=generator)  # (n, T)
    ids[:, 0] = 0
    labels = torch.randint(0, LABELS, (n,), generator=generator)  # (n,)
    return Encoded([f"ex{i}" for i in range(n)], ["xx"] * n, ids.tolist(), labels.tolist())


def batches_of(n: int, sizes: Sizes, device: torch.device, seed: int, batch_size: int | None = None) -> list[dict]:
    from runners.methods import models

    return list(models.batches(random_examples(n, sizes, seed), batch_size or sizes.batch, PAD, device))


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


# --- 2. the fine-tuning step -------------------------------------------------------------------


def finetune_step(model, sizes: Sizes, config, device: torch.device, sft: bool, bf16_tflops: float) -> dict:
    """Each step's seconds through training.train, the finetune stage's loop: it calls `report` after
    loss.item(), when the step has finished on the GPU. sft: with heads.only_heads and half the heads
    masked, as sparse fine-tuning steps."""
    from runners.methods import heads, training

    steps = sizes.warmup_steps + sizes.timed_steps
    encoded = random_examples(steps * sizes.batch, sizes, seed=1)
    stamps = [time.perf_counter()]
    mask = (torch.arange(sizes.layers * sizes.heads) % 2).view(sizes.layers, sizes.heads).float().to(device)  # (L, H)
    hook = (lambda indices, optimizer: heads.only_heads(model, optimizer, mask)) if sft else None
    reset_peak(device)
    for _ in training.train(
        model, encoded, training.shuffled_batches(len(encoded), sizes.batch, seed=0), epochs=1, lr=config.lr,
        weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio, pad_id=PAD, device=device,
        report=lambda step, total, text: stamps.append(time.perf_counter()), step_hook=hook,
    ):
        pass
    seconds = [b - a for a, b in zip(stamps, stamps[1:])][sizes.warmup_steps :]
    median = statistics.median(seconds)
    tokens = sizes.batch * sizes.seq
    flops = tokens * (6 * linear_parameters(model) + 12 * sizes.layers * sizes.seq * sizes.hidden)
    return {
        "precision": "bf16 autocast, fp32 weights and AdamW" if device.type == "cuda"
                     else "fp32 (training.train autocasts on CUDA only)",
        "batch": sizes.batch, "seq": sizes.seq, "timed_steps": len(seconds), "warmup_steps": sizes.warmup_steps,
        "median_s": median, "min_s": min(seconds), "max_s": max(seconds), "examples_per_s": sizes.batch / median,
        "flops_per_step": flops, "flops_formula": "B T (6 N_linear + 12 L T d): encoder matmuls, forward and backward",
        "model_tflops": flops / median / 1e12, "fraction_of_bf16_peak": flops / median / 1e12 / bf16_tflops,
        "peak_gpu_gb": peak_gb(device),
    }


# --- 3. evaluation forwards and head importance ------------------------------------------------


def eval_forward(model, sizes: Sizes, device: torch.device) -> dict:
    """models.predict, as the finetune and mask_transfer stages evaluate (fp32, no autocast)."""
    from runners.methods import models

    models.predict(model, random_examples(sizes.eval_batch, sizes, seed=2), sizes.eval_batch, PAD, device)  # warm-up
    encoded = random_examples(sizes.eval_examples, sizes, seed=3)
    start = time.perf_counter()
    models.predict(model, encoded, sizes.eval_batch, PAD, device)  # returns Python ints: synchronised
    seconds = time.perf_counter() - start
    return {"precision": "fp32 (torch's default: TF32 off)", "batch": sizes.eval_batch, "examples": len(encoded),
            "seconds": seconds, "examples_per_s": len(encoded) / seconds}


def head_importance(model, sizes: Sizes, device: torch.device) -> dict:
    """heads.head_importance, one pass of the prune stage's loop (fp32 forward and backward to the gates)."""
    from runners.methods import heads

    mask = torch.ones(sizes.layers, sizes.heads)
    heads.head_importance(model, batches_of(sizes.batch, sizes, device, seed=4), mask)  # warm-up
    batches = batches_of(sizes.importance_examples, sizes, device, seed=5)
    start = time.perf_counter()
    heads.head_importance(model, batches, mask)  # returns a CPU tensor: synchronised
    seconds = time.perf_counter() - start
    return {"precision": "fp32 (torch's default: TF32 off)", "batch": sizes.batch, "examples": sizes.importance_examples,
            "seconds": seconds, "examples_per_s": sizes.importance_examples / seconds}


# --- 4. TracIn ---------------------------------------------------------------------------------


def timed_scores(model, train: list[dict], test: list[dict], device, projection_dim, test_block):
    """One checkpoint's scores (n_test, n_train), a CPU tensor, and their seconds after a warm-up call."""
    from runners.methods.influence import checkpoint_scores

    checkpoint_scores(model, train[:1], test[:1], projection_dim=projection_dim)  # warm-up: kernels, projections
    reset_peak(device)
    start = time.perf_counter()
    scores = checkpoint_scores(model, train, test, projection_dim=projection_dim, test_block_bytes=test_block)
    seconds = time.perf_counter() - start
    n_test, n_train = scores.shape
    return scores, {"train": n_train, "test": n_test, "seconds": seconds, "pairs_per_s": n_train * n_test / seconds,
                    "peak_gpu_gb": peak_gb(device)}


def tracin(model, sizes: Sizes, device, projection_dim: int, test_block: int | None) -> dict:
    """Exact and projected scores of the same pairs, one checkpoint (the model as fine-tuned above)."""
    train = batches_of(sizes.tracin_train, sizes, device, seed=6)
    test = batches_of(sizes.tracin_test, sizes, device, seed=7)
    exact, exact_figures = timed_scores(model, train, test, device, None, test_block)
    projected, projected_figures = timed_scores(model, train, test, device, projection_dim, test_block)
    pearson = torch.corrcoef(torch.stack([exact.double().ravel(), projected.double().ravel()]))[0, 1].item()
    return {"precision": "fp32, TF32 off (checkpoint_scores' exact_eval)", "test_block_bytes": test_block,
            "exact": exact_figures, "projected": {"projection_dim": projection_dim, **projected_figures},
            "pearson": pearson, "top10_overlap": overlap(exact, projected, 10)}


def overlap(exact: torch.Tensor, approx: torch.Tensor, k: int) -> float:
    """Mean over test examples of |top-k(exact) ∩ top-k(approx)| / k (as benchmarks/model_scale.py)."""
    k = min(k, exact.shape[1])
    shared = [len(set(e.topk(k).indices.tolist()) & set(a.topk(k).indices.tolist())) / k for e, a in zip(exact, approx)]
    return sum(shared) / len(shared)


def tracin_fit(model, sizes: Sizes, device, projection_dim: int, test_block: int | None, n_test: int) -> dict:
    """Projected scores at the spec's test count for two train sizes: the test gradients are a fixed cost,
    each train example a cost per example, so seconds = fixed + per_train x n_train."""
    test = batches_of(n_test, sizes, device, seed=8)
    points = []
    for n_train in sizes.fit_train:
        train = batches_of(n_train, sizes, device, seed=9)
        _, figures = timed_scores(model, train, test, device, projection_dim, test_block)
        points.append(figures)
    (n1, t1), (n2, t2) = [(p["train"], p["seconds"]) for p in points]
    per_train = (t2 - t1) / (n2 - n1)
    return {"projection_dim": projection_dim, "test": n_test, "points": points,
            "per_train_s": per_train, "fixed_s": t1 - per_train * n1}


# --- 5. the spec's wall time on one GPU --------------------------------------------------------


def wall_time(spec, graph, results: dict, projection_dim: int) -> dict:
    """Each stage's GPU seconds from the compiled graph's task count, the spec's sizes and the figures above.
    Every GPU stage asks for a whole GPU (resources), so on one GPU its tasks run one after another."""
    from runners.methods.pruning import heads_per_step

    tasks = Counter(task.stage for task in graph.tasks)
    data, finetune, prune, tracin_spec = spec.data, spec.finetune, spec.prune, spec.tracin
    languages = len(data.languages)
    step = results["finetune_step"]["median_s"]
    sft_step = results["sft_step"]["median_s"]
    forward = results["eval_forward"]["examples_per_s"]
    importance = results["head_importance"]["examples_per_s"]
    fit = results["tracin_fit"]
    heads = results["sizes"]["layers"] * results["sizes"]["heads"]
    sizes_test = results["sizes"]["tracin_test"]

    evaluated = finetune.epochs * (data.validation_per_language + data.test_per_language) * languages
    steps = finetune.epochs * math.ceil(data.train_per_language * languages / finetune.batch_size)
    sft_steps = finetune.epochs * languages * math.ceil(data.train_per_language / finetune.batch_size)  # language-pure
    prune_examples = min(prune.max_examples or data.validation_per_language, data.validation_per_language)
    # The bound: every step accepted until no head is left, one importance pass and one evaluation per mask.
    prune_passes = math.ceil(heads / heads_per_step(heads, prune.step)) + 1
    prune_forwards = prune_passes * prune_examples + data.validation_per_language + data.test_per_language
    transfer_forwards = languages * languages * data.test_per_language
    n_train = min(tracin_spec.train_per_language, data.train_per_language) * languages
    n_test = tracin_spec.test_per_language * languages
    checkpoints = finetune.epochs
    tracin_seconds = checkpoints * (fit["fixed_s"] + fit["per_train_s"] * n_train)

    terms = [
        ("finetune", f"{steps} steps x {step:.4f} s + {evaluated} eval forwards / {forward:.0f}/s",
         steps * step + evaluated / forward),
        ("prune", f"<= {prune_passes} importance passes x {prune_examples} / {importance:.0f}/s "
                  f"+ {prune_forwards} forwards / {forward:.0f}/s",
         prune_passes * prune_examples / importance + prune_forwards / forward),
        ("mask_transfer", f"{transfer_forwards} forwards / {forward:.0f}/s", transfer_forwards / forward),
        ("sparse_finetune", f"{sft_steps} steps x {sft_step:.4f} s + {evaluated} eval forwards / {forward:.0f}/s",
         sft_steps * sft_step + evaluated / forward),
        ("tracin", f"{checkpoints} checkpoints x ({fit['fixed_s']:.2f} s + {n_train} train x {fit['per_train_s']:.5f} s) "
                   f"(a line measured at {fit['test']} test), projection_dim {projection_dim}", tracin_seconds),
    ]
    rows = [{"stage": stage, "tasks": tasks[stage], "per_task": formula, "per_task_s": seconds,
             "total_s": tasks[stage] * seconds} for stage, formula, seconds in terms if tasks[stage]]
    total = sum(row["total_s"] for row in rows)
    exact = results["tracin"].get("exact")  # absent when exact scoring failed: the estimate does not need it
    exact_hours = tasks["tracin"] * checkpoints * n_train * n_test / exact["pairs_per_s"] / 3600 if exact else None
    return {
        "terms": rows, "total_s": total, "total_hours": total / 3600, "tracin_exact_instead_hours": exact_hours,
        "tracin_exact_note": "projection_dim: null instead: the pairs at the exact pairs/s, measured with "
                             f"{sizes_test} test examples (a test block of test_block_mb holds about as many at this "
                             "size, and each block recomputes the train gradients)",
        "left_out": [
            "the data stage (downloading and subsampling the dataset) and tokenising",
            "Ray's start, loading checkpoints, saving them (save_pretrained after every epoch of finetune and SFT)",
            f"shorter real sequences: every figure is at T = {results['sizes']['seq']} with no padding; "
            "evaluation and TracIn sort by length, so for them this is an upper bound",
            f"prune stops at its first rejected mask: {prune_passes} importance passes is the bound (every head masked)",
            "prune runs its forwards at prune.batch_size, counted at the rate measured at eval_batch_size",
            "the driver's ingest of the TracIn scores (15M per task; RESULTS.md: about 30 s each on a loaded CPU machine)",
            "the subnetwork and sft TracIn variants mask heads (a hook): counted at the full variant's speed",
        ],
    }


def print_estimate(estimate: dict) -> None:
    print("\n| stage | tasks | per task | per task (min) | total (min) |\n|---|---|---|---|---|")
    for row in estimate["terms"]:
        minutes = f"{row['per_task_s'] / 60:.1f} | {row['total_s'] / 60:.1f}"
        print(f"| {row['stage']} | {row['tasks']} | {row['per_task']} | {minutes} |")
    print(f"| all | | | | {estimate['total_s'] / 60:.1f} ({estimate['total_hours']:.2f} h) |")
    if estimate["tracin_exact_instead_hours"] is not None:
        print(f"TracIn exact instead of projected: {estimate['tracin_exact_instead_hours']:.2f} h for the TracIn tasks")
    print("left out: " + "; ".join(estimate["left_out"]))


if __name__ == "__main__":
    main()
