"""The statistics behind the study's findings (langspec.findings): seeded bootstrap intervals,
permutation p-values (the Mantel test among them), binomial intervals and correlations.

Plain numpy, deterministic for a seed: the same data and seed give the same interval and p-value,
bit for bit. Every function takes its random generator's seed explicitly.

    bootstrap_interval(resample_fn, seed=0)        percentile interval of any statistic
    nested_bootstrap_mean(groups, seed=0)          interval of a mean over groups (seeds) of units
                                                   (test examples), both resampled
    permutation_p(observed, statistic_fn, perms)   p-value of any statistic against its permutations
    mantel(x, y)                                   matrix correlation, language labels permuted
    correlation(x, y, method)                      Pearson or Spearman (average ranks for ties)
    wilson_interval(successes, n)                  binomial interval of a proportion
    random_mask_jaccard(heads, kept_a, kept_b)     expected Jaccard of two random masks of these sizes
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

LEVEL = 0.95  # the level of every interval unless told
RESAMPLES = 2000  # bootstrap resamples: the percentile interval's ends move by < 0.01 sd between seeds
EXACT_PERMUTATIONS_UP_TO = 8  # labels; 8! = 40,320 permutations are enumerated, more are sampled
RANDOM_PERMUTATIONS = 9999  # sampled permutations (and sign flips) when they are too many to enumerate


def bootstrap_interval(resample_fn: Callable[[np.random.Generator], float], *, resamples: int = RESAMPLES,
                       level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of a statistic: `resample_fn(rng)` draws one resample with `rng` and
    returns the statistic on it. A resample whose statistic is NaN (e.g. a correlation of constant
    values) is left out; if half of them are, the interval is (nan, nan)."""
    rng = np.random.default_rng(seed)
    values = np.array([resample_fn(rng) for _ in range(resamples)], dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < resamples / 2:
        return (math.nan, math.nan)
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return (float(low), float(high))


def nested_bootstrap_mean(groups: Sequence[Sequence[float]], *, resamples: int = RESAMPLES, level: float = LEVEL,
                          seed: int = 0) -> tuple[float, float]:
    """Interval of the mean over groups of the mean within each group (e.g. groups = seeds, values =
    per-test-example differences), resampling the groups and then the values within each drawn
    group, both with replacement: the interval covers seed-to-seed and example-to-example variation."""
    arrays = [np.asarray(g, dtype=float) for g in groups]
    if len(arrays) < 2:
        raise ValueError("a bootstrap over groups needs at least 2 groups (seeds)")

    def resample(rng: np.random.Generator) -> float:
        chosen = rng.integers(0, len(arrays), len(arrays))
        return float(np.mean([arrays[g][rng.integers(0, len(arrays[g]), len(arrays[g]))].mean() for g in chosen]))

    return bootstrap_interval(resample, resamples=resamples, level=level, seed=seed)


def permutation_p(observed: float, statistic_fn: Callable[[object], float], permutations: Iterable[object], *,
                  alternative: str = "greater") -> float:
    """p-value of `observed` against `statistic_fn(permutation)` for each permutation given (which
    must include the identity, or the observed data, once: the smallest p is 1 / their number).
    alternative: 'greater' (the statistic is larger than under the null), 'less', or 'two-sided'
    (|statistic| >= |observed|). A tiny tolerance counts ties of floating-point sums as ties."""
    values = np.array([statistic_fn(p) for p in permutations], dtype=float)
    tolerance = 1e-12 * max(1.0, abs(observed))
    if alternative == "greater":
        hits = values >= observed - tolerance
    elif alternative == "less":
        hits = values <= observed + tolerance
    elif alternative == "two-sided":
        hits = np.abs(values) >= abs(observed) - tolerance
    else:
        raise ValueError(f"alternative must be greater, less or two-sided, not {alternative!r}")
    return float(hits.sum() / len(values))


def label_permutations(n: int, *, seed: int = 0, random: int = RANDOM_PERMUTATIONS) -> list[tuple[int, ...]]:
    """Every permutation of n labels (identity first) when n <= EXACT_PERMUTATIONS_UP_TO, else the
    identity and `random` seeded random ones."""
    if n <= EXACT_PERMUTATIONS_UP_TO:
        return list(itertools.permutations(range(n)))
    rng = np.random.default_rng(seed)
    return [tuple(range(n))] + [tuple(int(i) for i in rng.permutation(n)) for _ in range(random)]


def sign_flip_p(differences: Sequence[float], *, seed: int = 0, random: int = RANDOM_PERMUTATIONS) -> float:
    """Two-sided p-value of a mean paired difference: the differences' signs flipped at random (the
    null: each difference is as likely positive as negative), the observed signs counted once."""
    values = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(seed)
    flips = [np.ones(len(values))] + [rng.choice([-1.0, 1.0], len(values)) for _ in range(random)]
    return permutation_p(float(values.mean()), lambda signs: float((values * signs).mean()), flips, alternative="two-sided")


def off_diagonal(matrix: np.ndarray, order: Sequence[int] | None = None) -> np.ndarray:
    """The entries [a, b], a != b, of a square matrix in row-major order, after relabelling rows and
    columns by `order` (entry [a, b] of the result is matrix[order[a], order[b]])."""
    m = np.asarray(matrix, dtype=float)
    if order is not None:
        m = m[np.ix_(order, order)]
    return m[~np.eye(len(m), dtype=bool)]


def mantel(x: np.ndarray, y: np.ndarray, *, method: str = "pearson", seed: int = 0,
           alternative: str = "greater") -> tuple[float, float, int]:
    """Mantel test of two L x L matrices (e.g. Jaccard J and cross-language share M+): the
    correlation of their off-diagonal entries, and its p-value against the correlations after
    relabelling the languages of `x` by every permutation (L! of them; sampled above
    EXACT_PERMUTATIONS_UP_TO). Pairs share languages and J is symmetric, so the pairs are not
    independent: permuting the labels keeps that structure under the null. Returns (r, p, number of
    permutations); the smallest attainable p is 1 / that number (1/120 for 5 languages)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"the Mantel test needs two square matrices of one size, got {x.shape} and {y.shape}")
    target = off_diagonal(y)
    observed = correlation(off_diagonal(x), target, method)
    permutations = label_permutations(len(x), seed=seed)
    p = permutation_p(observed, lambda order: correlation(off_diagonal(x, order), target, method), permutations,
                      alternative=alternative)
    return observed, p, len(permutations)


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span (Spearman's definition)."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranked[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranked


def correlation(x: Sequence[float], y: Sequence[float], method: str = "pearson") -> float:
    """Pearson's r, or Spearman's rho (Pearson of the average ranks). NaN when either side is constant."""
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be pearson or spearman, not {method!r}")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"a correlation needs two sequences of one length >= 2, got {len(x)} and {len(y)}")
    if method == "spearman":
        x, y = ranks(x), ranks(y)
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum() / denominator) if denominator > 0 else math.nan


def wilson_interval(successes: int, n: int, *, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (better than the normal one near 0 and 1)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = _normal_quantile(1 - (1 - level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def _normal_quantile(q: float) -> float:
    """The standard normal quantile, by bisection on erf (no scipy needed; exact to 1e-12)."""
    low, high = -10.0, 10.0
    while high - low > 1e-12:
        mid = (low + high) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def random_mask_jaccard(heads: int, kept_a: int, kept_b: int) -> float:
    """Expected Jaccard |A and B| / |A or B| of two independent uniformly random sets of heads of
    sizes kept_a and kept_b out of `heads`: the overlap is hypergeometric."""
    if not (0 <= kept_a <= heads and 0 <= kept_b <= heads):
        raise ValueError(f"kept heads must be between 0 and {heads}, got {kept_a} and {kept_b}")
    if kept_a == kept_b == 0:
        return 1.0  # two empty masks are equal, as in the subnetwork_pairs view
    total = math.comb(heads, kept_b)
    expected = 0.0
    for both in range(max(0, kept_a + kept_b - heads), min(kept_a, kept_b) + 1):
        ways = math.comb(kept_a, both) * math.comb(heads - kept_a, kept_b - both)
        expected += ways / total * both / (kept_a + kept_b - both)
    return expected
