"""The planted controls as rates (#38): specs/controls.yaml (the toy world fine-tuned with planted
language modules, 3 training seeds) over 5 data seeds, at overlap 0.0 (disjoint modules) for each
silence weight 0.0, 0.1, 0.3 and 1.0, at overlap 1.0 (ordinary fine-tuning), and graded (overlap 0.0,
silence 0.0, leak 0.3: every head runs on every example, its own family's at gate 1 and the others'
at 0.3, nothing silenced); each data seed at each setting is a sweep point, an independent study.
Every point also probes its heads by ablation (`head_effects`), for recovery by another route than
pruning's gate gradients.

Three `langspec run`s into one store: benchmarks/control_rates.yaml as written (overlap 0.0, a product
of data.seed x planted.silence: 20 points); the same file with
`--set 'sweep={planted.overlap: [1.0], data.seed: [...]}'` (5 points, at the spec's silence 0.3); and
with `--set 'sweep={planted.overlap: [0.0], data.seed: [...]}' --set planted.silence=0.0 --set
planted.leak=0.3` (5 points). At overlap 1.0 the silence term is absent (no head is outside a set), so
its value changes no number, but the `planted` section, silence included, is part of the fine-tuning's
task key: a product sweep would fine-tune the same models once per silence (4x the 135 tasks of
overlap 1.0), and tabulate identical copies as if they were replications. Hence one silence there,
tabulated as inert.

For each setting (overlap, silence, leak), over its complete data seeds: for Q1..Q6 and P1, the counts
of `supported`, `contradicted` and `inconclusive`, the statistic's median [quartiles], and its mean with
the t interval over data seeds; recovery (as controls.json computes it: each language's pruned
mask's Jaccard with its family's planted set, minus its expectation for random masks of the same
sizes, averaged over languages and training seeds) likewise; and recovery by ablation effect
(controls.json's `recovery_by_effects`: the heads whose removal raises a language's validation loss
most, as many as its planted set holds, against that set). Each point is read as its own study:
as if it were the primary point, so the `Exploratory` label is ignored; verdicts do not depend on it.

A partial sweep is tabulated too: a point counts once every one of its tasks ran or was cached in a
run of these specs (same spec hash), read from the newest such run. So a long sweep can be
carried over several sessions (cached tasks resume), the table growing with it.

Cost (estimated, not run): 30 points of 30 tasks (3 fine-tunings, 3 head_effects, 15 prunes, 3 mask
transfers, 6 TracIns), 900 tasks, the fine-tunings of the 25 points of the first two runs partly
cached in results/control_rates. By docs/known-answers.md's timings on the idle 2-core machine
(specs/controls.yaml, 82 tasks in 5 min 6 s; one overlap-0 point, 28 tasks in 1 min 41 s), about
30 x 1 min 50 s = 55 min idle; 1.7x that beside other work (the negative-control rate, 680 tasks,
took 1.7x its idle estimate at a load average of 4-15).

If a `langspec run` fails or is interrupted, the script stops there, tabulates what is complete and
exits with its code. `--spec` and `--store` point it elsewhere, e.g. at a spec that extends this one
at tiny sizes (its sweep must keep data.seed), for a test in a few minutes.

Run (from the repository root; cached tasks resume):
    .venv/bin/python benchmarks/control_rates.py [--spec benchmarks/control_rates.yaml] [--store results/control_rates]
                                                 [--no-run] [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from langspec.load import load_spec  # noqa: E402
from langspec.science import controls, findings, stats  # noqa: E402
from store.connections import connect_read_only  # noqa: E402
from store.errors import StoreError  # noqa: E402
from store.points import point_label  # noqa: E402
from store.queries import internal  # noqa: E402

SPEC = HERE / "benchmarks" / "control_rates.yaml"
STORE = HERE / "results" / "control_rates"
ORDINARY = 1.0  # planted.overlap: every head in every set, ordinary fine-tuning
GRADED = 0.3  # planted.leak of the third run, at silence 0: modules by degree, nothing silenced
QUESTIONS = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "P1")
RECOVERY = "recovery"
BY_EFFECTS = "recovery_by_effects"

# Each sweep point of the runs of the given spec hashes whose every task ran or was cached in that
# run, with the newest such run: an interrupted run's finished points count, its unfinished ones do not.
COMPLETE_POINTS = """
SELECT point, max(run_id) AS run_id FROM (
    SELECT p.run_id, p.point
    FROM points AS p JOIN runs AS r USING (run_id) JOIN tasks AS t ON t.run_id = p.run_id AND t.task_key = p.task_key
    WHERE list_contains($hashes, r.spec_hash)
    GROUP BY p.run_id, p.point
    HAVING bool_and(t.outcome IN ('ran', 'cached'))
) GROUP BY point
"""


@dataclass(frozen=True)
class Planned:
    """A sweep point the two runs plan, with the setting it belongs to."""

    label: str
    overlap: float
    silence: float
    leak: float
    data_seed: int


@dataclass(frozen=True)
class Study:
    """One complete point read as its own study: each question's finding and the recovery."""

    point: Planned
    run_id: int
    training_seeds: int
    answers: dict[str, findings.Finding]
    recovery: float | None
    by_effects: float | None  # recovery by each head's ablation effect (head_effects)


