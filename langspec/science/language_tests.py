"""Claims about languages in general: Q1, Q4, Q6 and P1 tested over relabellings of the languages,
the unit a claim about languages in general replicates (seeds replicate training, not languages).
Each test takes the question's own statistic over the whole seeds x pairs array and applies one
relabelling to every seed at once: a language keeps its identity, and its structure, from seed to
seed. Every relabelling is enumerated up to stats.EXACT_PERMUTATIONS_UP_TO languages (8! = 40,320)
and sampled, with a fixed seed, above. Each function returns a relabelling.RelabellingTest (the identity's
value is the question's statistic) and how its smallest attainable p falls with more languages.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from langspec.science import relabelling, stats

SEED = 0  # of the sampled relabellings above EXACT_PERMUTATIONS_UP_TO languages: tests are deterministic


def one_in_every(languages: int) -> float:
    """The smallest attainable p of a test whose statistic only the identity reproduces: 1 / relabellings."""
    return 1 / relabelling.relabellings(languages)


def mask_specificity(differences: Sequence[dict[tuple[str, str], float]], languages: Sequence[str]) -> relabelling.RelabellingTest | None:
    """Q1 over relabellings of the masks' languages. `differences[s][(a, b)]`: in seed s, own-mask
    minus b's-mask test accuracy on a's test set; every ordered pair a != b must be there.

    A relabelling pi hands language a the mask of pi(a) as its "own": the statistic becomes the mean
    over a of accuracy under mask pi(a) minus the mean under the other masks, on a's test set. With X[a, b]
    = -differences[(a, b)] (accuracy under b's mask relative to a's own; X[a, a] = 0) that is
    mean_a (X[a, pi(a)] L / (L - 1) - sum_b X[a, b] / (L - 1)); the identity gives the mean of the
    differences. Under the null of languages in general (a language's own mask serves its test set
    no better than the mask of a language drawn from the population), every relabelling is as likely
    as the observed labels: a test set's own difficulty cancels within its row, and a mask that is
    better for every language (its column's level) cancels in the mean over a. A seed in which every
    own mask does better is no relabelling's: RelabellingTest.p_value adds that part back. The
    smallest attainable p is 1 / L!."""
    count = len(languages)
    if count < 2 or not differences or any((a, b) not in seed for seed in differences for a in languages for b in languages if a != b):
        return None
    x = np.array([[[0.0 if a == b else -seed[(a, b)] for b in languages] for a in languages] for seed in differences])  # (S, L, L)
    orders = relabelling.permutation_array(count, SEED)
    own = x[:, np.arange(count)[None, :], orders]  # (S, P, L): X[a, pi(a)]
    per_seed = (own.sum(axis=2) * count / (count - 1) - x.sum(axis=(1, 2))[:, None] / (count - 1)) / count
    return relabelling.relabelling_test(per_seed, count)


def matrix_agreement(grids: Sequence[tuple[np.ndarray, np.ndarray]]) -> relabelling.RelabellingTest | None:
    """Q4 and Q6 over relabellings of the languages of one of two L x L matrices (the Mantel test, on
    every seed at once): the mean over seeds of each seed's Pearson r of the relabelled matrix's
    off-diagonal cells with the other's, one relabelling for every seed. grids: per seed
    (relabelled, fixed), the same languages in the same order on both axes; NaN marks a pair without
    a value, left out of that seed's correlation under every relabelling.

    Q4 relabels size-adjusted Jaccard J against M+: the similarity profile of language a's mask is
    given to pi(a) while M+ stays. Q6 relabels the measured effects E against TracIn's P: the effect
    of removing pi(s) on pi(t) is set beside P's prediction for removing s on t. Rows and columns
    move together, so each language keeps its main effects (a large mask, a language every other
    leans on, a test language whose loss moves with any removal) and off-diagonal cells stay off the
    diagonal. Under the null of languages in general (which languages are alike in one quantity says
    nothing about the other), every relabelling is as likely as the observed labels. Permuting single
    cells, or seeds, would break the languages' own levels that both matrices carry under the null
    too. The smallest attainable p is 1 / L!."""
    if not grids:
        return None
    count = len(grids[0][0])
    orders = relabelling.permutation_array(count, SEED)
    per_seed = np.array([relabelling.relabelled_correlations(relabelled, fixed, orders) for relabelled, fixed in grids])  # (S, P)
    return relabelling.relabelling_test(per_seed, count)


def planted_families(shares: np.ndarray, examples: np.ndarray,
                     families: Sequence[str | None]) -> tuple[relabelling.RelabellingTest | None, Callable[[int], float]]:
    """P1 over relabellings of the family labels. shares[seed, t, s]: the mean share of the top-k
    proponents from training language s over test language t's test examples (those every seed
    scored), per seed; examples[t]: how many such test examples t has; families[t]: its family (None: none).

    A relabelling pi gives language a the family of pi(a): the statistic is the mean over the test
    examples whose language has a relative of (mean share from its relatives - mean share from the
    other languages), the identity giving P1's statistic. Under the null of languages in general (a
    family lends its members no more proponents than other languages do), every assignment of the
    families' shape to the languages is as likely as the observed one. Relabellings that keep each
    family together give the same statistic: the smallest attainable p is 1 / the number of distinct
    assignments (15 for families of sizes 2, 2 and 1). Returns the test (None without a family of two
    languages) and the smallest attainable p with more languages, each added alone in its family."""
    count = len(families)
    labels = np.array([-1 - i if f is None else sorted({g for g in families if g is not None}).index(f)
                       for i, f in enumerate(families)])
    sizes = Counter(Counter(f if f is not None else ("alone", i) for i, f in enumerate(families)).values())

    def smallest_p(languages: int) -> float:
        if languages < count:
            return 1.0
        shape = sizes + Counter({1: languages - count})
        symmetries = math.prod(math.factorial(size) ** times * math.factorial(times) for size, times in shape.items())
        return max(symmetries / math.factorial(languages), 1 / relabelling.relabellings(languages))

    if count < 2 or not any(sum(labels == label) > 1 for label in labels if label >= 0):
        return None, smallest_p
    orders = relabelling.permutation_array(count, SEED)
    relabelled = labels[orders]  # (P, L): the family of pi(a)
    # Two relabellings assign the same families when each language's first fellow member is the same one
    first = (relabelled[:, :, None] == relabelled[:, None, :]).argmax(axis=2)  # (P, L)
    if count <= stats.EXACT_PERMUTATIONS_UP_TO:  # one integer per assignment: unique() on a vector is fast
        first = first @ (count ** np.arange(count))
    _, representative, which = np.unique(first, axis=0 if first.ndim == 2 else None, return_index=True, return_inverse=True)
    chosen = relabelled[representative]  # (U, L): each distinct assignment once
    off = ~np.eye(count, dtype=bool)
    related = (chosen[:, :, None] == chosen[:, None, :]) & off & (chosen[:, :, None] >= 0)  # (U, L, L)
    unrelated = off & ~related
    n_related, n_unrelated = related.sum(axis=2), unrelated.sum(axis=2)  # (U, L)
    shares = np.asarray(shares, dtype=float)[:, None]  # (S, 1, L, L)
    from_related = (related * shares).sum(axis=3) / np.maximum(n_related, 1)  # (S, U, L)
    from_unrelated = np.where(n_unrelated > 0, (unrelated * shares).sum(axis=3) / np.maximum(n_unrelated, 1), 0.0)
    weight = (n_related > 0) * examples[None, :]  # (U, L)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (weight * (from_related - from_unrelated)).sum(axis=2) / weight.sum(axis=1)  # (S, U)
    which = which.reshape(-1)
    return relabelling.relabelling_test(value[:, which], count, equivalent=int((which == which[0]).sum())), smallest_p
