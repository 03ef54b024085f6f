"""Known answers: what the instrument recovers at each planted overlap of a run with `planted:`
(specs/controls.yaml), for `langspec report` (controls.json and the dose-response figure).

At every sweep point whose fine-tuning planted modules, with the findings' own statistics
(`langspec.science.findings`): recovery, the Jaccard of each language's pruned mask with its family's
planted set against its exact expectation for random masks of the same sizes, over seeds; where the
run measured head effects, recovery by an independent probe, the heads whose ablation raises the
language's loss most, as many as the planted set holds, measured the same way; Q1's
own-mask advantage and verdict; S+ of the full model and of the subnetworks (crossed over seeds and
test examples); and P1's related-minus-unrelated M+, over all families and per family.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np

from langspec.science import findings, stats
from store.queries import internal_rows, run_named

CONTROLS_FILE = "controls.json"
CONTROLS_FIGURE = "controls.png"
COLORS = {"full": "#4c72b0", "subnetwork": "#dd8452"}  # as the report's
MEASURES = {  # name -> what it is, in words (controls.json and the figure's panels)
    "recovery": "Jaccard of each language's pruned mask with its family's planted set, minus its expectation for random masks of the same sizes (mean over languages; interval over seeds)",
    "recovery_by_effects": "Jaccard of each language's heads with the largest ablation effects on its validation loss (head_effects), as many as its family's planted set holds, with that set, minus its expectation for random sets of that size (mean over languages; interval over seeds). Both sets have the planted set's size, so no mask size needs adjusting for; only where the run measured head effects",
    "q1": "Q1: own-mask minus other-mask test accuracy (mean over language pairs; crossed interval)",
    "s_plus_full": "S+ of the full model: share of a test example's top-k proponents from its own language (crossed interval)",
    "s_plus_subnetwork": "S+ of the subnetworks (crossed interval)",
    "p1": "P1: M+ from the related language minus M+ from unrelated ones, full model (crossed interval)",
}


def controls(con: duckdb.DuckDBPyConnection, run_id: int, k: int) -> list[dict]:
    """One entry per planted sweep point of the run, by overlap; [] for a run without `planted:`."""
    out = []
    for point in internal_rows(con, "controls_points", run_id=run_id):
        data = findings.load(con, run_id, point["point"], k)
        answers = {f.question: f for f in findings.findings(data)}
        chance = 1 / len(data.languages) if data.languages else None
        measures = {
            "recovery": _recovery(con, run_id, point["point"]),
            "q1": _finding(answers["Q1"]),
            "s_plus_full": _crossed(data.in_language("full"), chance),
            "s_plus_subnetwork": _crossed(data.in_language("subnetwork"), chance),
            "p1": _finding(answers["P1"]),
        }
        by_effects = _recovery_by_effects(con, run_id, point["point"])
        if by_effects is not None:
            measures["recovery_by_effects"] = by_effects
        related = findings.related_languages(data.languages)
        families = sorted({tuple(sorted([a, *b])) for a, b in related.items() if b})
        per_family = {"/".join(family): _crossed(findings.related_minus_unrelated(data, "full", list(family))) for family in families}
        out.append({"point": point["point"], "overlap": point["overlap"], "chance": chance, "k": k,
                    "measures": measures, "p1_per_family": per_family})
    return out


def _summary(estimate: stats.Estimate | None, mean: float | None, n: dict, chance: float | None = None) -> dict:
    """A measure's mean, interval and sample sizes, and where the interval lies against 0 (a
    difference) or against `chance` (a share, such as S+, with its chance level)."""
    interval = list(estimate.interval()) if estimate is not None else None
    reference, name = (0.0, "0") if chance is None else (chance, "chance")
    verdict = None if interval is None else (
        f"above {name}" if interval[0] > reference else f"below {name}" if interval[1] < reference else f"includes {name}")
    return {"value": mean, "interval": interval, f"interval_vs_{name}": verdict, "n": n}


def _crossed(by_seed: dict[int, dict[str, float]], chance: float | None = None) -> dict:
    mean, estimate, n = findings.crossed_estimate(by_seed, []) if by_seed else (None, None, {})
    return _summary(estimate, mean, n, chance)


def _finding(finding: findings.Finding) -> dict:
    interval = finding.interval
    return {"value": finding.statistic, "interval": interval, "verdict": finding.verdict, "reasons": finding.reasons[:1],
            "n": finding.n}


def _recovery(con: duckdb.DuckDBPyConnection, run_id: int, point: str) -> dict:
    """Per seed, the mean over languages of J(pruned, planted) minus its random-mask expectation."""
    rows = [r for r in run_named(con, "planted_recovery", run_id=run_id, point=point).to_pylist() if r["seed"] != "mean"]
    return _above_random(rows, "kept")


def _recovery_by_effects(con: duckdb.DuckDBPyConnection, run_id: int, point: str) -> dict | None:
    """Per seed, the mean over languages of J(top heads by ablation effect, planted) minus its random-set
    expectation, the top set as large as the planted set; None where the point has no head_effects rows."""
    if "head_effects" not in {r["name"] for r in internal_rows(con, "store_relation_names")}:
        return None  # a store that no langspec with the head_effects stage has written to yet
    rows = [r for r in run_named(con, "planted_recovery_by_effects", run_id=run_id, point=point).to_pylist() if r["seed"] != "mean"]
    return _above_random(rows, "top") if rows else None


def _above_random(rows: list[dict], size: str) -> dict:
    """Per seed, the mean over languages of a Jaccard with the planted set minus its expectation for
    random sets of the same sizes (`size`: the column holding the other set's size), over seeds."""
    by_seed: dict[int, list[tuple[float, float]]] = {}
    for r in rows:
        random = stats.random_mask_jaccard(int(r["heads"]), int(r["planted"]), int(r[size]))
        by_seed.setdefault(int(r["seed"]), []).append((r["jaccard"], random))
    jaccard = [float(np.mean([j for j, _ in pairs])) for _, pairs in sorted(by_seed.items())]
    random = [float(np.mean([e for _, e in pairs])) for _, pairs in sorted(by_seed.items())]
    excess = [j - e for j, e in zip(jaccard, random)]
    estimate = stats.over_seeds(excess) if len(excess) >= findings.MIN_SEEDS else None
    summary = _summary(estimate, float(np.mean(excess)) if excess else None,
                       {"seeds": len(by_seed), "languages": len({r["language"] for r in rows})})
    return {**summary, "jaccard": float(np.mean(jaccard)) if jaccard else None,
            "random": float(np.mean(random)) if random else None}


def monotone(entries: list[dict], measure: str) -> bool | None:
    """Whether a measure's values fall (never rise) as the overlap grows; None with a missing value."""
    values = [e["measures"].get(measure, {}).get("value") for e in sorted(entries, key=lambda e: e["overlap"])]
    if len(values) < 2 or any(v is None for v in values):
        return None
    return all(b <= a for a, b in zip(values, values[1:]))


def write(con: duckdb.DuckDBPyConnection, run_id: int, k: int, out: Path) -> tuple[str, str, str] | None:
    """controls.json and controls.png in `out` for a run with planted points; the figure's (file,
    title, caption), or None."""
    entries = controls(con, run_id, k)
    if not entries:
        return None
    reported = [m for m in MEASURES if any(m in e["measures"] for e in entries)]  # recovery_by_effects: with head_effects
    document = {"measures": {m: MEASURES[m] for m in reported}, "monotone": {m: monotone(entries, m) for m in reported},
                "points": entries}
    (out / CONTROLS_FILE).write_text(json.dumps(document, indent=1) + "\n")
    return _figure(entries, out)


def _figure(entries: list[dict], out: Path) -> tuple[str, str, str]:
    import matplotlib.pyplot as plt

    overlaps = [e["overlap"] for e in entries]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))

    def line(ax, values: list[dict], label: str, color: str, shift: float = 0.0) -> None:
        xs = [x + shift for x, v in zip(overlaps, values) if v["value"] is not None]
        ys = [v["value"] for v in values if v["value"] is not None]
        errors = [[v["value"] - v["interval"][0] if v["interval"] else 0 for v in values if v["value"] is not None],
                  [v["interval"][1] - v["value"] if v["interval"] else 0 for v in values if v["value"] is not None]]
        ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label, color=color)

    ax = axes[0]
    line(ax, [e["measures"]["recovery"] for e in entries], "J - random", "#4c72b0")
    if any("recovery_by_effects" in e["measures"] for e in entries):
        absent = {"value": None, "interval": None}
        line(ax, [e["measures"].get("recovery_by_effects", absent) for e in entries], "top heads by ablation effect: J - random",
             "#55a868", 0.01)
    ax.plot(overlaps, [e["measures"]["recovery"]["jaccard"] for e in entries], "s--", color="#8172b3", label="J")
    ax.plot(overlaps, [e["measures"]["recovery"]["random"] for e in entries], ":", color="grey", label="J of random masks")
    ax.set_title("Pruned mask vs planted set")
    ax = axes[1]
    line(ax, [e["measures"]["q1"] for e in entries], "Q1", "#4c72b0")
    ax.set_title("Q1: own minus other mask (accuracy)")
    ax = axes[2]
    line(ax, [e["measures"]["s_plus_full"] for e in entries], "full", COLORS["full"], -0.01)
    line(ax, [e["measures"]["s_plus_subnetwork"] for e in entries], "subnetwork", COLORS["subnetwork"], 0.01)
    ax.plot(overlaps, [e["chance"] for e in entries], ":", color="grey", label="chance")
    ax.set_title(f"S+ (top-{entries[0]['k']})")
    ax = axes[3]
    line(ax, [e["measures"]["p1"] for e in entries], "all families", "#4c72b0")
    for i, family in enumerate(sorted(entries[0]["p1_per_family"])):
        line(ax, [e["p1_per_family"][family] for e in entries], family, ["#dd8452", "#55a868", "#c44e52"][i % 3], 0.01 * (i + 1))
    ax.set_title("P1: related minus unrelated M+")
    for ax in axes:
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xlabel("planted overlap (0: disjoint modules, 1: ordinary)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / CONTROLS_FIGURE, dpi=110)
    plt.close(fig)
    return (CONTROLS_FIGURE, "Known answers: the instrument against planted modules",
                  "At each planted overlap (0: each family trains its own heads; 1: ordinary fine-tuning), with 95% "
                  "intervals: the pruned masks' Jaccard with the planted sets against random masks of the same sizes "
                  "(and, where the run measured head effects, that of the heads with the largest ablation effects); "
                  "Q1's own-mask advantage; S+ of the full model and the subnetworks against chance; P1's related-minus-"
                  "unrelated M+, over all families and per family. Every point's numbers are in controls.json.")