def runs(spec: Path) -> list[tuple[str, ...]]:
    """The `--set` overrides of the three runs: the spec as written; overlap 1.0 over its data seeds; and
    graded planting (overlap 0.0, silence 0.0, leak GRADED) over its data seeds."""
    data_seeds = json.dumps(load_spec(spec).spec.sweep["data.seed"])
    ordinary = (f"sweep={{planted.overlap: [{ORDINARY}], data.seed: {data_seeds}}}",
                f"analysis.primary_point={{planted.overlap: {ORDINARY}}}")
    graded = (f"sweep={{planted.overlap: [0.0], data.seed: {data_seeds}}}", "planted.silence=0.0", f"planted.leak={GRADED}")
    return [(), ordinary, graded]


def plan(spec: Path) -> tuple[list[Planned], list[str]]:
    """Every point the runs plan, and their spec hashes (what the store records of each run)."""
    points, hashes = [], []
    for overrides in runs(spec):
        loaded = load_spec(spec, overrides)
        hashes.append(loaded.spec_hash)
        points += [Planned(point_label(p.assignments), p.spec.planted.overlap, p.spec.planted.silence, p.spec.planted.leak,
                           p.spec.data.seed) for p in loaded.points]
    return points, hashes


def read_studies(con: duckdb.DuckDBPyConnection, planned: list[Planned], hashes: list[str]) -> list[Study]:
    """Each planned point that is complete in a run of these spec hashes, from the newest such run."""
    newest = dict(con.execute(COMPLETE_POINTS, {"hashes": hashes}).fetchall())
    studies = []
    for point in planned:
        if point.label not in newest:
            continue
        run_id = newest[point.label]
        k = internal(con, "run_top_k", run_id=run_id)[0][0]
        data = replace(findings.load(con, run_id, point.label, k), primary_point=point.label)
        answers = {f.question: f for f in findings.findings(data)}
        recovery = controls._recovery(con, run_id, point.label)["value"]  # controls.json's own computations
        by_effects = controls._recovery_by_effects(con, run_id, point.label)
        studies.append(Study(point, run_id, len(data.seeds), answers, recovery, by_effects and by_effects["value"]))
    return studies


def summary(values: list[float]) -> dict:
    """Median and quartiles, and the mean with its t interval over data seeds (at least 2 values)."""
    if not values:
        return {"n": 0}
    out = {"n": len(values), "values": values, "median": float(np.median(values)),
           "quartiles": [float(np.quantile(values, 0.25)), float(np.quantile(values, 0.75))], "mean": float(np.mean(values))}
    if len(values) >= 2:
        out["interval"] = list(stats.over_seeds(values).interval())
    return out


def settings(studies: list[Study], planned: list[Planned]) -> list[dict]:
    """Per (overlap, silence, leak), in plan order: its data seeds planned and complete, the verdict counts
    and statistic summaries of every question, and the summaries of recovery by pruning and by ablation effect."""
    by_setting: dict[tuple[float, float, float], list[Study]] = collections.defaultdict(list)
    for study in studies:
        by_setting[(study.point.overlap, study.point.silence, study.point.leak)].append(study)
    out = []
    for overlap, silence, leak in dict.fromkeys((p.overlap, p.silence, p.leak) for p in planned):
        done = by_setting[(overlap, silence, leak)]
        measures = {}
        for question in QUESTIONS:
            answers = [s.answers[question] for s in done]
            counts = collections.Counter(f.verdict for f in answers)
            measures[question] = {
                "counts": {v: counts[v] for v in (findings.SUPPORTED, findings.CONTRADICTED, findings.INCONCLUSIVE)},
                "statistic": summary([f.statistic for f in answers if f.statistic is not None]),
                "statistic_name": answers[0].statistic_name if answers else None,
            }
        measures[RECOVERY] = {"statistic": summary([s.recovery for s in done if s.recovery is not None])}
        measures[BY_EFFECTS] = {"statistic": summary([s.by_effects for s in done if s.by_effects is not None])}
        out.append({
            "overlap": overlap, "silence": silence, "leak": leak, "silence_inert": overlap == ORDINARY,
            "data_seeds_planned": [p.data_seed for p in planned if (p.overlap, p.silence, p.leak) == (overlap, silence, leak)],
            "data_seeds_complete": [s.point.data_seed for s in done],
            "training_seeds": sorted({s.training_seeds for s in done}),
            "points": [{"label": s.point.label, "run_id": s.run_id, "data_seed": s.point.data_seed, "recovery": s.recovery,
                        "recovery_by_effects": s.by_effects,
                        "findings": {q: {"verdict": s.answers[q].verdict, "statistic": s.answers[q].statistic,
                                         "interval": s.answers[q].interval} for q in QUESTIONS}} for s in done],
            "measures": measures,
        })
    return out


