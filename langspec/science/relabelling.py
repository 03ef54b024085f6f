"""Tests whose unit is the language: a statistic against every relabelling of the languages (exact up to
8 languages, sampled above), with the seeds' own variation added back (RelabellingTest), and how many
languages a design needs before such a test can reach a threshold (langspec.science.language_tests
builds the questions' tests on these).

    relabellings(n), permutation_array(n)          how many relabellings of n languages, and the relabellings
    relabelled_correlations(x, y, perms)           Pearson r of x's off-diagonal cells, relabelled, with y's
    relabelling_test(per_seed, languages)          a statistic against every relabelling of the languages
    languages_needed(smallest_p, threshold)        the fewest languages whose smallest attainable p reaches it
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from langspec.science.stats import EXACT_PERMUTATIONS_UP_TO, RANDOM_PERMUTATIONS, label_permutations, t_quantile


def relabellings(n: int) -> int:
    """How many relabellings of n languages a test uses: n! up to EXACT_PERMUTATIONS_UP_TO, else the
    identity and RANDOM_PERMUTATIONS sampled ones."""
    return math.factorial(n) if n <= EXACT_PERMUTATIONS_UP_TO else RANDOM_PERMUTATIONS + 1


@functools.lru_cache(maxsize=16)
def permutation_array(n: int, seed: int = 0) -> np.ndarray:
    """label_permutations(n, seed=seed) as a read-only (relabellings, n) array, the identity first."""
    array = np.array(label_permutations(n, seed=seed), dtype=np.intp).reshape(-1, n)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class RelabellingTest:
    """A statistic of the languages' data against its values when the languages are relabelled (the
    identity first): the test of a claim about languages in general, where the languages studied are
    a sample of exchangeable ones and the seeds a sample of training runs.

    p_relabelling is two-sided: the share of relabellings whose value lies at least as far from the
    relabellings' mean as the observed one. It takes the seeds as they are, and a seed-level effect
    that moves with the observed labels (a seed whose every own mask does better, say) is no
    relabelling's: it would count as a language effect. p_value adds it back: `seeds_sd` is the sd of
    the mean over seeds of that part (the observed labels' seed-to-seed variance beyond what the
    relabellings' own seed-to-seed variance shows, over the seeds), added to each relabelling's value
    as a t variate with seeds - 1 df, and p_value is the larger of that and p_relabelling; with seeds
    that show none (or one seed) it is p_relabelling. smallest_p is what p_relabelling is when the
    observed value is the most extreme there is: relabellings that leave the statistic's structure as
    it is (P1: those that keep each family together) tie with it, and no data can do better."""

    statistic: float
    p_value: float
    p_relabelling: float
    permutations: int  # relabellings the p-value counts
    exact: bool  # every relabelling (else the identity and random ones)
    smallest_p: float
    languages: int
    seeds: int
    seeds_sd: float  # the seeds' part that moves with the observed labels: sd of its mean over seeds


T_GRID = 1000  # quantiles of Student's t that stand for the seeds' part in RelabellingTest.p_value


@functools.lru_cache(maxsize=32)
def _t_grid(df: int) -> np.ndarray:
    return np.array([t_quantile((i + 0.5) / T_GRID, df) for i in range(T_GRID)])


def relabelling_test(per_seed: np.ndarray, languages: int, *, equivalent: int = 1) -> RelabellingTest:
    """The test from the statistic's value in each seed under each relabelling: per_seed[s, i] (column
    0: the identity, the data as observed); the statistic is the mean over seeds. `equivalent`
    relabellings give the observed structure itself (1 unless a symmetry makes more). NaN values (a
    relabelling that leaves a side constant in a seed) are left out of their mean; a relabelling NaN
    in every seed is never as extreme."""
    per_seed = np.atleast_2d(np.asarray(per_seed, dtype=float))
    seeds, count = per_seed.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        defined = np.isfinite(per_seed).sum(axis=0)
        values = np.where(defined > 0, np.nansum(per_seed, axis=0) / np.maximum(defined, 1), np.nan)
    observed = float(values[0])
    exact = count == math.factorial(languages)
    if not math.isfinite(observed):
        return RelabellingTest(observed, math.nan, math.nan, count, exact, equivalent / count, languages, seeds, 0.0)
    distance = values - float(np.nanmean(values))
    far = abs(float(distance[0]))
    tolerance = 1e-12 * max(1.0, far, abs(observed))
    p_relabelling = float((np.abs(distance) >= far - tolerance).sum() / count)
    spread = 0.0
    if seeds >= 2 and np.isfinite(per_seed[:, 0]).all():
        variance = np.nanvar(per_seed, axis=0, ddof=1)
        spread = math.sqrt(max(float(variance[0] - np.nanmean(variance)), 0.0) / seeds)
    if spread == 0:
        return RelabellingTest(observed, p_relabelling, p_relabelling, count, exact, equivalent / count, languages, seeds, 0.0)
    ordered = np.sort(distance[np.isfinite(distance)])
    shifts = spread * _t_grid(seeds - 1)  # (T_GRID,): the seeds' part, by its quantiles
    above = len(ordered) - np.searchsorted(ordered, far - tolerance - shifts, side="left")  # distance + shift >= far
    below = np.searchsorted(ordered, -far + tolerance - shifts, side="right")  # distance + shift <= -far
    p = max(float(np.minimum(above + below, count).mean() / count), p_relabelling)  # the seeds' part only ever adds doubt
    return RelabellingTest(observed, p, p_relabelling, count, exact, equivalent / count, languages, seeds, spread)


def languages_needed(smallest_p: Callable[[int], float], threshold: float, *, up_to: int = 40) -> int | None:
    """The fewest languages at which a relabelling test can reach p < threshold: smallest_p(L) is its
    smallest attainable p with L languages. None if not even `up_to` languages do."""
    return next((languages for languages in range(2, up_to + 1) if smallest_p(languages) < threshold), None)


def relabelled_correlations(x: np.ndarray, y: np.ndarray, permutations: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
    """Pearson r of x's off-diagonal cells with y's, with x's languages relabelled by each permutation
    (rows and columns together, as Mantel: entry [a, b] becomes x[order[a], order[b]]): one value per
    row of `permutations`. A cell that is NaN on either side (a pair without a value) is left out, so
    each relabelling correlates the pairs it has; NaN where a side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    off = ~np.eye(len(x), dtype=bool)
    if np.isfinite(x[off]).all() and np.isfinite(y[off]).all():  # every pair: x's off-diagonal cells only move among themselves
        centred_y = np.where(off, y - y[off].mean(), 0.0)
        centred_x = np.where(off, x - x[off].mean(), 0.0)
        denominator = math.sqrt(float((centred_x**2).sum() * (centred_y**2).sum()))
        if denominator == 0:
            return np.full(len(permutations), np.nan)
        return np.concatenate([np.einsum("pab,ab->p", centred_x[orders[:, :, None], orders[:, None, :]], centred_y) / denominator
                               for orders in (permutations[i : i + chunk] for i in range(0, len(permutations), chunk))])
    values = []
    for start in range(0, len(permutations), chunk):
        orders = permutations[start : start + chunk]
        relabelled = x[orders[:, :, None], orders[:, None, :]]  # (P, L, L)
        keep = off & np.isfinite(relabelled) & np.isfinite(y)
        n = np.maximum(keep.sum(axis=(1, 2)), 1)
        xs, ys = np.where(keep, relabelled, 0.0), np.where(keep, y, 0.0)
        dx = np.where(keep, relabelled - (xs.sum(axis=(1, 2)) / n)[:, None, None], 0.0)
        dy = np.where(keep, y - (ys.sum(axis=(1, 2)) / n)[:, None, None], 0.0)
        denominator = np.sqrt((dx * dx).sum(axis=(1, 2)) * (dy * dy).sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            values.append(np.where(denominator > 0, (dx * dy).sum(axis=(1, 2)) / denominator, np.nan))
    return np.concatenate(values)
