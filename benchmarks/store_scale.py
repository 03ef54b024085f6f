"""The store at the paper's size: build a store of 3 seeds x 3 variants x 3 checkpoints x 10,000 train
x 500 test = 135M TracIn scores (plus the examples, metrics, checkpoints, masks and prune steps of
such a study) through the real ingest, then time every named analysis, `langspec report` and the
scan floor, each in its own process with its peak RSS; optionally the same for an older checkout
of langspec, on its own store built by its own ingest from the same task directories.

Run (from the repository root):
    .venv/bin/python benchmarks/store_scale.py --store /tmp/scale/new [--old /tmp/old] [--build-only] [--seeds 1]

`--old DIR`: a checkout of the code to compare against (e.g. `git worktree add /tmp/old main`);
its store is built at `<store>-old`. If that checkout predates #13, the TracIn tables are written
as tasks wrote them then (text ids, numbered and ranked at ingest; `--text-ids` alone does the
same), which both checkouts read; else as TracIn tasks write them now. Each process of the old code is stopped when its RSS passes
`--cap-gb` or its time `--timeout` (the machine is shared), and reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # the checkout this script belongs to
LANGUAGES = ("ka", "kb", "la", "lb", "mi")
VARIANTS = ("full", "subnetwork", "sft")
LAYERS, HEADS = 12, 12


def floor_sql(code: Path) -> str:
    """One scan of the scores in that checkout's store: since schema 5 `influence` is a view that joins
    each row to its task, and the scan floor is that of the table under it."""
    numbered = "influence_numbered" in (code / "store" / "schema" / "tables.sql").read_text() if (code / "store" / "schema").is_dir() else False
    return f"SELECT sum(score) FROM {'influence_numbered' if numbered else 'influence'}"


# --- the task directories: written once, as the stages write them ----------------------------------

def write_tasks(root: Path, seeds: int, train: int, test: int, checkpoints: int, text_ids: bool = False) -> dict:
    """Every task's `tables/*.parquet` and manifest under root/tasks; returns the plan of the run."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runners.tables import write_arrow, write_table
    from store.artifacts import seal, table_path, task_dir
    from store.influence import influence_tables

    rng = np.random.default_rng(0)
    tasks = []  # (key, stage, name, inputs, params)

    def add(stage: str, name: str, inputs: dict, **params) -> Path:
        key = f"{len(tasks):04d}".ljust(64, "0")
        tasks.append((key, stage, name, inputs, params))
        return task_dir(root, key)

    data = add("data", "data", {})
    per_language = {"train": train // len(LANGUAGES), "validation": 100, "test": test // len(LANGUAGES)}
    ids = {(lang, split): [f"{lang}-{split}-{i:06d}" for i in range(n)] for lang in LANGUAGES for split, n in per_language.items()}
    examples = [{"example_id": i, "language": lang, "split": split, "text_a": f"text {i}", "text_b": None, "label": 0}
                for (lang, split), members in ids.items() for i in members]
    (data / "tables").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(examples), data / "tables" / "examples.parquet")
    seal(data, {})
    data_key = tasks[0][0]
    # A TracIn task lists its examples language by language, in an order of its own (token length).
    train_ids = np.array([i for lang in LANGUAGES for i in rng.permutation(ids[(lang, "train")])], dtype=object)
    test_ids = np.array([i for lang in LANGUAGES for i in rng.permutation(ids[(lang, "test")])], dtype=object)
    scores_per_task = train * test * checkpoints

    for seed in range(seeds):
        finetune = add("finetune", f"finetune[seed={seed}]", {"data": data_key}, seed=seed)
        write_table(finetune, "metrics", [
            {"seed": seed, "variant": "full", "language": lang, "split": split, "metric": "accuracy",
             "value": float(rng.uniform(0.6, 0.9)), "epoch": epoch}
            for lang in LANGUAGES for split in ("validation", "test") for epoch in range(1, checkpoints + 1)])
        write_table(finetune, "checkpoints", [
            {"seed": seed, "variant": "full", "epoch": epoch, "step": 100 * epoch, "learning_rate": 2e-5 / epoch,
             "path": f"checkpoints/epoch-{epoch}"} for epoch in range(1, checkpoints + 1)])
        seal(finetune, {})
        finetune_key = tasks[-1][0]
        prune_keys = {}
        for lang in LANGUAGES:
            prune = add("prune", f"prune[seed={seed},lang={lang}]", {"data": data_key, "finetune": finetune_key},
                        seed=seed, language=lang, prune={"threshold": 0.95, "step": 0.1})
            kept = rng.random((LAYERS, HEADS)) < 0.6
            write_table(prune, "subnetworks", [
                {"seed": seed, "language": lang, "layer": l, "head": h, "kept": bool(kept[l, h]), "importance": float(rng.random())}
                for l in range(LAYERS) for h in range(HEADS)])
            write_table(prune, "prune_steps", [
                {"seed": seed, "language": lang, "step": s, "heads_kept": LAYERS * HEADS - 14 * s, "metric_value": 0.8 - 0.01 * s,
                 "ratio_to_full": 1 - 0.0125 * s, "accepted": s < 5} for s in range(6)])
            write_table(prune, "metrics", [
                {"seed": seed, "variant": "subnetwork", "language": lang, "split": "test", "metric": "accuracy",
                 "value": float(rng.uniform(0.6, 0.9)), "epoch": checkpoints}])
            seal(prune, {})
            prune_keys[f"mask_{lang}"] = tasks[-1][0]
        sft = add("sparse_finetune", f"sparse_finetune[seed={seed}]", {"data": data_key, "finetune": finetune_key, **prune_keys}, seed=seed)
        write_table(sft, "metrics", [
            {"seed": seed, "variant": "sft", "language": lang, "split": "test", "metric": "accuracy",
             "value": float(rng.uniform(0.6, 0.9)), "epoch": epoch} for lang in LANGUAGES for epoch in range(1, checkpoints + 1)])
        write_table(sft, "checkpoints", [
            {"seed": seed, "variant": "sft", "epoch": epoch, "step": 100 * epoch, "learning_rate": 2e-5 / epoch,
             "path": f"checkpoints/epoch-{epoch}"} for epoch in range(1, checkpoints + 1)])
        seal(sft, {})
        sft_key = tasks[-1][0]
        for variant in VARIANTS:
            tracin = add("tracin", f"tracin[seed={seed},variant={variant}]",
                         {"data": data_key, "finetune": finetune_key, **({"sft": sft_key} if variant == "sft" else {}), **prune_keys},
                         seed=seed, variant=variant)
            terms = [(c, rng.standard_normal((test, train), dtype=np.float32) * np.float32(1e-3)) for c in range(1, checkpoints + 1)]
            if text_ids:  # as TracIn tasks wrote it before #13 (what an --old checkout reads): checkpoint by checkpoint
                table_path(tracin, "influence").parent.mkdir(parents=True)
                pq.write_table(pa.table({
                    "seed": pa.repeat(pa.scalar(seed, pa.int32()), scores_per_task),
                    "variant": pa.repeat(pa.scalar(variant), scores_per_task),
                    "checkpoint": np.repeat(np.arange(1, checkpoints + 1, dtype=np.int32), train * test),
                    "test_id": pa.array(np.tile(np.repeat(test_ids, train), checkpoints), type=pa.string()),
                    "train_id": pa.array(np.tile(train_ids, test * checkpoints), type=pa.string()),
                    "score": np.concatenate([term.ravel() for _, term in terms]),
                }), table_path(tracin, "influence"))
            else:  # as runners.tracin writes them now: numbered, summed and ranked in the task
                for table_name, table in influence_tables(seed, variant, list(test_ids), list(train_ids), terms).items():
                    write_arrow(tracin, table_name, table)
            seal(tracin, {})
    plan = {"tasks": tasks, "scores": seeds * len(VARIANTS) * scores_per_task}
    (root / "plan.json").write_text(json.dumps(plan))
    return plan


