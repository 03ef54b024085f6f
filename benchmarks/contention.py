"""Fast on a busy machine (#25): langspec's work beside a CPU-bound competitor, as a researcher's laptop
with a browser open or a shared workstation has it, with the thread settings langspec uses now and
without them, side by side in one invocation.

  1. step: the demo model's training step (batch 32, length 48, AdamW; the tiny XLM-R of
     specs/demo.yaml), ms per step, alone and beside the competitor, with OpenMP's default (spinning)
     wait and with OMP_WAIT_POLICY=PASSIVE, at 1 and 2 torch threads; each case in a fresh process,
     since OpenMP reads the policy once, when torch loads it.
  2. demo (with --demo): `langspec run specs/demo.yaml` cold, alone and beside the competitor, with
     this checkout and, with --old DIR, another (e.g. `git worktree add /tmp/old <commit>`), each with
     its own specs/demo.yaml, for the executors named by --executors; and this checkout's demo
     watched by `langspec status` once a second, as `watch langspec status` would.
  3. the CLI (with --demo): `langspec --help` and `langspec status` on a finished demo store, median
     wall seconds of 5 runs.

The competitor is a torch process doing 512x512 matmuls on as many threads as the machine has cores,
at niceness 0, started before and stopped after each timed case.

Run (from the repository root):
    .venv/bin/python benchmarks/contention.py [--steps 40] [--spin] [--demo] [--old DIR] [--executors ray,local] [--alone] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

COMPETITOR = """
import os, torch
torch.set_num_threads(os.cpu_count())
a = torch.randn(512, 512)
while True:
    a = (a @ a).tanh_()