def table(setting: dict) -> list[str]:
    """The setting's heading, how many data seeds are complete, and (if any) its table."""
    silence = f"{setting['silence']:g}" + (" (inert: no head is outside a set)" if setting["silence_inert"] else "")
    seeds = setting["data_seeds_complete"]
    leak = f", planted.leak {setting['leak']:g}" if setting["leak"] else ""
    lines = [f"### planted.overlap {setting['overlap']:g}, planted.silence {silence}{leak}",
             f"{len(seeds)} of {len(setting['data_seeds_planned'])} data seeds complete"]
    if not seeds:
        return lines
    lines[-1] += f" ({', '.join(map(str, seeds))}), {' or '.join(map(str, setting['training_seeds']))} training seeds each"
    lines += ["", "| measure | supported | contradicted | inconclusive | median [quartiles] | mean [95% t interval over data seeds] |",
              "|---|---|---|---|---|---|"]
    for name, measure in setting["measures"].items():
        counts = measure.get("counts")
        verdicts = " | ".join(str(counts[v]) for v in counts) if counts else "- | - | -"
        label = {RECOVERY: "recovery: J(pruned, planted) - random",
                 BY_EFFECTS: "recovery by ablation effect: J(top heads, planted) - random"}.get(name, name)
        lines.append(f"| {label} | {verdicts} | {_spread(measure['statistic'], len(seeds))} |")
    return lines


def _spread(values: dict, seeds: int) -> str:
    """A summary's two cells: median [quartiles] (with n where some points had no statistic), mean [t interval]."""
    if not values["n"]:
        return "no statistic | -"
    of = f" (n = {values['n']})" if values["n"] < seeds else ""
    low, high = values["quartiles"]
    mean = (f"{values['mean']:+.3f} [{values['interval'][0]:+.3f}, {values['interval'][1]:+.3f}]"
            if "interval" in values else f"{values['mean']:+.3f}")
    return f"{values['median']:+.3f} [{low:+.3f}, {high:+.3f}]{of} | {mean}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC, help="the spec of the overlap-0 points (its sweep must hold data.seed)")
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--no-run", action="store_true", help="tabulate the store's complete points only")
    parser.add_argument("--json", type=Path, default=None, help="also write every setting's numbers and each point's findings here")
    args = parser.parse_args()
    returncode = 0
    for overrides in [] if args.no_run else runs(args.spec):
        sets = [arg for override in overrides for arg in ("--set", override)]
        returncode = subprocess.run([sys.executable, "-m", "langspec", "run", str(args.spec.resolve()), "--store",
                                     str(args.store.resolve()), *sets], cwd=HERE).returncode
        if returncode:  # failed or interrupted: stop there; the points it finished still count
            print(f"langspec run exited {returncode}; tabulating the points complete so far\n", file=sys.stderr)
            break
    planned, hashes = plan(args.spec)
    try:
        with connect_read_only(args.store) as con:
            studies = read_studies(con, planned, hashes)
    except StoreError as error:  # no store yet: say so, without a traceback
        sys.exit(f"error: {error}")
    print(f"{args.store}: {len(studies)} of {len(planned)} planned points complete "
          f"(data seed x setting; runs {', '.join(map(str, sorted({s.run_id for s in studies}))) or 'none'})\n")
    results = settings(studies, planned)
    for setting in results:
        print("\n".join(table(setting)) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"spec": str(args.spec), "store": str(args.store), "planned_points": len(planned),
                                         "complete_points": len(studies), "settings": results}, indent=1) + "\n")
    sys.exit(returncode)


if __name__ == "__main__":
    main()