def ingest(root: Path) -> dict:
    """One run of the plan through StoreWriter, as the driver records it: begin, ingest each task,
    record it, finish. Run with the checkout under test first on sys.path."""
    from store.db import StoreWriter
    from store.task_rows import TaskRecord

    plan = json.loads((root / "plan.json").read_text())
    seconds = {"tracin": 0.0, "other": 0.0}
    with StoreWriter(root) as writer:
        run_id = writer.begin_run(spec_name="scale", spec_path="scale.yaml", spec_text="", overrides=[],
                                  spec_json=json.dumps({"analysis": {"top_k": 50}, "sweep": {}}), spec_hash="scale",
                                  git_commit=None, versions={}, host="bench", executor="local",
                                  points=(("", tuple(task[0] for task in plan["tasks"])),))
        for key, stage, name, inputs, params in plan["tasks"]:
            started = time.perf_counter()
            writer.ingest(key, stage, name)
            seconds["tracin" if stage == "tracin" else "other"] += time.perf_counter() - started
            writer.record_task(run_id, TaskRecord(key, name, stage, json.dumps(params), json.dumps(inputs), "ran"))
        writer.finish_run(run_id, "completed")
        if getattr(writer, "con", None) is not None:  # code that holds the database for the whole run (before #13's live store)
            writer.con.execute("CHECKPOINT")
    return {"ingest_s": seconds["tracin"], "other_s": seconds["other"], "scores": plan["scores"],
            "scores_per_s": plan["scores"] / seconds["tracin"],
            "bytes": (root / "langspec.duckdb").stat().st_size}


