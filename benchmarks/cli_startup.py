"""How fast the `langspec` command answers: wall time of `--version`, `--help`, `status` and a trivial
`query`, each in a fresh process, N runs each (median, min, max); optionally the same for an older
checkout of langspec, the runs of the two interleaved so that the machine's noise falls on both.

Run (from the repository root; a store from any finished run, e.g. a 2-language toy spec run with
`--executor local`):
    .venv/bin/python benchmarks/cli_startup.py --store /tmp/cli-store [--old /tmp/old] [--runs 7]

`--old DIR`: a checkout of the code to compare against (e.g. `git worktree add --detach /tmp/old HEAD`),
run with this venv. Both checkouts are started the same way, as the `langspec` script does:
`python -c "import sys; sys.path.insert(0, CODE); from langspec.cli import app; app()" ARGS`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # the checkout this script belongs to
LAUNCH = "import sys; sys.path.insert(0, sys.argv.pop(1)); from langspec.cli import app; app()"


def commands(store: Path) -> dict[str, list[str]]:
    """The command lines timed, by the name the table shows."""
    return {
        "--version": ["--version"],
        "--help": ["--help"],
        "status": ["status", "--store", str(store)],
        'query "SELECT 1"': ["query", "SELECT 1", "--store", str(store)],
    }


def run_once(code: Path, args: list[str]) -> tuple[float, str]:
    """Wall seconds of one `langspec ARGS` from `code`, and its output; exits on a failed command."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCH, str(code), *args], cwd=code, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{code}: langspec {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def time_all(codes: list[Path], store: Path, runs: int) -> dict:
    """{command: {code: {"times": [...], "output": str}}}; one untimed run of each first (file cache)."""
    results = {}
    for name, args in commands(store).items():
        results[name] = {code: {"times": [], "output": run_once(code, args)[1]} for code in codes}
        for _ in range(runs):
            for code in codes:  # interleaved: a burst of load on the machine slows both, not one
                seconds, _ = run_once(code, args)
                results[name][code]["times"].append(seconds)
        print(f"  {name}: " + ", ".join(f"{code.name} {statistics.median(r['times']):.3f} s" for code, r in results[name].items()),
              file=sys.stderr, flush=True)
    return results


def table(results: dict, codes: list[Path]) -> str:
    """A Markdown table: each command's median, min and max per checkout; with an old one, new/old and
    whether the two printed the same."""
    header = "| command | " + " | ".join(f"{code.name}: median s | min | max" for code in codes)
    rule = "|---|" + "---|---|---|" * len(codes)
    if len(codes) == 2:
        header += " | new / old | same output"
        rule += "---|---|"
    lines = [header + " |", rule]
    for name, by_code in results.items():
        cells = []
        for code in codes:
            times = by_code[code]["times"]
            cells.append(f"{statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f}")
        if len(codes) == 2:
            new, old = (statistics.median(by_code[code]["times"]) for code in codes)
            cells.append(f"{new / old:.2f} | {'yes' if by_code[codes[0]]['output'] == by_code[codes[1]]['output'] else 'NO'}")
        lines.append(f"| `langspec {name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="a store with at least one run, for status and query")
    parser.add_argument("--old", type=Path, help="a checkout of the code to compare against")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command per checkout")
    args = parser.parse_args()
    if not (args.store / "langspec.duckdb").is_file():
        sys.exit(f"{args.store}: no langspec.duckdb; run a spec into it first (langspec run SPEC --store {args.store})")
    codes = [HERE] + ([args.old.resolve()] if args.old else [])
    results = time_all(codes, args.store.resolve(), args.runs)
    print(table(results, codes))


if __name__ == "__main__":
    main()