"""

STEP = """
import os, sys, time, statistics, torch
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
config = XLMRobertaConfig(vocab_size=4000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                          max_position_embeddings=66, num_labels=3, pad_token_id=1)
model = XLMRobertaForSequenceClassification(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
ids = torch.randint(5, 4000, (32, 48))
labels = torch.randint(0, 3, (32,))
times = []
for step in range(steps + 5):
    started = time.perf_counter()
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    if step >= 5:
        times.append(time.perf_counter() - started)
print(statistics.median(times) * 1000)
"""


def with_competitor(run):
    """Run `run()` beside the competitor (started first, given a second to spin up, then stopped)."""
    competitor = subprocess.Popen([PYTHON, "-c", COMPETITOR], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        return run()
    finally:
        competitor.kill()
        competitor.wait()


def step_ms(threads: int, policy: str | None, steps: int, spincount: int | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env |= ({"OMP_WAIT_POLICY": policy} if policy else {}) | ({"GOMP_SPINCOUNT": str(spincount)} if spincount is not None else {})
    done = subprocess.run([PYTHON, "-c", STEP, str(threads), str(steps)], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def demo_seconds(code: Path, executor: str, watched: bool = False, keep: Path | None = None) -> float:
    """Wall seconds of a cold `langspec run` of `code`'s own demo spec; with `watched`, while
    `langspec status` runs once a second on its store; with `keep`, the store is left there."""
    store = keep or Path(tempfile.mkdtemp(prefix="contention-"))
    env = {**os.environ, "PYTHONPATH": str(code)}
    started = time.perf_counter()
    run = subprocess.Popen([PYTHON, "-m", "langspec", "run", str(code / "specs" / "demo.yaml"), "--store", str(store), "--executor", executor],
                           cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while watched and run.poll() is None:
        subprocess.run([PYTHON, "-m", "langspec", "status", "--store", str(store)], cwd=code, env=env, capture_output=True)
        time.sleep(1.0)
    _, stderr = run.communicate()
    seconds = time.perf_counter() - started
    if run.returncode == 0:
        import duckdb

        with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as con:
            stages = con.sql("SELECT stage, round(sum(seconds), 1) FROM tasks GROUP BY stage ORDER BY min(started_at)").fetchall()
        print("    task seconds by stage: " + ", ".join(f"{stage} {s:g}" for stage, s in stages), flush=True)
    if keep is None:
        shutil.rmtree(store, ignore_errors=True)
    if run.returncode != 0:
        raise SystemExit(f"the demo failed with {code}:\n{stderr[-2000:]}")
    return seconds


def cli_seconds(args: list[str], store: Path, runs: int = 5) -> float:
    """Median wall seconds of `langspec ARGS` (this checkout), as a user's shell starts it."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([PYTHON, "-m", "langspec", *args], cwd=store, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per case")
    parser.add_argument("--demo", action="store_true", help="also time the demo, alone and beside the competitor")
    parser.add_argument("--old", type=Path, help="a checkout to compare the demo against")
    parser.add_argument("--executors", default="ray,local")
    parser.add_argument("--spin", action="store_true", help="also 2 threads with libgomp's GOMP_SPINCOUNT at 100000, "
                        "10000, 1000 and 0 (how long a waiting thread spins before it sleeps)")
    parser.add_argument("--repeat", type=int, default=1, help="time each demo alone this many times, the checkouts "
                        "alternating, and print every run and each pair's ratio (the busy cases run once, beside the median alone)")
    parser.add_argument("--alone", action="store_true", help="time the demos alone only (a checkout from before #25, whose "
                        "Ray workers ran at nice 15, barely moves beside the competitor)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}")
    print(f"\n{'training step (ms, median)':34}{'alone':>8}{'busy':>8}{'busy/alone':>12}")
    for threads in (2, 1):
        for policy in (None, "PASSIVE"):
            alone = step_ms(threads, policy, args.steps)
            busy = with_competitor(lambda: step_ms(threads, policy, args.steps))
            name = f"{threads} thread(s), wait {'PASSIVE' if policy else 'default'}"
            print(f"{name:34}{alone:8.0f}{busy:8.0f}{busy / alone:12.2f}", flush=True)
    for spincount in (100_000, 10_000, 1_000, 0) if args.spin else ():
        alone = step_ms(2, None, args.steps, spincount)
        busy = with_competitor(lambda: step_ms(2, None, args.steps, spincount))
        print(f"{f'2 thread(s), GOMP_SPINCOUNT={spincount}':34}{alone:8.0f}{busy:8.0f}{busy / alone:12.2f}", flush=True)
    if not args.demo:
        return
    print(f"\n{'demo, cold (s)':34}{'alone':>8}{'busy':>8}{'busy/alone':>12}")
    checkouts = [(name, code) for name, code in (("this checkout", HERE), ("old", args.old)) if code is not None]
    for executor in args.executors.split(","):
        runs = {name: [] for name, _ in checkouts}
        for _ in range(args.repeat):  # alternating, so that a drift of the machine's speed hits both alike
            for name, code in checkouts:
                runs[name].append(demo_seconds(code, executor))
        if args.repeat > 1:
            for name, _ in checkouts:
                print(f"{name + ', ' + executor + ', alone':34}" + " ".join(f"{s:.1f}" for s in runs[name])
                      + f"  median {statistics.median(runs[name]):.1f}", flush=True)
            if len(checkouts) == 2:
                ratios = [new / old for new, old in zip(runs["this checkout"], runs["old"])]
                print(f"{'this checkout / old, pair by pair':34}" + " ".join(f"{r:.3f}" for r in ratios)
                      + f"  median {statistics.median(ratios):.3f}", flush=True)
        for name, code in checkouts:
            alone = statistics.median(runs[name])
            if args.alone:
                print(f"{name + ', ' + executor:34}{alone:8.0f}", flush=True)
                continue
            busy = with_competitor(lambda: demo_seconds(code, executor))
            print(f"{name + ', ' + executor:34}{alone:8.0f}{busy:8.0f}{busy / alone:12.2f}", flush=True)
            if code == HERE and executor == "ray":
                kept = Path(tempfile.mkdtemp(prefix="contention-watched-"))
                watched = demo_seconds(code, executor, watched=True, keep=kept)
                print(f"{'this checkout, ray, watched':34}{alone:8.0f}{watched:8.0f}{watched / alone:12.2f}  (status once a second)", flush=True)
                for args_ in (["--help"], ["status", "--store", str(kept)]):
                    print(f"langspec {' '.join(args_[:1])}: {cli_seconds(args_, kept):.3f} s (median of 5)", flush=True)
                shutil.rmtree(kept, ignore_errors=True)


if __name__ == "__main__":
    main()