# --- measuring a process ---------------------------------------------------------------------------

def measure(command: list[str], cwd: Path, cap_bytes: int | None = None, timeout: float | None = None) -> dict:
    """Wall time and peak RSS of one process, stopped past the caps. The RSS is GNU time's %M: the
    process's own peak (a child's rusage from here would count this process's RSS at the fork)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    with tempfile.NamedTemporaryFile("r") as rss_file:
        started = time.perf_counter()
        timer = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *command], cwd=cwd, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        stopped, observed = [], 0
        while timer.poll() is None:
            rss = sum(_rss(pid) for pid in _children(timer.pid))
            observed = max(observed, rss)
            if cap_bytes and rss > cap_bytes:
                stopped.append(f"stopped at the {cap_bytes / 2**30:.0f} GB cap")
            elif timeout and time.perf_counter() - started > timeout:
                stopped.append(f"stopped at {timeout:.0f} s")
            if stopped:
                os.killpg(timer.pid, signal.SIGKILL)
                timer.wait()
                break
            time.sleep(0.05)
        wall = time.perf_counter() - started
        stderr = timer.stderr.read().decode()[-300:]
        peak = rss_file.read().split()
    rss_mb = int(peak[-1]) / 1024 if peak and peak[-1].isdigit() else observed / 2**20  # killed: the last RSS seen
    note = stopped[0] if stopped else ("" if timer.returncode == 0 else f"exit {timer.returncode}: {stderr.strip()}")
    return {"seconds": wall, "rss_mb": rss_mb, "ok": timer.returncode == 0 and not stopped, "note": note}


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError):
        return 0


def analyses(code: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-c", "from store.queries import named_queries; print(' '.join(named_queries()))"],
                         cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True, check=True)
    return out.stdout.split()


def time_code(code: Path, store: Path, cap_bytes: int | None, timeout: float | None) -> dict:
    langspec = [sys.executable, "-m", "langspec"]
    results = {"floor": measure(langspec + ["query", floor_sql(code), "--store", str(store), "--format", "csv"], code)}
    for name in analyses(code):
        params = {"subnetwork_grid": ["--param", "language=ka"], "final_accuracy": ["--param", "split=test"]}.get(name, [])
        command = langspec + ["analyze", name, "--store", str(store), "--format", "csv", *params]
        results[name] = measure(command, code, cap_bytes, timeout)
        print(f"  {code.name}: {name}: {results[name]}", flush=True)
    out = store.parent / f"{store.name}-report"
    results["report"] = measure(langspec + ["report", "--store", str(store), "--out", str(out)], code, cap_bytes,
                                timeout and timeout * 4)
    print(f"  {code.name}: report: {results['report']}", flush=True)
    return results


def reads_task_tables(code: Path) -> bool:
    """Whether that checkout ingests the tables a TracIn task writes since #13 (numbered, ranked)."""
    influence = code / "store" / "influence.py"
    return influence.is_file() and "def insert_tables" in influence.read_text()


