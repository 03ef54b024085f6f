"""The statistics behind the study's findings (langspec.science.findings): intervals and tests whose unit is
the seed, with test examples crossed with seeds; permutation p-values (the Mantel test among them),
Holm's adjustment, binomial intervals and correlations (tests over relabellings of the languages:
langspec.science.relabelling).

Plain numpy, deterministic for a seed: the same data and seed give the same interval and p-value,
bit for bit. Every function that draws takes its random generator's seed explicitly.

    over_seeds(per_seed)                           t interval and test of a mean of per-seed statistics
    crossed(table)                                 the same for a (seeds, test examples) table, both random
    Estimate.interval(level), .p_value(side)       an interval and the p-value that inverts it
    Estimate.at_seeds(n), .minimum_detectable(a)   the same design with n seeds; its effect found at 80% power
    failed_seeds(per_seed)                         seeds whose statistic lies far outside the others' (a rule fixed in advance)
    skewness(values)                               the adjusted Fisher-Pearson sample skewness G1
    holm(p_values)                                 Holm's step-down adjustment of a family
    permutation_p(observed, statistic_fn, perms)   p-value of any statistic against its permutations
    label_permutations(n)                          every relabelling of n languages (sampled above 8)
    mantel(x, y)                                   matrix correlation, language labels permuted
    correlation(x, y, method)                      Pearson or Spearman (average ranks for ties)
    wilson_interval(successes, n)                  binomial interval of a proportion
    random_mask_jaccard(heads, kept_a, kept_b)     expected Jaccard of two random masks of these sizes
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # the level of every interval unless told
EXACT_PERMUTATIONS_UP_TO = 8  # labels; 8! = 40,320 permutations are enumerated, more are sampled
RANDOM_PERMUTATIONS = 9999  # sampled permutations when they are too many to enumerate


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


# --- intervals and tests over seeds, with test examples crossed with them ---------------------


@dataclass(frozen=True)
class Estimate:
    """A mean and the parts of its sampling variance, each with its degrees of freedom. The interval
    is mean ± sqrt(sum of t²(level, df) · part), each part with its own t quantile (one part: the
    t interval); the p-value of `mean = 0` is the level at which the interval reaches 0, so p and
    interval always agree."""

    mean: float
    parts: tuple[tuple[float, float], ...]  # (variance of the mean from this source, its degrees of freedom)
    seeds: int | None = None  # the seeds behind parts[0], the seeds' part; None: no part shrinks with seeds

    def at_seeds(self, seeds: int) -> Estimate:
        """The same design with `seeds` seeds and the same test examples: the seeds' part (parts[0])
        scaled by its seeds / `seeds`, with `seeds` - 1 degrees of freedom; the test examples' part
        stays (more seeds do not shrink it: they score the same examples)."""
        if self.seeds is None:
            raise ValueError("this estimate has no seeds' part to scale")
        (variance, _), *rest = self.parts
        return Estimate(self.mean, ((variance * self.seeds / seeds, seeds - 1), *rest), seeds)

    def minimum_detectable(self, alpha: float = 1 - LEVEL, power: float = 0.8) -> float:
        """The smallest true mean that this design declares (its two-sided level-(1 - alpha) interval
        excludes 0) with probability `power`, from its variance parts as estimated:
        sqrt(sum over parts of (t(1 - alpha/2, df) + t(power, df))^2 * part). With one part it is the
        textbook (t(1 - alpha/2, df) + t(power, df)) * SE of the t test; each part keeps its own
        quantiles, as the interval does. NaN where no part has variance (nothing to size it against).
        An approximation that errs low at few seeds: simulated, a t test over 3 seeds finds this
        effect with power 0.77 at alpha = 0.05 and 0.69 at 0.05/6; over 5 seeds 0.79 and 0.75."""
        terms = [(t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) ** 2 * variance for variance, df in self.parts if variance > 0]
        return math.sqrt(sum(terms)) if terms else math.nan

    def half_width(self, level: float = LEVEL) -> float:
        q = 1 - (1 - level) / 2
        return math.sqrt(sum(t_quantile(q, df) ** 2 * variance for variance, df in self.parts if variance > 0))

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        half = self.half_width(level)
        return (self.mean - half, self.mean + half)

    def p_value(self, alternative: str = "two-sided") -> float:
        """p of the null `mean = 0` against 'two-sided', 'greater' or 'less'."""
        if alternative not in ("two-sided", "greater", "less"):
            raise ValueError(f"alternative must be two-sided, greater or less, not {alternative!r}")
        two_sided = self._two_sided_p()
        if alternative == "two-sided":
            return two_sided
        on_its_side = self.mean > 0 if alternative == "greater" else self.mean < 0
        return two_sided / 2 if on_its_side else 1 - two_sided / 2

    def _two_sided_p(self) -> float:
        if self.mean == 0:
            return 1.0
        if self.half_width(0.5) == 0:  # no variance: the mean is what it is
            return 0.0
        low, high = 0.0, 1.0 - 1e-15  # the level whose interval ends at 0: its half width grows with the level
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if self.half_width(mid) < abs(self.mean) else (low, mid)
        return 1 - (low + high) / 2


def over_seeds(per_seed: Sequence[float]) -> Estimate:
    """The mean of per-seed statistics, seeds as the replications: the t interval with seeds - 1
    degrees of freedom. Honest at 2 seeds (wide: t = 12.7) where a bootstrap gives their range."""
    values = np.asarray(per_seed, dtype=float)
    if len(values) < 2:
        raise ValueError("an interval over seeds needs at least 2 seeds")
    return Estimate(float(values.mean()), ((float(values.var(ddof=1)) / len(values), len(values) - 1),), len(values))


def crossed(values: np.ndarray) -> Estimate:
    """The grand mean of a (seeds, examples) table in which every seed scored the same test examples
    (crossed, not nested), seeds and examples both random. By the two-way ANOVA's expected mean
    squares, Var(mean) = MS_seed / (S N) + (MS_example - MS_residual) / (S N): the first part (seed
    effects and noise) has S - 1 degrees of freedom, the second (the test examples' own effects)
    N - 1. Each part gets its own t quantile: at 2 or 3 seeds the seeds' part is not mistaken for
    well estimated (Satterthwaite's pooled df covered 0.88 at 2 seeds in langspec's simulations)."""
    values = np.asarray(values, dtype=float)
    seeds, examples = values.shape
    if seeds < 2 or examples < 2:
        raise ValueError(f"a crossed interval needs at least 2 seeds and 2 test examples, got {seeds} x {examples}")
    mean = float(values.mean())
    seed_means, example_means = values.mean(axis=1), values.mean(axis=0)
    ms_seed = examples * float(((seed_means - mean) ** 2).sum()) / (seeds - 1)
    ms_example = seeds * float(((example_means - mean) ** 2).sum()) / (examples - 1)
    residual = values - seed_means[:, None] - example_means[None, :] + mean
    ms_residual = float((residual**2).sum()) / ((seeds - 1) * (examples - 1))
    cells = seeds * examples
    return Estimate(mean, ((ms_seed / cells, seeds - 1), (max(ms_example - ms_residual, 0.0) / cells, examples - 1)), seeds)


FAILED_SEED_RATE = 0.05  # of studies in which no seed failed, at most this share has one flagged (normal seeds)


def failed_seeds(per_seed: Sequence[float], rate: float = FAILED_SEED_RATE) -> list[int]:
    """The positions of seeds whose statistic lies farther from the others' than chance allows: a rule
    fixed in advance. Each seed's leave-one-out studentized deviation,
    t_i = (x_i - mean of the others) / (sd of the others * sqrt(1 + 1 / (S - 1))), follows Student's t
    with S - 2 degrees of freedom when the seeds are normal and none failed; a seed is flagged when
    |t_i| exceeds t(1 - rate / (2 S), S - 2) (Bonferroni over the S seeds), so at most `rate` of the
    studies without a failed seed flag one. It needs 3 seeds (of 2, neither can be told the failed
    one); at 3 the bound is t(1 - 0.05/6, 1) = 38: only a seed far outside the other two is flagged.
    Others that agree exactly give no scale to measure by: no flag.
    The median-and-MAD rule flagged 20-50% of sound 3-to-5-seed studies at any useful cut-off."""
    values = np.asarray(per_seed, dtype=float)
    seeds = len(values)
    if seeds < 3:
        return []
    bound = t_quantile(1 - rate / (2 * seeds), seeds - 2)
    flagged = []
    for i in range(seeds):
        others = np.delete(values, i)
        deviation = abs(values[i] - others.mean())
        scale = float(others.std(ddof=1)) * math.sqrt(1 + 1 / len(others))
        if scale > 0 and deviation / scale > bound:
            flagged.append(i)
    return flagged


SKEWED_EXAMPLES_ABOVE = 1.5  # |G1| of the test examples' values above which findings note it (benchmarks/calibration.py, skewed)


def skewness(values: Sequence[float]) -> float:
    """The adjusted Fisher-Pearson sample skewness G1 = sqrt(n (n - 1)) / (n - 2) * m3 / m2^1.5 (m2, m3:
    the central moments with divisor n), the one most packages report; 0 for a symmetric sample, NaN
    for fewer than 3 values or a constant sample."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 3:
        return math.nan
    centred = x - x.mean()
    m2, m3 = float((centred**2).mean()), float((centred**3).mean())
    if m2 == 0:
        return math.nan
    return math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2**1.5


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: not tested, left out)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function, through the regularised incomplete beta function."""
    if math.isinf(df):
        return 0.5 * (1 + math.erf(t / math.sqrt(2)))
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


@functools.lru_cache(maxsize=4096)
def t_quantile(q: float, df: float) -> float:
    """The q quantile of Student's t: Newton's method on t_cdf from the normal quantile, kept inside
    a bracket that shrinks at every step (bisection where Newton would leave it), to ~1e-13."""
    if math.isinf(df):
        return _normal_quantile(q)
    low, high = -1e16, 1e16
    x = _normal_quantile(q)
    for _ in range(200):
        error = t_cdf(x, df) - q
        if error < 0:
            low = x
        else:
            high = x
        if abs(error) < 1e-14 or high - low < 1e-13 * max(1.0, abs(x)):
            break
        density = _t_density(x, df)
        newton = x - error / density if density > 0 else math.nan
        x = newton if low < newton < high else (low + high) / 2
    return x


def _t_density(t: float, df: float) -> float:
    log = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi) - (df + 1) / 2 * math.log1p(t * t / df)
    return math.exp(log)


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) by Lentz's continued fraction (Numerical Recipes' betacf), exact to ~1e-14."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below this point: use the symmetry
        return 1 - _incomplete_beta(b, a, 1 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)) / a
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return front * fraction


@functools.lru_cache(maxsize=4096)
def _normal_quantile(q: float) -> float:
    """The standard normal quantile, by bisection on erf (no scipy needed; exact to 1e-12)."""
    low, high = -40.0, 40.0
    while high - low > 1e-12:
        mid = (low + high) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < q:
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
