"""Do the analyses answer as before? Runs specs/demo.yaml with an older checkout of langspec, reads
every named analysis for several k, then lets this checkout migrate a copy of that store (a cached
run of the same spec) and compares every analysis of the same run, and of the new run, value by value.

Run (from the repository root; about as long as one demo run):
    .venv/bin/python benchmarks/demo_equality.py --old /tmp/old --work /tmp/demo-equality
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
            given = {"run_id": run_id, "point": point, **({"k": k} if k else {}), **({"language": "ka"} if "language" in query.params else {})}
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
    return json.loads(out.stdout)


def compare(before: dict, after: dict) -> tuple[int, int, float, list[str]]:
    """(results compared, values compared, largest relative difference of a float, what differs otherwise)."""
    values, worst, differ = 0, 0.0, []
    for key, rows in before.items():
        if key not in after or len(after[key]) != len(rows):
            differ.append(f"{key}: {len(rows)} rows before, {len(after.get(key, []))} after")
            continue
        for old, new in zip(rows, after[key]):
            for column, a in old.items():
                b = new.get(column)
                values += 1
                if isinstance(a, float) and isinstance(b, float):
                    worst = max(worst, abs(a - b) / max(abs(a), abs(b), 1e-300)) if not (math.isnan(a) and math.isnan(b)) else worst
                elif a != b:
                    differ.append(f"{key}: {column} {a!r} before, {b!r} after")
    return len(before), values, worst, differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--spec", default="specs/demo.yaml")
    parser.add_argument("--keep", action="store_true", help="reuse the old code's store if it is there")
    args = parser.parse_args()
    old_store, new_store = args.work.resolve() / "old", args.work.resolve() / "new"
    if not (args.keep and (old_store / "langspec.duckdb").exists()):
        shutil.rmtree(old_store, ignore_errors=True)
        langspec(args.old.resolve(), "run", str(HERE / args.spec), "--store", str(old_store))
    before = read(args.old.resolve(), old_store, 1)
    shutil.rmtree(new_store, ignore_errors=True)
    shutil.copytree(old_store, new_store)
    langspec(HERE, "run", str(HERE / args.spec), "--store", str(new_store))  # cached: migrates the store, run 2
    report = {}
    for run_id in (1, 2):
        after = read(HERE, new_store, run_id)
        results, values, worst, differ = compare(before, after)
        report[run_id] = {"results": results, "values": values, "max_rel_float_diff": worst, "differences": differ[:20],
                          "n_differences": len(differ)}
        print(f"run {run_id} after migration against run 1 before: {results} analysis results, {values} values; "
              f"{len(differ)} differ (non-float); largest relative float difference {worst:.2e}")
        for line in differ[:20]:
            print("  " + line)
    (args.work / "demo_equality.json").write_text(json.dumps(report, indent=1))
    sys.exit(1 if any(r["n_differences"] for r in report.values()) else 0)


if __name__ == "__main__":
    main()
