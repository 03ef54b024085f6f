"""Does TracIn predict the effect of removing a language? The correlation of each predictor of
transfer (TracIn's P[t, s], the M+ share, subnetwork Jaccard) with the measured effect E[t, s] of
leaving s out of fine-tuning: per seed, then a t interval and t test over seeds (the replications),
and an exploratory permutation p-value that permutes whole rows of E (test languages), the unit
that is exchangeable when P and E both carry per-test-language effects.

The statistics are langspec.science.stats'. `influence_validity` reads the store (the `validity_tests` macro and `ablation_examples`) and
returns plain data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import duckdb
import numpy as np

from langspec.science import stats
from store.queries import internal_table

PREDICTORS = ("tracin", "share", "jaccard")  # P[t, s]; M+[t, s]; J(t, s) of the multilingual subnetworks
METHODS = ("pearson", "spearman")
PAIRS = ("all", "off_diagonal")  # every (t, s), or t != s only (the diagonal alone can make a correlation)

# --- the data of one seed ---------------------------------------------------------------------------


@dataclass
class SeedData:
    """One seed's (t, s) grid, kept per example so that a bootstrap can resample examples.

    test_languages: the languages t, sorted; ablated: the languages s left out, sorted. For each t:
    `effects[t]`, one row per test example, one column per s (loss without s minus loss with all);
    `predictors[name][t]`, one row per TracIn test example of t, one column per s; `jaccard`, the
    (T, S) grid (None without subnetworks)."""

    test_languages: list[str]
    ablated: list[str]
    effects: dict[str, np.ndarray]
    predictors: dict[str, dict[str, np.ndarray]]
    jaccard: np.ndarray | None

    def grid(self, name: str, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(predictor, effect), each (T, S): means over t's examples, resampled with rng if given."""
        def mean(rows: np.ndarray) -> np.ndarray:
            picked = rows if rng is None else rows[rng.integers(0, len(rows), len(rows))]
            return picked.mean(axis=0)

        effect = np.stack([mean(self.effects[t]) for t in self.test_languages])
        if name == "jaccard":
            return self.jaccard, effect
        return np.stack([mean(self.predictors[name][t]) for t in self.test_languages]), effect

    def cells(self, pairs: str) -> np.ndarray:
        """Which cells of the (T, S) grid a correlation takes: all, or those with t != s."""
        return np.array([[pairs == "all" or t != s for s in self.ablated] for t in self.test_languages])


def seed_statistic(x: np.ndarray, y: np.ndarray, method: str, keep: np.ndarray, shuffle: np.random.Generator | None = None) -> float:
    """The correlation of two (T, S) grids over the cells `keep` marks; with `shuffle`, y's rows
    (its test languages, each with its cells) permuted first. Shuffling single cells would break
    each row's own level, which P and E share under the null too (p <= 0.05 in 32% of null runs)."""
    if shuffle is not None:
        y = y[shuffle.permutation(len(y))]
    return stats.correlation(x[keep], y[keep], method)


# --- the analysis -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Validity:
    """How well one predictor of transfer predicts the measured effect, for one TracIn variant:
    the mean over seeds of the per-seed correlation over (t, s) pairs."""

    variant: str
    predictor: str  # tracin | share | jaccard
    method: str  # pearson | spearman
    pairs: str  # all | off_diagonal
    statistic: float  # the mean over seeds of the per-seed correlations
    low: float  # t interval over seeds (NaN with one seed)
    high: float
    p: float  # two-sided t test over seeds of `mean = 0` (NaN with one seed)
    p_rows: float  # exploratory: E's rows permuted within each seed, two-sided
    n: int  # pairs per seed
    seeds: int
    per_seed: tuple[float, ...] = ()  # the seeds' correlations (those that are defined)


