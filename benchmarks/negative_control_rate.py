"""The negative control as a rate (#36): specs/negative_control.yaml (the demo's study at its size,
language labels permuted within each split, 3 training seeds) over 20 data seeds, each a sweep
point of benchmarks/negative_control_rate.yaml, so one run holds 20 independent null studies.

For each question: the counts of `supported`, `contradicted` and `inconclusive` over the points, the
statistic's distribution (quartiles and range), the most common reason an inconclusive gives, and
the decision rule of #36: for every question but Q3 and Q5, at most 3 `supported` of 20 (at a true
rate of 5%, 4 or more happens with probability 0.016). Q3 and Q5 are reported with their reason: Q3's
statistic includes confinement itself, which permuted labels still impose on SFT; Q5 is a secondary
question about the SFT model's dynamics, not a claim the control can null.

Each point is its own study: findings are computed as if each were the primary point (the sweep is
a set of replicates here, not a choice among settings), so the `Exploratory` label is ignored.

Run (from the repository root; about 75 min on 2 idle cores; cached tasks resume):
    .venv/bin/python benchmarks/negative_control_rate.py [--store results/negative_rate] [--no-run]
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from langspec.science import findings  # noqa: E402
from store.connections import connect_read_only  # noqa: E402
from store.queries import internal, run_points  # noqa: E402

SPEC = HERE / "benchmarks" / "negative_control_rate.yaml"
MOST_SUPPORTED = 3  # of 20 null studies, for every question but Q3 and Q5
EXEMPT = {"Q3": "includes confinement itself (permuted labels still confine SFT)",
          "Q5": "secondary: SFT's reliance over checkpoints, not a claim the control nulls"}


def study_findings(store: Path, run_id: int | None) -> tuple[int, dict[str, list[findings.Finding]], set[int]]:
    """Every point's findings, each point read as a study of its own, and the seed counts they have."""
    with connect_read_only(store) as con:
        run_id = run_id if run_id is not None else internal(con, "last_completed_run")[0][0]
        k = internal(con, "run_top_k", run_id=run_id)[0][0]
        by_point, seeds = {}, set()
        for point in run_points(con, run_id):
            data = replace(findings.load(con, run_id, point, k), primary_point=point)
            by_point[point] = findings.findings(data)
            seeds.add(len(data.seeds))
    return run_id, by_point, seeds


def table(by_point: dict[str, list[findings.Finding]]) -> list[str]:
    questions: dict[str, list[findings.Finding]] = collections.defaultdict(list)
    for answers in by_point.values():
        for f in answers:
            questions[f.question].append(f)
    lines = ["| question | estimand | supported | contradicted | inconclusive | statistic: median [quartiles] (range) "
             "| most common reason for inconclusive | rule: supported <= 3 of 20 |",
             "|---|---|---|---|---|---|---|---|"]
    for question, answers in questions.items():
        counts = collections.Counter(f.verdict for f in answers)
        values = np.array([f.statistic for f in answers if f.statistic is not None])
        spread = "no statistic" if not len(values) else (
            f"{np.median(values):+.3f} [{np.quantile(values, 0.25):+.3f}, {np.quantile(values, 0.75):+.3f}] "
            f"({values.min():+.3f} to {values.max():+.3f})")
        reasons = collections.Counter(_reason(f) for f in answers if f.verdict == findings.INCONCLUSIVE)
        reason = f"{reasons.most_common(1)[0][0]} ({reasons.most_common(1)[0][1]})" if reasons else "-"
        rule = f"exempt: {EXEMPT[question]}" if question in EXEMPT else (
            "holds" if counts[findings.SUPPORTED] <= MOST_SUPPORTED else "FAILS")
        estimands = sorted({f.estimand["population"].split(":")[0] for f in answers})
        lines.append(f"| {question} | {'; '.join(estimands)} | {counts[findings.SUPPORTED]} | {counts[findings.CONTRADICTED]} | "
                     f"{counts[findings.INCONCLUSIVE]} | {spread} | {reason} | {rule} |")
    return lines


def _reason(finding: findings.Finding) -> str:
    """The first reason, its measured numbers (those with a decimal point) as #, so that equal reasons count together."""
    first = finding.reasons[0] if finding.reasons else "no reason given"
    return re.sub(r"[-+]?\d+\.\d+", "#", first)[:110]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=HERE / "results" / "negative_rate")
    parser.add_argument("--no-run", action="store_true", help="tabulate the store's last completed run only")
    parser.add_argument("--run-id", type=int, default=None)
    args = parser.parse_args()
    if not args.no_run:
        subprocess.run([sys.executable, "-m", "langspec", "run", str(SPEC), "--store", str(args.store)], cwd=HERE, check=True)
    run_id, by_point, seeds = study_findings(args.store, args.run_id)
    print(f"run {run_id} of {args.store}: {len(by_point)} null studies (data seeds), "
          f"{' or '.join(map(str, sorted(seeds)))} training seeds each\n")
    print("\n".join(table(by_point)))


if __name__ == "__main__":
    main()
