"""The estimates every question shares: a t interval over per-seed statistics, and the crossed interval
over seeds and test examples, each with the notes on a seed that looks failed or test examples that
are skewed; CROSSED_TEST and SEEDS_TEST name them in a finding."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from langspec.science import stats
from langspec.science.verdicts import IDENTICAL_SEEDS, MIN_SEEDS, clean, plural

CROSSED_TEST = ("crossed interval and t test: seeds (S - 1 df) and test examples (N - 1 df) as the two random factors, "
                "each part with its own t quantile")
SEEDS_TEST = "t interval and t test over the per-seed statistics (seeds - 1 df)"


def over_seeds_estimate(per_seed: list[float], reasons: list[str], *, seeds: list[int] | None = None,
                        notes: list[str] | None = None, details: dict | None = None) -> stats.Estimate | None:
    """The t estimate over per-seed statistics; None (with the reason) with one seed or seeds that
    agree exactly. With `notes` and `details`, a seed that looks failed (stats.failed_seeds) is
    named there with the estimate without it; the estimate returned keeps every seed."""
    if len(per_seed) < MIN_SEEDS:
        reasons.append(f"seeds: {plural(len(per_seed), 'seed')}; an interval over seeds needs at least {MIN_SEEDS}")
        return None
    if max(per_seed) == min(per_seed):
        reasons.append(IDENTICAL_SEEDS)
        return None
    values = np.asarray(per_seed, dtype=float)
    _check_seeds(values, seeds or list(range(len(values))), lambda kept: stats.over_seeds(values[kept]), notes, details)
    return stats.over_seeds(per_seed)


def crossed_estimate(by_seed: dict[int, dict[str, float]], reasons: list[str], *, notes: list[str] | None = None,
                     details: dict | None = None) -> tuple[float | None, stats.Estimate | None, dict]:
    """The mean of per-test-example values (seed -> test_id -> value) over the test examples every
    seed has, its crossed estimate (None with one seed, or with seeds that agree on every test
    example), and their sample sizes. With `notes` and `details`, a seed whose mean looks failed
    is named there (stats.failed_seeds), with the estimate without it."""
    common = sorted(set.intersection(*(set(v) for v in by_seed.values()))) if by_seed else []
    n = {"seeds": len(by_seed), "test_examples": len(common)}
    if not common:
        reasons.append("no test example was scored in every seed")
        return None, None, n
    seeds = sorted(by_seed)
    table = np.array([[by_seed[seed][z] for z in common] for seed in seeds])
    if len(by_seed) < MIN_SEEDS:
        reasons.append(f"seeds: {plural(len(by_seed), 'seed')}; an interval over seeds needs at least {MIN_SEEDS}")
        return float(table.mean()), None, n
    if len(common) < 2:
        reasons.append("test examples: fewer than 2 scored in every seed")
        return float(table.mean()), None, n
    if (table == table[0]).all():
        reasons.append(IDENTICAL_SEEDS)
        return float(table.mean()), None, n
    _check_seeds(table.mean(axis=1), seeds, lambda kept: stats.crossed(table[kept]), notes, details)
    _check_examples(table.mean(axis=0), notes, details)
    return float(table.mean()), stats.crossed(table), n


def _check_seeds(per_seed: np.ndarray, seeds: list[int], refit: Callable[[list[int]], stats.Estimate], notes: list[str] | None,
                 details: dict | None) -> None:
    if notes is None or details is None:
        return
    flagged = stats.failed_seeds(per_seed)
    if not flagged:
        return
    kept = [i for i in range(len(per_seed)) if i not in flagged]
    without = refit(kept) if len(kept) >= MIN_SEEDS else None
    interval = list(without.interval()) if without is not None else None
    names = [seeds[i] for i in flagged]
    details["failed_seeds"] = {
        "flagged": names, "per_seed": [clean(v) for v in per_seed],
        "rule": f"a seed's leave-one-out studentized deviation beyond t(1 - {stats.FAILED_SEED_RATE}/(2 x seeds), seeds - 2): "
                f"at most {stats.FAILED_SEED_RATE} of studies without a failed seed flag one",
        "statistic_without": clean(without.mean) if without else None, "interval_without": interval,
    }
    listed = ", ".join(str(s) for s in names)
    without_text = ""
    if without is not None:
        spread = f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval[1] > interval[0] else ""
        without_text = f"; without it: {without.mean:+.3f}{spread}"
    notes.append(f"seed {listed} looks failed: its statistic ({', '.join(f'{per_seed[i]:+.3f}' for i in flagged)}) lies "
                 f"outside the other seeds' beyond chance (rule in details){without_text}; the estimate keeps every seed")


def _check_examples(per_example: np.ndarray, notes: list[str] | None, details: dict | None) -> None:
    """Note test examples whose values (each one's mean over seeds) are skewed beyond
    stats.SKEWED_EXAMPLES_ABOVE: the crossed interval takes them as near normal. A skewed population
    of test examples lowers coverage (benchmarks/calibration.py --crossed-skew), most in the studies
    whose sample lacks the long tail: the note speaks of the population the sample shows."""
    if notes is None or details is None:
        return
    skewness = stats.skewness(per_example)
    if not abs(skewness) > stats.SKEWED_EXAMPLES_ABOVE:
        return
    details["skewed_test_examples"] = {
        "skewness": clean(skewness), "test_examples": len(per_example), "threshold": stats.SKEWED_EXAMPLES_ABOVE,
        "rule": "the adjusted Fisher-Pearson skewness G1 of the test examples' values (each one's mean over seeds) beyond "
                f"±{stats.SKEWED_EXAMPLES_ABOVE}",
    }
    notes.append(f"the test examples' values are skewed (G1 = {skewness:+.2f} over {len(per_example)} test examples, beyond "
                 f"±{stats.SKEWED_EXAMPLES_ABOVE}): the crossed interval takes them as near normal. In langspec's simulation, where "
                 "lognormal test examples carry most of the variance, intervals from such populations covered 0.89-0.94 at 5 seeds; "
                 "those whose sample shows the tail, as this one, 0.96 or more: the misses fall where the sample lacks it "
                 "(benchmarks/RESULTS.md)")
