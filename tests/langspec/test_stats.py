"""langspec.science.stats against plain-Python loops and hand-computed cases: seeded and deterministic."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import numpy as np
import pytest

from langspec.science import stats


def pearson_by_hand(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def test_mantel_equals_a_loop_over_every_relabelling():
    rng = random.Random(3)
    size = 5
    x = [[0.0 if a == b else rng.random() for b in range(size)] for a in range(size)]
    x = [[(x[a][b] + x[b][a]) / 2 for b in range(size)] for a in range(size)]  # symmetric, like Jaccard
    y = [[rng.random() + 0.5 * x[a][b] for b in range(size)] for a in range(size)]  # asymmetric, like M+
    pairs = [(a, b) for a in range(size) for b in range(size) if a != b]
    observed = pearson_by_hand([x[a][b] for a, b in pairs], [y[a][b] for a, b in pairs])
    at_least = 0
    for order in itertools.permutations(range(size)):
        r = pearson_by_hand([x[order[a]][order[b]] for a, b in pairs], [y[a][b] for a, b in pairs])
        at_least += r >= observed - 1e-12
    r, p, count = stats.mantel(np.array(x), np.array(y))
    assert count == 120 and math.isclose(r, observed, rel_tol=1e-12)
    assert p == at_least / 120 and p >= 1 / 120


def test_mantel_of_a_matrix_with_itself_reaches_the_smallest_p():
    rng = np.random.default_rng(0)
    x = rng.random((5, 5))
    x = x + x.T  # distinct entries: only the identity (and no other relabelling) gives r = 1
    assert stats.mantel(x, x)[1] == 1 / 120


def test_t_distribution_against_its_closed_forms():
    for t in (-30.0, -2.0, -0.3, 0.0, 0.7, 4.0, 1e3):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)  # Cauchy
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-13)
        assert stats.t_cdf(t, math.inf) == pytest.approx(0.5 * math.erfc(-t / math.sqrt(2)), abs=1e-15)
    for q in (1e-6, 0.025, 0.3, 0.5, 0.9, 0.975, 1 - 1e-7):
        assert stats.t_quantile(q, 1) == pytest.approx(math.tan(math.pi * (q - 0.5)), rel=1e-9, abs=1e-12)
        assert stats.t_quantile(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-9, abs=1e-12)
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.7764451052, abs=1e-9)  # the textbook table
    assert stats.t_quantile(0.975, 30) == pytest.approx(2.0422724563, abs=1e-9)
    assert stats.t_cdf(stats.t_quantile(0.9, 7.3), 7.3) == pytest.approx(0.9, abs=1e-13)  # Satterthwaite's df need not be whole


def test_over_seeds_is_the_t_interval_and_its_p_inverts_it():
    values = [0.1, 0.3, 0.2]
    estimate = stats.over_seeds(values)
    half = 4.302652729749464 * statistics.stdev(values) / math.sqrt(3)  # t(0.975, 2)
    assert estimate.interval() == pytest.approx((0.2 - half, 0.2 + half), abs=1e-12)
    t = 0.2 / (statistics.stdev(values) / math.sqrt(3))
    assert estimate.p_value() == pytest.approx(2 * (1 - stats.t_cdf(t, 2)), abs=1e-9)
    assert estimate.p_value("greater") == pytest.approx(estimate.p_value() / 2, abs=1e-9)
    assert estimate.p_value("less") == pytest.approx(1 - estimate.p_value() / 2, abs=1e-9)
    low, _ = estimate.interval(1 - estimate.p_value())
    assert low == pytest.approx(0, abs=1e-9)  # the interval at level 1 - p ends at 0
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.over_seeds([0.1])


def test_crossed_estimate_from_the_anova_by_hand():
    table = np.array([[0.1, 0.4, 0.2, 0.5], [0.3, 0.5, 0.2, 0.8], [0.2, 0.3, 0.0, 0.6]])  # 3 seeds x 4 test examples
    seeds, examples, mean = 3, 4, table.mean()
    ms_seed = sum(examples * (row.mean() - mean) ** 2 for row in table) / (seeds - 1)
    ms_example = sum(seeds * (table[:, j].mean() - mean) ** 2 for j in range(examples)) / (examples - 1)
    ms_residual = sum((table[i, j] - table[i].mean() - table[:, j].mean() + mean) ** 2
                      for i in range(seeds) for j in range(examples)) / ((seeds - 1) * (examples - 1))
    half = math.sqrt(stats.t_quantile(0.975, 2) ** 2 * ms_seed / 12 + stats.t_quantile(0.975, 3) ** 2 * (ms_example - ms_residual) / 12)
    assert stats.crossed(table).interval() == pytest.approx((mean - half, mean + half), abs=1e-12)
    # with no example effects the example part is 0, and the interval is the t interval over the seeds' means
    flat = np.array([[0.1] * 4, [0.3] * 4, [0.2] * 4])
    assert stats.crossed(flat).interval() == pytest.approx(stats.over_seeds([0.1, 0.3, 0.2]).interval(), abs=1e-12)


def test_crossed_interval_keeps_its_rate_where_nesting_did_not():
    """Seeds share their test examples: a seed effect and an example effect, no true difference.
    The crossed interval covers 0 at about its 95%; the nested bootstrap it replaces covered 0.77."""
    rng = np.random.default_rng(3)
    for seeds in (2, 3):
        covered = sum(lo <= 0 <= hi for lo, hi in (
            stats.crossed(rng.normal(0, 0.04, (seeds, 1)) + rng.normal(0, 0.04, (1, 60)) + rng.normal(0, 0.1, (seeds, 60))).interval()
            for _ in range(400)))
        assert covered / 400 >= 0.92, (seeds, covered)


def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert stats.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert stats.holm([None, None]) == [None, None]


def test_spearman_uses_average_ranks_and_pearson_matches_a_loop():
    x, y = [1, 2, 2, 3, 7], [10, 8, 9, 1, 2]
    assert list(stats.ranks(x)) == [1, 2.5, 2.5, 4, 5]
    assert math.isclose(stats.correlation(x, y, "spearman"), pearson_by_hand([1, 2.5, 2.5, 4, 5], [5, 3, 4, 1, 2]))
    assert math.isclose(stats.correlation(x, y), pearson_by_hand(x, y))
    assert math.isnan(stats.correlation([1, 1, 1], [1, 2, 3]))


def test_wilson_interval_hand_computed():
    # p = 0.57, n = 100, z = 1.959964: centre (p + z²/2n) / (1 + z²/n) = 0.567410, half-width
    # z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²) = 0.095256
    low, high = stats.wilson_interval(57, 100)
    assert low == pytest.approx(0.472154, abs=2e-6) and high == pytest.approx(0.662666, abs=2e-6)
    assert stats.wilson_interval(0, 10)[0] == 0.0


def test_random_mask_jaccard_equals_enumeration():
    heads, kept_a, kept_b = 6, 3, 2
    a = set(range(kept_a))  # by symmetry one fixed A, every B
    bs = list(itertools.combinations(range(heads), kept_b))
    expected = sum(len(a & set(b)) / len(a | set(b)) for b in bs) / len(bs)
    assert math.isclose(stats.random_mask_jaccard(heads, kept_a, kept_b), expected)
    assert stats.random_mask_jaccard(16, 16, 16) == 1.0
