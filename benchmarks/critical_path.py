"""The critical path first on a small cluster (#40 item 5): which task starts when, with the driver of
another checkout (--old) and of this one, on a local Ray cluster of two fake-GPU nodes.

Each run gets a fresh cluster of its own: a head and a worker node, each `ray start --num-cpus=1
--num-gpus=1` (a GPU on a CPU machine is only a scheduling resource: the tasks see no CUDA and run on
CPU), on ports and temp dirs of their own, started from the checkout under test and stopped by their
process groups (never `ray stop`, which stops every Ray on the machine). Their workers get what
langspec's own Ray gives its workers (niceness 0, the stage imports preloaded), the old run's as the
new's. Then `langspec run benchmarks/critical_path.yaml --address ...` into a fresh store, and each
task's start and end from the store, as seconds after the first task started.

Run (from the repository root; DIR a checkout of the code compared against, e.g.
`mkdir -p /tmp/old && git archive <commit> | tar -x -C /tmp/old`):
    .venv/bin/python benchmarks/critical_path.py --old DIR [--repeat N] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from langspec.worker import WORKER_NICENESS, WORKER_PRELOAD

HERE = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))
SPEC = HERE / "benchmarks" / "critical_path.yaml"
# Ports of our own, away from other runs on this machine, as tests/reliability/test_cluster.py picks them.
BASE = 20000 + os.getpid() % 250 * 50

# What langspec's own Ray sets for its workers: at niceness 15, Ray's default, a task gets a few
# percent of a busy machine's CPU.
WORKER_ENV = {"RAY_worker_niceness": str(WORKER_NICENESS), "RAY_preload_python_modules": ",".join(WORKER_PRELOAD),
              "RAY_AUTH_MODE": "disabled"}


def node(tree: Path, tmp: Path, name: str, offset: int, head: bool) -> subprocess.Popen:
    """One node's `ray start --block`, run from `tree`: its session holds every process of the node."""
    ports = [f"--node-manager-port={BASE + offset}", f"--object-manager-port={BASE + offset + 1}",
             f"--min-worker-port={BASE + offset + 10}", f"--max-worker-port={BASE + offset + 19}",
             f"--dashboard-agent-listen-port={BASE + offset + 3}", f"--metrics-export-port={BASE + offset + 4}",
             f"--runtime-env-agent-port={BASE + offset + 5}"]
    where = ["--head", f"--port={BASE + 30}", "--include-dashboard=false"] if head else [f"--address=127.0.0.1:{BASE + 30}"]
    command = [RAY, "start", *where, "--num-cpus=1", "--num-gpus=1", f"--temp-dir={tmp / name}",
               "--object-store-memory=80000000", "--disable-usage-stats", "--block", *ports]
    env = {**os.environ, **WORKER_ENV, "PYTHONPATH": str(tree)}
    return subprocess.Popen(command, stdout=open(tmp / f"{name}.log", "w"), stderr=subprocess.STDOUT, cwd=tree,
                            start_new_session=True, env=env)


def start_cluster(tree: Path, tmp: Path) -> tuple[str, list[subprocess.Popen]]:
    nodes = [node(tree, tmp, "head", 0, head=True)]
    time.sleep(4)
    nodes.append(node(tree, tmp, "worker", 20, head=False))
    address = f"127.0.0.1:{BASE + 30}"
    probe = "import ray,sys,time\nray.init(address=sys.argv[1])\nwhile len([n for n in ray.nodes() if n['Alive']]) < 2: time.sleep(0.2)"
    try:
        subprocess.run([sys.executable, "-c", probe, address], timeout=120, check=True, capture_output=True,
                       env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    except BaseException:
        stop_cluster(nodes)
        raise
    return address, nodes


def stop_cluster(nodes: list[subprocess.Popen]) -> None:
    for process in nodes:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run(tree: Path, work: Path) -> tuple[float, list[tuple[str, float, float]]]:
    """One cold run of the spec with the driver of `tree` on a fresh cluster: its wall seconds, and each
    task's (name, start, end) in seconds after the first task started, in the order they started."""
    tmp = Path(f"/tmp/lcp-{os.getpid()}")  # short: Ray's unix socket paths have a length limit
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    store = work / "store"
    address, nodes = start_cluster(tree, tmp)
    try:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "langspec", "run", str(SPEC), "--store", str(store), "--address", address],
                              cwd=tree, env={**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(tree)},
                              capture_output=True, text=True, timeout=1800)
        wall = time.monotonic() - started
    finally:
        stop_cluster(nodes)
        shutil.rmtree(tmp, ignore_errors=True)
    (work / "run.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"the run with {tree} failed; its output is in {work / 'run.log'}")
    with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as con:
        rows = con.sql("SELECT name, started_at, finished_at FROM tasks WHERE outcome = 'ran' ORDER BY started_at").fetchall()
    first = rows[0][1]
    return wall, [(name, (start - first).total_seconds(), (end - first).total_seconds()) for name, start, end in rows]


def summary(label: str, wall: float, tasks: list[tuple[str, float, float]]) -> str:
    return (f"{label}: wall {wall:.1f} s; the tasks {max(end for _, _, end in tasks):.1f} s from the first start to the last end")


def side_by_side(old: list[tuple[str, float, float]], new: list[tuple[str, float, float]]) -> str:
    """Both runs' tasks, in the order the new run started them: each run's start rank, start and end."""
    before = {name: (rank, start, end) for rank, (name, start, end) in enumerate(old, 1)}
    lines = ["| task | old: # | start s | end s | new: # | start s | end s |", "|---|---|---|---|---|---|---|"]
    for rank, (name, start, end) in enumerate(new, 1):
        old_rank, old_start, old_end = before[name]
        lines.append(f"| `{name}` | {old_rank} | {old_start:.1f} | {old_end:.1f} | {rank} | {start:.1f} | {end:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="a checkout of the code compared against")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs, old then new")
    parser.add_argument("--work", type=Path, default=Path(f"/tmp/critical-path-{os.getpid()}"), help="where the stores go")
    args = parser.parse_args()
    for repeat in range(args.repeat):
        runs = {}
        for label, tree in (("old", args.old.resolve()), ("new", HERE)):
            work = args.work / f"{label}-{repeat}"
            work.mkdir(parents=True)
            load = os.getloadavg()[0]
            runs[label] = run(tree, work)
            print(summary(f"pair {repeat + 1}, {label} ({tree}), load average {load:.1f} before", *runs[label]), flush=True)
        print(f"\n{side_by_side(runs['old'][1], runs['new'][1])}\n", flush=True)


if __name__ == "__main__":
    main()
