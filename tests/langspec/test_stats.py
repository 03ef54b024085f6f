"""langspec.stats against plain-Python loops and hand-computed cases: seeded and deterministic."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from langspec import stats


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


def test_bootstrap_interval_equals_a_plain_loop_with_the_same_draws():
    values = [0.1, 0.4, 0.35, 0.8, 0.05, 0.6, 0.3]
    interval = stats.bootstrap_interval(lambda rng: float(np.mean(np.asarray(values)[rng.integers(0, 7, 7)])), seed=5)
    rng = np.random.default_rng(5)
    means = sorted(sum(values[i] for i in rng.integers(0, 7, 7)) / 7 for _ in range(stats.RESAMPLES))
    assert interval == pytest.approx((np.quantile(means, 0.025), np.quantile(means, 0.975)), abs=1e-15)
    assert interval == stats.bootstrap_interval(lambda rng: float(np.mean(np.asarray(values)[rng.integers(0, 7, 7)])), seed=5)


def test_nested_bootstrap_resamples_seeds_then_examples():
    groups = [[0.1, 0.2, 0.3], [0.5, 0.6], [0.0, 0.9, 0.4, 0.2]]
    got = stats.nested_bootstrap_mean(groups, seed=2, resamples=500)
    rng = np.random.default_rng(2)
    means = []
    for _ in range(500):
        chosen = rng.integers(0, 3, 3)
        means.append(sum(np.mean([groups[g][i] for i in rng.integers(0, len(groups[g]), len(groups[g]))]) for g in chosen) / 3)
    assert got == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-15)
    with pytest.raises(ValueError, match="at least 2 groups"):
        stats.nested_bootstrap_mean([[0.1, 0.2]])


def test_sign_flip_p_of_a_clear_shift_and_of_no_shift():
    assert stats.sign_flip_p([0.2] * 30) < 0.001  # every flip but the observed one has a smaller |mean|
    assert stats.sign_flip_p([0.2, -0.2] * 15) == 1.0  # mean 0: every flip is at least as extreme


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