def read_seed_data(con: duckdb.DuckDBPyConnection, run_id: int, point: str, k: int) -> dict[tuple[str, int], SeedData]:
    """{(variant, seed): SeedData} of one run's sweep point: the seeds with both TracIn scores and
    ablation tasks (mode without); s ranges over the ablated languages that TracIn scored."""
    tests = internal_table(con, "validity_tests", run_id=run_id, point=point, k=k).to_pylist()
    measured = internal_table(con, "validity_effects", run_id=run_id, point=point).to_pylist()
    jaccard = {(r["seed"], r["language_a"], r["language_b"]): r["jaccard"]
               for r in internal_table(con, "validity_jaccard", run_id=run_id, point=point).to_pylist()}
    effects: dict[int, dict[str, dict[str, dict[str, float]]]] = {}  # seed -> t -> example -> s -> effect
    for r in measured:
        effects.setdefault(r["seed"], {}).setdefault(r["language"], {}).setdefault(r["example_id"], {})[r["ablated"]] = r["loss_effect"]
    scored: dict[tuple[str, int], dict[str, dict[int, dict[str, tuple[float, float]]]]] = {}
    for r in tests:
        scored.setdefault((r["variant"], r["seed"]), {}).setdefault(r["test_language"], {}).setdefault(r["test_no"], {})[
            r["train_language"]] = (r["score"], r["share"])
    data = {}
    for (variant, seed), by_test_language in sorted(scored.items()):
        languages = sorted(by_test_language)
        scored = set.intersection(*(set(row) for rows in by_test_language.values() for row in rows.values()))
        ablated = sorted({s for example in effects.get(seed, {}).values() for row in example.values() for s in row} & scored)
        if not ablated or not set(languages) <= set(effects[seed]):
            continue  # no ablation of this seed, or test languages it did not score
        grids = {"tracin": {}, "share": {}}
        for t in languages:
            rows = [by_test_language[t][no] for no in sorted(by_test_language[t])]
            grids["tracin"][t] = np.array([[row[s][0] for s in ablated] for row in rows])
            grids["share"][t] = np.array([[row[s][1] for s in ablated] for row in rows])
        seed_effects = {t: np.array([[row[s] for s in ablated] for _, row in sorted(effects[seed][t].items())]) for t in languages}
        grid = [[jaccard.get((seed, t, s)) for s in ablated] for t in languages]
        has_jaccard = all(value is not None for row in grid for value in row)
        data[(variant, seed)] = SeedData(languages, ablated, seed_effects, grids, np.array(grid, dtype=float) if has_jaccard else None)
    return data


def influence_validity(
    con: duckdb.DuckDBPyConnection, run_id: int, point: str, k: int, *, permutations: int = 1000, seed: int = 0,
) -> list[Validity]:
    """For each TracIn variant, predictor, correlation method and pair set: the mean over seeds of the
    per-seed correlation of the predictor with E[t, s], its t interval and t test over seeds, and a
    permutation p-value (E's rows permuted within each seed). Empty without ablation data."""
    return validity_of(by_variant(read_seed_data(con, run_id, point, k)), permutations=permutations, seed=seed)


def by_variant(seed_data: dict[tuple[str, int], SeedData]) -> dict[str, list[SeedData]]:
    """read_seed_data's grids as variant -> one SeedData per seed, in seed order."""
    grouped: dict[str, list[SeedData]] = {}
    for (variant, _), data in sorted(seed_data.items()):
        grouped.setdefault(variant, []).append(data)
    return grouped


def validity_of(grouped: dict[str, list[SeedData]], *, permutations: int = 1000, seed: int = 0) -> list[Validity]:
    """influence_validity's results from by_variant's grids."""
    results = []
    for variant, seeds in grouped.items():
        for predictor in PREDICTORS:
            if predictor == "jaccard" and any(s.jaccard is None for s in seeds):
                continue
            for method in METHODS:
                for pairs in PAIRS:
                    results.append(_validity(variant, predictor, method, pairs, seeds, permutations, seed))
    return results


def _validity(variant, predictor, method, pairs, seeds: list[SeedData], permutations, seed) -> Validity:
    grids = [(*data.grid(predictor), data.cells(pairs)) for data in seeds]
    per_seed = [seed_statistic(x, y, method, keep) for x, y, keep in grids]
    observed = float(np.nanmean(per_seed))
    finite = [r for r in per_seed if not math.isnan(r)]
    low = high = p = math.nan
    if len(finite) >= 2:
        estimate = stats.over_seeds(finite)
        (low, high), p = estimate.interval(), estimate.p_value()
        low, high = max(low, -1.0), min(high, 1.0)  # a correlation: the interval says nothing impossible

    def shuffled(rng: np.random.Generator | None) -> float:
        return float(np.nanmean([seed_statistic(x, y, method, keep, shuffle=rng) for x, y, keep in grids]))

    rngs = np.random.default_rng(seed).spawn(permutations)
    p_rows = stats.permutation_p(observed, shuffled, [None, *rngs], alternative="two-sided")  # None: the observed pairing
    return Validity(variant, predictor, method, pairs, observed, low, high, p, p_rows, int(grids[0][2].sum()), len(finite),
                    tuple(finite))


def as_rows(results: list[Validity]) -> list[dict]:
    return [asdict(result) for result in results]