def build(stores: dict[Path, Path], args) -> dict:
    """Write the task tables once, then let each checkout ingest them into its own store."""
    built = {}
    for store in stores.values():
        shutil.rmtree(store, ignore_errors=True)
    started = time.perf_counter()
    text_ids = args.text_ids or (args.old is not None and not reads_task_tables(args.old))
    plan = write_tasks(args.store.resolve(), args.seeds, args.train, args.test, args.checkpoints, text_ids)
    print(f"task tables written in {time.perf_counter() - started:.1f} s: {plan['scores']:,} scores", flush=True)
    for store in list(stores.values())[1:]:  # the same task directories, hard-linked
        shutil.copytree(args.store.resolve(), store, copy_function=os.link)
    for code, store in stores.items():
        worker = [sys.executable, str(HERE / "benchmarks" / "store_scale.py"), "--store", str(store), "--ingest-only", str(store)]
        out = subprocess.run(worker, cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"ingest with {code} failed:\n{out.stderr[-2000:]}")
        built[str(code)] = json.loads(out.stdout.splitlines()[-1])
        info = built[str(code)]
        print(f"{code}: ingested {info['scores']:,} scores in {info['ingest_s']:.1f} s ({info['scores_per_s'] / 1e6:.2f} M/s), "
              f"{info['bytes'] / 2**20:.0f} MiB, {info['bytes'] / info['scores']:.2f} bytes/score", flush=True)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="where to build the store (emptied first)")
    parser.add_argument("--old", type=Path, help="a checkout of the code to compare against; its store is <store>-old")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--time-only", action="store_true", help="time the stores built by an earlier call")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--cap-gb", type=float, default=8.0, help="stop an old-code process past this RSS")
    parser.add_argument("--timeout", type=float, default=150.0, help="stop an old-code analysis after this many seconds")
    parser.add_argument("--text-ids", action="store_true", help="write the TracIn tables as tasks did before #13 (text ids; "
                        "the driver numbers and ranks them at ingest); implied by an --old checkout from before #13")
    parser.add_argument("--ingest-only", type=Path, help=argparse.SUPPRESS)  # the worker: ingest this store's plan
    args = parser.parse_args()
    if args.ingest_only:
        print(json.dumps(ingest(args.ingest_only)))
        return

    stores = {HERE: args.store.resolve()}
    if args.old:
        stores[args.old.resolve()] = args.store.resolve().with_name(args.store.name + "-old")
    built = {}
    if not args.time_only:
        built = build(stores, args)
    if args.build_only:
        return
    timings = {}
    for code, store in stores.items():
        old = code != HERE
        timings[str(code)] = time_code(code, store, int(args.cap_gb * 2**30) if old else None, args.timeout if old else None)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "built": built, "timings": timings}
    out = args.store.resolve().with_name(args.store.name + "-results.json")
    out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"results: {out}")


def table(result: dict) -> str:
    """The Markdown table for RESULTS.md: each analysis, new against old."""
    codes = list(result["timings"])
    names = list(result["timings"][codes[0]])
    lines = ["| | " + " | ".join(f"{Path(c).name}: s | RSS MB | x floor" for c in codes) + " |",
             "|---|" + "---|---|---|" * len(codes)]
    for name in names:
        cells = []
        for code in codes:
            got, floor = result["timings"][code].get(name), result["timings"][code]["floor"]["seconds"]
            if got is None:
                cells.append("- | - | -")
            else:
                seconds = f"{got['seconds']:.2f}" + ("" if got["ok"] else f" ({got['note']})")
                cells.append(f"{seconds} | {got['rss_mb']:.0f} | {got['seconds'] / floor:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
