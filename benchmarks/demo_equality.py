"""Do the analyses answer as before? Runs specs/demo.yaml with an older checkout of langspec, reads
every named analysis for several k, then lets this checkout migrate a copy of that store (a cached
run of the same spec) and compares every analysis of the same run, and of the new run, value by value.

Run (from the repository root; about as long as one run of the spec):
    .venv/bin/python benchmarks/demo_equality.py --old /tmp/old --work /tmp/demo-equality [--spec benchmarks/demo_small.yaml --executor local]
(`--old`: a checkout of the code to compare against, e.g. `git archive main | tar -x -C /tmp/old`.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
KS = (1, 10, 50, 100, 101, 400, 1000)  # 101 and up: beyond the v3 proponents table (ranked from the raw scores)

# Every analysis of a run for every k and sweep point, as JSON; run with a checkout's code first on sys.path.
READ = """
import json, sys
import duckdb
from store.queries import named_queries, resolve, run_named, run_points
con = duckdb.connect(sys.argv[1], read_only=True)
run_id, ks = int(sys.argv[2]), json.loads(sys.argv[3])
out = {}
for point in run_points(con, run_id):
    for name, query in named_queries().items():
        for k in (ks if "k" in query.params else [None]):
            given = {"run_id": run_id, "point": point, "language": "ka", "split": "test", **({"k": k} if k else {})}
            params = resolve(con, query, {p: v for p, v in given.items() if p in query.params})
            out[f"{name} point={point!r} k={k}"] = run_named(con, name, **params).to_pylist()
print(json.dumps(out, default=str))
"""


def langspec(code: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "-m", "langspec", *args], cwd=code, env=env, check=True, stdout=subprocess.DEVNULL)


def read(code: Path, store: Path, run_id: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", READ, str(store / "langspec.duckdb"), str(run_id), json.dumps(KS)],
                         cwd=code, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])  # the JSON is the last line


def compare(before: dict, after: dict) -> tuple[dict, list[str]]:
    """Per analysis: floats compared, floats not bit-equal, largest absolute and relative difference;
    and every other value (ids, languages, counts, row counts) that differs."""
    stats, differ = {}, []
    for key, rows in before.items():
        if key not in after or len(after[key]) != len(rows):
            differ.append(f"{key}: {len(rows)} rows before, {len(after.get(key, []))} after")
            continue
        s = stats.setdefault(key.split()[0], {"floats": 0, "not_bit_equal": 0, "max_abs": 0.0, "max_rel": 0.0})
        for old, new in zip(rows, after[key]):
            for column, a in old.items():
                b = new.get(column)
                if isinstance(a, float) and isinstance(b, float):
                    s["floats"] += 1
                    if a != b and not (math.isnan(a) and math.isnan(b)):
                        s["not_bit_equal"] += 1
                        s["max_abs"] = max(s["max_abs"], abs(a - b))
                        s["max_rel"] = max(s["max_rel"], abs(a - b) / max(abs(a), abs(b)))
                elif a != b:
                    differ.append(f"{key}: {column} {a!r} before, {b!r} after")
    return stats, differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--spec", default="specs/demo.yaml")
    parser.add_argument("--executor", default="ray", help="ray, or local (in-process: no Ray start-up on a small machine)")
    parser.add_argument("--keep", action="store_true", help="reuse the old code's store if it is there")
    args = parser.parse_args()
    old_store, new_store = args.work.resolve() / "old", args.work.resolve() / "new"
    if not (args.keep and (old_store / "langspec.duckdb").exists()):
        shutil.rmtree(old_store, ignore_errors=True)
        langspec(args.old.resolve(), "run", str(HERE / args.spec), "--store", str(old_store), "--executor", args.executor)
    before = read(args.old.resolve(), old_store, 1)
    shutil.rmtree(new_store, ignore_errors=True)
    shutil.copytree(old_store, new_store)
    langspec(HERE, "run", str(HERE / args.spec), "--store", str(new_store), "--executor", args.executor)  # cached: migrates, run 2
    report = {}
    for run_id in (1, 2):
        stats, differ = compare(before, read(HERE, new_store, run_id))
        report[run_id] = {"results": len(before), "per_analysis": stats, "differences": differ[:20], "n_differences": len(differ)}
        print(f"run {run_id} after the migration against run 1 before: {len(before)} analysis results (every analysis, "
              f"point and k); {len(differ)} non-float values differ")
        for name, s in stats.items():
            print(f"  {name}: {s['floats']} floats, {s['not_bit_equal']} not bit-equal, largest difference "
                  f"{s['max_abs']:.1e} absolute, {s['max_rel']:.1e} relative")
        for line in differ[:20]:
            print("  " + line)
    (args.work / "demo_equality.json").write_text(json.dumps(report, indent=1))
    # Floats may differ in the last bits (sums in another order; TracInCP stored as REAL), never more.
    worst = max((s["max_rel"] if s["max_abs"] > 1e-12 else 0.0) for r in report.values() for s in r["per_analysis"].values())
    sys.exit(1 if any(r["n_differences"] for r in report.values()) or worst > 1e-6 else 0)


if __name__ == "__main__":
    main()
