"""Do the findings keep their nominal rates? Synthetic studies whose truth is planted, run through the
real findings code (`langspec.science.findings.findings` on a `StudyData`, the same function the report calls).

Four scenarios:

seed-effects (the first calibration, #23): 5 toy languages at 2, 3 and 5 seeds, with per-seed effects
(each seed's training moves every statistic a little), per-test-example effects crossed with the seeds
(the same test examples are scored in every seed), and per-test-language row effects; TracIn's top-k
proponents are drawn as counts, so shares are discrete as in a real run. Its truths are 0 (null
world) and a planted effect (power world):
    null   no question's claim holds (every statistic's truth is 0)
    power  each question's claim holds by a planted effect of a size the toy study could have

fixed-languages (#36): 3 to 8 languages whose structure is drawn once per study and kept by every
seed, as real languages keep theirs: language main effects and language x variant interactions on S+
(Q2, Q3) and on its slope (Q5); Q1's accuracy per (test language, mask) with each mask's own level;
J from each language's fixed propensity for each head; M+ from fixed per-pair and per-lender weights
(Q4, P1); P and E each with their own row, column and pair levels and a large diagonal they share
(Q6). The quantities compared are independent of each other, so no claim holds for languages in
general, while among these languages each statistic has the value its fixed structure gives: the
truth of a verdict about "these languages" (computed from the structure, by Monte Carlo over seeds
for the correlations of Q4 and Q6), and 0 for one about "languages in general" (Q1, Q4, Q6, P1 with
enough languages for the test over relabellings of the languages to be the primary one).

skewed (#36): fixed-languages at 5 languages, each test example with a lognormal lift of its S+ (once in
the subnetwork variant, twice in sft: Q2's and Q3's test examples are skewed), centred on its mean over
test examples in general (0) with sd 0.2, the lognormal's log-scale sd drawn per study from 0.5 to 2.
Truth: the mean over test examples in general and seeds (the mixture mean), by Monte Carlo, the cut of
S+ to [0.02, 0.98] included (it moves Q3's truth by about -0.015).

failed-seed (#36): fixed-languages at 5 languages, each seed failing with chance 0.15; a failed seed
lowers Q1's own-minus-other accuracy and the sft variant's S+ (Q3) by 0.2. Truth: the mixture mean over
seeds, 0.15 x -0.2 = -0.03 beside the fixed structure's value (Q3's by Monte Carlo, the cut included).

For these two, coverage is reported, not required, with the findings' diagnostics: how often a seed
is flagged as failed (and whether it is one that failed), how often the test examples' skewness is
noted (stats.SKEWED_EXAMPLES_ABOVE), and the coverage of the intervals that came with a diagnostic and
of those without.

Per question, estimand, number of languages and seeds it prints the interval's coverage of the
estimand's truth, the rate of `supported` among studies whose truth is not on the claimed side, of
`contradicted` among those whose truth is not on the other side, the rate of a seed flagged as failed
(in the worlds where no seed fails: stats.failed_seeds' false-flag rate), and (seed-effects) the rate
of `supported` at the planted effect (power). Targets: coverage >= 0.93, false `supported` and false
`contradicted` <= 0.05 at 3 and 5 seeds. Where the estimand is languages in general, a second row ("these (beside)") gives
the seed-based interval that findings.json keeps in details against these languages' truth, and how
often it would have been `supported` had it been read as a claim about languages in general.

--correlations measures Q4's and Q6's seed-based coverage alone in the fixed-languages world, without
the rest of a study (ten times the studies per second), to tell a short coverage from the noise of a
few hundred studies. --crossed-skew measures the crossed interval alone on lognormal test examples that
carry most of the variance (where skewness costs coverage), with the findings' skewness note.

Run (from the repository root; --budget caps the wall time, split evenly over the cells, and each
row says how many studies it got):
    .venv/bin/python benchmarks/calibration.py [--studies 1000] [--scenario all | seed-effects fixed-languages skewed failed-seed]
        [--languages 3 5 6 8] [--budget SECONDS] [--json calibration.json] [--correlations | --crossed-skew]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langspec.science import findings, stats, tracin_vs_ablation  # noqa: E402
from runners.methods.toy import FAMILIES  # noqa: E402

LANGUAGES = ("ka", "kb", "la", "lb", "mi")
POOL = ("ka", "kb", "la", "lb", "mi", "na", "nb", "xa")  # the fixed-languages scenario takes the first L: families k, l, n; mi, xa alone
QUESTIONS = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "P1")
SEED_COUNTS = (2, 3, 5)
FIXED_SEED_COUNTS = (3, 5)
FIXED_LANGUAGES = (3, 5, 6, 8)
DIAGNOSTIC_LANGUAGES = (5,)  # skewed and failed-seed: the paper's and the toy study's count
VARIANTS = ("full", "subnetwork", "sft")
MONTE_CARLO_SEEDS = 300  # seeds drawn from one study's fixed structure to compute Q4's and Q6's truth
GRID_EXAMPLES = 6  # Q6: ablation test examples per language
HEADS = 16
K = 20  # proponents per test example
TEST_PER_LANGUAGE = 12
CHECKPOINTS = (1, 2, 3)


@dataclass(frozen=True)
class World:
    """The sizes of a synthetic study's effects (standard deviations, on the scale of S+ and accuracy)."""

    seed_sd: float = 0.03  # a seed's shift of each variant's S+ (and of Q1's accuracy difference)
    example_sd: float = 0.05  # a test example's own S+ per variant, the same in every seed
    language_sd: float = 0.05  # a test language's own S+ level (row effect), shared by every variant
    effect: float = 0.0  # the planted size of every question's claim: 0 is the null world


NULL = World()
POWER = World(effect=0.1)


def study(world: World, seeds: int, rng: np.random.Generator) -> findings.StudyData:
    """One synthetic study's data, as findings.load would read it from a store."""
    test = [(f"{t}-test-{i}", t) for t in LANGUAGES for i in range(TEST_PER_LANGUAGE)]
    row = {t: rng.normal(0, world.language_sd) for t in LANGUAGES}
    example = {v: {z: rng.normal(0, world.example_sd) for z, _ in test} for v in VARIANTS}
    masks = {s: _masks(rng, world.effect > 0) for s in range(seeds)}
    excess = {s: _jaccard_excess(masks[s], LANGUAGES) for s in range(seeds)}
    proponents: dict = {}
    for s in range(seeds):
        shift = {v: rng.normal(0, world.seed_sd) for v in VARIANTS}
        slope = {v: rng.normal(0, world.seed_sd / 2) for v in ("full", "sft")}
        for variant in VARIANTS:
            lift = {"full": 0.0, "subnetwork": world.effect, "sft": 2 * world.effect}[variant]  # Q2 and Q3
            for checkpoint in (None, *CHECKPOINTS):
                rise = 0.0 if checkpoint is None or variant == "subnetwork" else \
                    (checkpoint - 2) * (slope[variant] + (world.effect / 2 if variant == "sft" else 0.0))  # Q5
                by_test = proponents.setdefault((variant, checkpoint), {}).setdefault(s, {})
                for z, t in test:
                    own = 0.3 + row[t] + shift[variant] + example[variant][z] + lift + rise
                    by_test[z] = (t, _counts(t, own, excess[s], world.effect, rng))
    validity, validity_data = _q6(_grids(world, seeds, rng))
    return findings.StudyData(
        run_id=1, point="", k=K, full_model=_full_model(seeds, LANGUAGES), accuracy=_accuracy(seeds, LANGUAGES),
        mask_transfer=_mask_transfer(world, seeds, rng), pairs=_pairs(masks, LANGUAGES), proponents=proponents,
        train_examples={(s, v): {t: 200 for t in LANGUAGES} for s in range(seeds) for v in VARIANTS},
        validity=validity, validity_data=validity_data,
    )


def _full_model(seeds: int, languages) -> list[dict]:
    return [{"seed": s, "language": t, "accuracy": 0.9, "examples": 100, "majority_rate": 0.34, "labels": 3,
             "labels_predicted": 3} for s in range(seeds) for t in languages]


def _accuracy(seeds: int, languages) -> list[dict]:
    return [{"seed": str(s), "language": t, "full": 0.9, "subnetwork": 0.85, "sft": 0.88, "retention": 0.85 / 0.9}
            for s in range(seeds) for t in languages]


def _counts(t: str, own: float, excess: dict, effect: float, rng: np.random.Generator) -> dict[str, int]:
    """A test example's top-K proponents by training language: its own language's share `own`, the
    rest spread over the others, more to its related language (P1) and to languages whose
    subnetwork overlaps t's more than chance (Q4), each by `effect`."""
    others = [s for s in LANGUAGES if s != t]
    weights = np.array([1 + 8 * effect * (FAMILIES[s] == FAMILIES[t]) + 20 * effect * excess[(t, s)] for s in others])
    drawn = rng.binomial(K, min(max(own, 0.02), 0.98))
    counts = dict(zip(others, rng.multinomial(K - drawn, np.clip(weights, 0.05, None) / np.clip(weights, 0.05, None).sum())))
    return {t: int(drawn), **{s: int(c) for s, c in counts.items() if c}}


def _masks(rng: np.random.Generator, families: bool) -> dict[str, set[int]]:
    """Each language's kept heads, 6 to 12 of 16 at random; with `families`, a language's related
    language keeps the same heads but two (P1's masks show the families)."""
    masks = {t: set(rng.choice(HEADS, int(rng.integers(6, 13)), replace=False)) for t in LANGUAGES}
    if families:
        for a, b in (("ka", "kb"), ("la", "lb")):
            dropped = set(rng.choice(sorted(masks[a]), 2, replace=False))
            masks[b] = (masks[a] - dropped) | set(rng.choice(sorted(set(range(HEADS)) - masks[a]), 2, replace=False))
    return masks


RANDOM_JACCARD = np.array([[stats.random_mask_jaccard(HEADS, a, b) for b in range(HEADS + 1)] for a in range(HEADS + 1)])


def _jaccard_excess(masks: dict[str, set[int]], languages) -> dict[tuple[str, str], float]:
    return {(a, b): len(masks[a] & masks[b]) / len(masks[a] | masks[b]) - RANDOM_JACCARD[len(masks[a]), len(masks[b])]
            for a in languages for b in languages if a != b}


def _pairs(masks: dict[int, dict[str, set[int]]], languages) -> list[dict]:
    return [{"model": findings.MULTILINGUAL, "seed": str(s), "language_a": a, "language_b": b,
             "jaccard": len(m[a] & m[b]) / len(m[a] | m[b]), "heads_kept_a": len(m[a]), "sparsity_a": 1 - len(m[a]) / HEADS}
            for s, m in masks.items() for a in languages for b in languages]


def _mask_transfer(world: World, seeds: int, rng: np.random.Generator) -> list[dict]:
    """Q1: own mask minus another's, per (language, mask language): the planted effect, a seed
    effect, a pair's own effect (the same test set in every seed) and noise."""
    pair = {(a, b): rng.normal(0, world.example_sd) for a in LANGUAGES for b in LANGUAGES}
    rows = []
    for s in range(seeds):
        shift = rng.normal(0, world.seed_sd)
        for a in LANGUAGES:
            for b in LANGUAGES:
                value = 0.0 if a == b else world.effect + shift + pair[(a, b)] + rng.normal(0, 0.02)
                rows.append({"seed": str(s), "language": a, "mask_language": b, "own_minus_this": value, "examples": 100})
    return rows


def _grids(world: World, seeds: int, rng: np.random.Generator) -> list[tracin_vs_ablation.SeedData]:
    """Q6: per seed, TracIn's P[t, s] and the measured E[t, s] per test example, each with its own
    per-test-language level (row effects), E's example noise shared by every seed; P follows E by
    `effect`."""
    truth = rng.normal(0, 1, (len(LANGUAGES), len(LANGUAGES)))  # what removing s does to t
    shared = rng.normal(0, 1, (len(LANGUAGES), GRID_EXAMPLES, len(LANGUAGES)))
    data = []
    for _ in range(seeds):
        effects, predicted = {}, {}
        e_rows, p_rows = rng.normal(0, 1, len(LANGUAGES)), rng.normal(0, 1, len(LANGUAGES))
        for i, t in enumerate(LANGUAGES):
            effects[t] = truth[i] + e_rows[i] + shared[i] + rng.normal(0, 0.5, (GRID_EXAMPLES, len(LANGUAGES)))
            predicted[t] = 10 * world.effect * truth[i] + p_rows[i] + rng.normal(0, 1, (GRID_EXAMPLES, len(LANGUAGES)))
        data.append(tracin_vs_ablation.SeedData(list(LANGUAGES), list(LANGUAGES), effects, {"tracin": predicted, "share": predicted}, None))
    return data


def _q6(seeds: list[tracin_vs_ablation.SeedData]) -> tuple[list, dict]:
    """What findings.load gives Q6: the Validity of TracIn's P, over every cell and off the diagonal
    (19 row permutations: its exploratory p is not calibrated here), and the grids."""
    return ([tracin_vs_ablation._validity("full", "tracin", "pearson", pairs, seeds, 19, 0) for pairs in tracin_vs_ablation.PAIRS],
            {"full": seeds})


# --- the fixed-languages scenario -------------------------------------------------------------------


@dataclass(frozen=True)
class FixedWorld:
    """Standard deviations of a study whose language structure is drawn once and kept by every seed.
    Nothing links the quantities compared: the null for languages in general."""

    seed_sd: float = 0.03  # a seed's shift of each variant's S+ and of Q1's accuracy difference
    example_sd: float = 0.05  # a test example's own S+ per variant, the same in every seed
    language_sd: float = 0.05  # a test language's S+ level, shared by every variant
    interaction_sd: float = 0.03  # language x variant: a language's own S+ in one variant (Q2, Q3)
    slope_sd: float = 0.015  # language x variant: a language's own S+ slope per epoch (Q5)
    cell_sd: float = 0.03  # Q1: the accuracy of a (test language, mask) cell, diagonal included
    mask_sd: float = 0.03  # Q1: a mask's own accuracy level for every test language
    pair_weight_sd: float = 0.5  # M+: a (test, training language) pair's log weight (Q4, P1)
    lender_sd: float = 0.5  # M+: a training language's log weight for every test language
    seed_weight_sd: float = 0.3  # M+: a seed's noise on every log weight
    head_sd: float = 1.5  # J: a language's propensity to keep each head (logit)
    grid_sd: float = 1.0  # Q6: row, column and pair levels of P and of E, each drawn apart
    diagonal: float = 3.0  # Q6: a diagonal t = s that P and E share (a language's own removal hurts it most)
    lift_sd: float = 0.0  # skewed: sd of a test example's lognormal lift of S+ (once in subnetwork, twice in sft); 0: none
    lift_log_sd: tuple[float, float] = (0.5, 2.0)  # skewed: the lognormal's log-scale sd, drawn per study from this range
    failure_rate: float = 0.0  # failed-seed: the chance that a seed fails
    failure_shift: float = -0.2  # failed-seed: what a failed seed does to Q1's own-minus-other accuracy and to the sft variant's S+


FIXED = FixedWorld()
SKEWED = FixedWorld(lift_sd=0.2)  # lognormal test examples: the crossed interval takes them as near normal
FAILED_SEED = FixedWorld(failure_rate=0.15)  # 15% of seeds fail: Q1 and Q3 fall by 0.2 in them
LIFT_STEPS = {"full": 0, "subnetwork": 1, "sft": 2}  # skewed: how many lifts each variant's S+ gets (Q2 and Q3 get one each)


@dataclass(frozen=True)
class Structure:
    """One study's languages and their structure, the same in every seed."""

    languages: tuple[str, ...]
    row: np.ndarray  # (L,) S+ level
    interaction: dict  # variant -> (L,) S+ shift
    slope: dict  # variant -> (L,) S+ slope per epoch
    cell: np.ndarray  # (L, L) Q1: accuracy of test language a under mask b
    mask_level: np.ndarray  # (L,)
    log_weight: np.ndarray  # (L, L) M+
    propensity: np.ndarray  # (L, HEADS) J
    predicted: np.ndarray  # (L, L) Q6's P
    measured: np.ndarray  # (L, L) Q6's E
    example: dict  # variant -> (L, TEST_PER_LANGUAGE) a test example's own S+
    shared: np.ndarray  # (L, GRID_EXAMPLES, L) Q6: E's example noise, the same in every seed
    lift_sigma: float  # skewed: the log-scale sd of the test examples' lognormal lifts (0: no lifts)
    lift: np.ndarray  # (L, TEST_PER_LANGUAGE) skewed: a test example's lognormal lift of S+, mean 0 over test examples in general


def draw_structure(world: FixedWorld, languages: tuple[str, ...], rng: np.random.Generator) -> Structure:
    count = len(languages)
    sigma = float(rng.uniform(*world.lift_log_sd)) if world.lift_sd > 0 else 0.0  # skewed: how skewed this study's test examples are

    def grid() -> np.ndarray:
        return (rng.normal(0, world.grid_sd, (count, 1)) + rng.normal(0, world.grid_sd, (1, count))
                + rng.normal(0, world.grid_sd, (count, count)) + world.diagonal * np.eye(count))

    return Structure(
        languages=languages, row=rng.normal(0, world.language_sd, count),
        interaction={v: rng.normal(0, world.interaction_sd, count) for v in VARIANTS},
        slope={v: rng.normal(0, world.slope_sd, count) for v in ("full", "sft")},
        cell=rng.normal(0, world.cell_sd, (count, count)), mask_level=rng.normal(0, world.mask_sd, count),
        log_weight=rng.normal(0, world.pair_weight_sd, (count, count)) + rng.normal(0, world.lender_sd, (1, count)),
        propensity=rng.normal(0, world.head_sd, (count, HEADS)), predicted=grid(), measured=grid(),
        example={v: rng.normal(0, world.example_sd, (count, TEST_PER_LANGUAGE)) for v in VARIANTS},
        shared=rng.normal(0, 1, (count, GRID_EXAMPLES, count)), lift_sigma=sigma,
        lift=_lift(world, sigma, (count, TEST_PER_LANGUAGE), rng),
    )


def _lift(world: FixedWorld, sigma: float, size: tuple, rng: np.random.Generator) -> np.ndarray:
    """Test examples' lognormal lifts with log-scale sd `sigma`, centred on their population mean (0)
    and scaled to sd lift_sd: most examples move little, a few much. Zeros (and no draw, so the other
    worlds keep their random streams) when lift_sd is 0."""
    if world.lift_sd == 0:
        return np.zeros(size)
    mean, sd = math.exp(sigma**2 / 2), math.sqrt((math.exp(sigma**2) - 1) * math.exp(sigma**2))
    return world.lift_sd * (np.exp(sigma * rng.normal(0, 1, size)) - mean) / sd


def _own_share(world: FixedWorld, structure: Structure, variant: str, shift: float, rise: np.ndarray | float) -> np.ndarray:
    """(L, TEST_PER_LANGUAGE): each test example's chance that a proponent is from its own language."""
    level = 0.3 + structure.row + structure.interaction[variant]
    lift = LIFT_STEPS[variant] * structure.lift
    return np.clip(level[:, None] + shift + structure.example[variant] + lift + rise, 0.02, 0.98)


def _lender_weights(world: FixedWorld, structure: Structure, rng: np.random.Generator, size: tuple = ()) -> np.ndarray:
    """(*size, L, L): one seed's normalised weights of the other languages, per test language (0 on the diagonal)."""
    count = len(structure.languages)
    weights = np.exp(structure.log_weight + rng.normal(0, world.seed_weight_sd, (*size, count, count))) * (1 - np.eye(count))
    return weights / weights.sum(axis=-1, keepdims=True)


def _draw_counts(own: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(..., L, TEST_PER_LANGUAGE, L) proponent counts: own-language draws on the diagonal, the rest by weight."""
    drawn = rng.binomial(K, own)
    counts = rng.multinomial(K - drawn, weights[..., :, None, :])
    return counts + drawn[..., None] * np.eye(own.shape[-2], dtype=counts.dtype)[:, None, :]


def _draw_masks(structure: Structure, rng: np.random.Generator, size: tuple = ()) -> np.ndarray:
    """(*size, L, HEADS) kept heads: 6 to 12 per language, chosen by its fixed propensities (Gumbel top-k)."""
    count = len(structure.languages)
    keys = structure.propensity + rng.gumbel(size=(*size, count, HEADS))
    kept = rng.integers(6, 13, (*size, count))
    ranks = np.argsort(np.argsort(-keys, axis=-1), axis=-1)
    return ranks < kept[..., None]


def _excess(masks: np.ndarray) -> np.ndarray:
    """(..., L, L) Jaccard minus its random-mask expectation, from (..., L, HEADS) masks."""
    both = (masks[..., :, None, :] & masks[..., None, :, :]).sum(-1)
    either = (masks[..., :, None, :] | masks[..., None, :, :]).sum(-1)
    sizes = masks.sum(-1)
    return both / either - RANDOM_JACCARD[sizes[..., :, None], sizes[..., None, :]]


def _seed_grids(world: FixedWorld, structure: Structure, rng: np.random.Generator, size: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """(*size, L, GRID_EXAMPLES, L) per-example P and E of Q6 for seeds of this structure."""
    count = len(structure.languages)
    e = (structure.measured[:, None, :] + structure.shared + rng.normal(0, 0.5, (*size, count, 1, 1))
         + rng.normal(0, 0.5, (*size, count, GRID_EXAMPLES, count)))
    p = (structure.predicted[:, None, :] + rng.normal(0, 0.5, (*size, count, 1, 1))
         + rng.normal(0, 1, (*size, count, GRID_EXAMPLES, count)))
    return p, e


def _off_diagonal_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r over the off-diagonal cells of (..., L, L) grids."""
    off = ~np.eye(x.shape[-1], dtype=bool)
    x, y = x[..., off], y[..., off]
    x, y = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN: a constant side (two masks the same in every pair)
        return (x * y).sum(-1) / np.sqrt((x * x).sum(-1) * (y * y).sum(-1))


def _q4_seeds(world: FixedWorld, structure: Structure, rng: np.random.Generator, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """(seeds,) Q4's r in each of `seeds` seeds of this structure (NaN: a side constant), as
    fixed_study draws them (J from each seed's masks, M+ of the full model from each seed's
    proponents), and (seeds, L, L) the lender weights drawn."""
    weights = _lender_weights(world, structure, rng, (seeds,))
    shifts = rng.normal(0, world.seed_sd, (seeds, 1, 1))
    level = 0.3 + structure.row + structure.interaction["full"]
    own = np.clip(level[:, None] + structure.example["full"] + shifts, 0.02, 0.98)
    shares = _draw_counts(own, weights, rng).mean(axis=-2) / K  # (seeds, L, L)
    return _off_diagonal_r(_excess(_draw_masks(structure, rng, (seeds,))), shares), weights


def _q6_seeds(world: FixedWorld, structure: Structure, rng: np.random.Generator, seeds: int) -> np.ndarray:
    """(seeds,) Q6's r over the pairs t != s in each of `seeds` seeds of this structure."""
    p, e = _seed_grids(world, structure, rng, (seeds,))
    return _off_diagonal_r(p.mean(axis=-2), e.mean(axis=-2))


def these_languages_truth(world: FixedWorld, structure: Structure, rng: np.random.Generator) -> dict[str, float]:
    """Each question's value among these languages: the expectation over seeds (and, where the test
    treats them as random, test examples) given the fixed structure. Seeds are a mixture where some
    fail: the truth is the mixture mean (failed-seed: Q1 and Q3 move by failure_rate x failure_shift,
    -0.03). Where test examples have lifts (skewed) or seeds fail, Q2's and Q3's truth is computed by
    Monte Carlo (_expected_share): S+ is cut to [0.02, 0.98], and a long tail or a failed seed meets the cut."""
    count = len(structure.languages)
    off = ~np.eye(count, dtype=bool)
    inter, slope = structure.interaction, structure.slope
    # Q4: over MONTE_CARLO_SEEDS seeds of this structure (the study's test examples, as Q4's t over seeds keeps them)
    q4_seeds, weights = _q4_seeds(world, structure, rng, MONTE_CARLO_SEEDS)
    q4 = float(np.nanmean(q4_seeds))
    # P1, test examples random: E[share from s] = (1 - E[own]) * E[normalised weight of s]
    level = 0.3 + structure.row + inter["full"]
    expected = (1 - level)[:, None] * weights.mean(axis=0)
    fam = [FAMILIES.get(t) for t in structure.languages]
    related = np.array([[a != b and fam[a] is not None and fam[a] == fam[b] for b in range(count)] for a in range(count)])
    rows = [expected[t, related[t]].mean() - (expected[t, off[t] & ~related[t]].mean() if (off[t] & ~related[t]).any() else 0.0)
            for t in range(count) if related[t].any()]
    # Q6: P and E of this structure, with its shared example noise, over MONTE_CARLO_SEEDS seeds
    q6 = float(np.mean(_q6_seeds(world, structure, rng, MONTE_CARLO_SEEDS)))
    q2, q3 = float((inter["subnetwork"] - inter["full"]).mean()), float((inter["sft"] - inter["subnetwork"]).mean())
    if world.lift_sd > 0 or world.failure_rate > 0:  # S+ is a share, cut to [0.02, 0.98]: a long tail or a failed seed meets the cut
        share = _expected_share(world, structure, rng)
        q2, q3 = float((share["subnetwork"] - share["full"]).mean()), float((share["sft"] - share["subnetwork"]).mean())
    return {"Q1": float((np.diag(structure.cell)[:, None] - structure.cell)[off].mean()) + world.failure_rate * world.failure_shift,
            "Q2": q2, "Q3": q3,
            "Q4": q4, "Q5": float((slope["sft"] - slope["full"]).mean()), "Q6": q6,
            "P1": float(np.mean(rows)) if rows else 0.0}


def _expected_share(world: FixedWorld, structure: Structure, rng: np.random.Generator,
                    draws: int = 40_000) -> dict[str, np.ndarray]:
    """variant -> (L,) each language's expected S+ of the final model (what Q2 and Q3 read) over
    seeds (failed ones at their rate) and test examples in general, the cut to [0.02, 0.98] included:
    Monte Carlo, the same draws for every variant (their differences carry little of its noise)."""
    count = len(structure.languages)
    example = rng.normal(0, world.example_sd, (count, draws))
    shift = rng.normal(0, world.seed_sd, draws)
    failed = np.where(rng.random(draws) < world.failure_rate, world.failure_shift, 0.0)
    lift = _lift(world, structure.lift_sigma, (count, draws), rng)
    level = {v: 0.3 + structure.row + structure.interaction[v] for v in VARIANTS}
    return {v: np.clip(level[v][:, None] + shift + (failed if v == "sft" else 0.0) + example + LIFT_STEPS[v] * lift, 0.02, 0.98)
            .mean(axis=1) for v in VARIANTS}


def fixed_study(world: FixedWorld, languages: tuple[str, ...], seeds: int,
                rng: np.random.Generator) -> tuple[findings.StudyData, Structure, list[int]]:
    """One study of the fixed-languages scenario (and of skewed and failed-seed, by `world`), as
    findings.load would read it, its structure and the seeds that failed (failed-seed: each with
    chance failure_rate; Q1's own-minus-other accuracy and the sft variant's S+ move by failure_shift)."""
    structure = draw_structure(world, languages, rng)
    count = len(languages)
    tests = [[f"{t}-test-{i}" for i in range(TEST_PER_LANGUAGE)] for t in languages]
    proponents: dict = {}
    masks, transfer, grids, failed = {}, [], [], []
    for s in range(seeds):
        weights = _lender_weights(world, structure, rng)
        shift = {v: rng.normal(0, world.seed_sd) for v in VARIANTS}
        failure = 0.0
        if world.failure_rate > 0 and rng.random() < world.failure_rate:  # no draw in the other worlds: their streams stay
            failed.append(s)
            failure = world.failure_shift
        shift["sft"] += failure
        seed_slope = {v: rng.normal(0, world.seed_sd / 2) for v in ("full", "sft")}
        for variant in VARIANTS:
            for checkpoint in (None, *CHECKPOINTS):
                rise = 0.0 if checkpoint is None or variant == "subnetwork" else \
                    (checkpoint - 2) * (seed_slope[variant] + structure.slope[variant][:, None])
                counts = _draw_counts(_own_share(world, structure, variant, shift[variant], rise), weights, rng)  # (L, N, L)
                proponents.setdefault((variant, checkpoint), {})[s] = {
                    tests[t][z]: (languages[t], {languages[b]: int(c) for b, c in enumerate(counts[t, z]) if c})
                    for t in range(count) for z in range(TEST_PER_LANGUAGE)}
        kept = _draw_masks(structure, rng)
        masks[s] = {languages[t]: set(np.flatnonzero(kept[t]).tolist()) for t in range(count)}
        accuracy = structure.cell + structure.mask_level[None, :]  # (test language a, mask b)
        noise, seed_shift = rng.normal(0, 0.02, (count, count)), rng.normal(0, world.seed_sd) + failure
        transfer += [{"seed": str(s), "language": a, "mask_language": b, "examples": 100,
                      "own_minus_this": 0.0 if i == j else accuracy[i, i] - accuracy[i, j] + seed_shift + noise[i, j]}
                     for i, a in enumerate(languages) for j, b in enumerate(languages)]
        p, e = _seed_grids(world, structure, rng)
        grids.append(tracin_vs_ablation.SeedData(list(languages), list(languages), {t: e[i] for i, t in enumerate(languages)},
                                                 {"tracin": {t: p[i] for i, t in enumerate(languages)}}, None))
    validity, validity_data = _q6(grids)
    return findings.StudyData(
        run_id=1, point="", k=K, full_model=_full_model(seeds, languages), accuracy=_accuracy(seeds, languages),
        mask_transfer=transfer, pairs=_pairs(masks, languages), proponents=proponents,
        train_examples={(s, v): {t: 200 for t in languages} for s in range(seeds) for v in VARIANTS},
        validity=validity, validity_data=validity_data,
    ), structure, failed


WORLDS = {"fixed-languages": FIXED, "skewed": SKEWED, "failed-seed": FAILED_SEED}
SCENARIOS = ("seed-effects", *WORLDS)


# --- counting -----------------------------------------------------------------------------------------


def _new_cell() -> dict:
    return {"studies": 0, "intervals": 0, "covered": 0, "claim_false": 0, "false_supported": 0, "claim_not_opposite": 0,
            "false_contradicted": 0, "flagged": 0, "supported": 0, "skew_noted": 0, "diagnosed_intervals": 0,
            "diagnosed_covered": 0, "with_failure": 0, "caught": 0, "flagged_sound": 0}


def _count(cell: dict, finding: findings.Finding, truth: float, interval: list | None, verdict: str,
           failed: list[int] | tuple[int, ...] = ()) -> None:
    """One verdict and interval against its estimand's truth: coverage, and a verdict the truth does not bear out;
    the findings' diagnostics (a seed flagged as failed, skewed test examples), how often they come, whether a
    flagged seed is one that failed (`failed`: the seeds the world failed, by position), and the coverage where
    a diagnostic came."""
    side = 1 if finding.claimed == "greater" else -1
    flagged = finding.details.get("failed_seeds", {}).get("flagged", [])
    diagnosed = bool(flagged) or "skewed_test_examples" in finding.details
    cell["studies"] += 1
    if interval is not None:
        cell["intervals"] += 1
        cell["covered"] += interval[0] <= truth <= interval[1]
        cell["diagnosed_intervals"] += diagnosed
        cell["diagnosed_covered"] += diagnosed and interval[0] <= truth <= interval[1]
    cell["skew_noted"] += "skewed_test_examples" in finding.details
    cell["with_failure"] += bool(failed)
    cell["caught"] += bool(set(flagged) & set(failed))
    cell["flagged_sound"] += bool(set(flagged) - set(failed))
    if side * truth <= 0:
        cell["claim_false"] += 1
        cell["false_supported"] += verdict == findings.SUPPORTED
    if side * truth >= 0:
        cell["claim_not_opposite"] += 1
        cell["false_contradicted"] += verdict == findings.CONTRADICTED
    cell["flagged"] += "failed_seeds" in finding.details


def _rates(cell: dict) -> dict:
    share = lambda a, b: cell[a] / cell[b] if cell[b] else None  # noqa: E731
    return {"studies": cell["studies"], "coverage": share("covered", "intervals"),
            "false_supported": share("false_supported", "claim_false"),
            "false_contradicted": share("false_contradicted", "claim_not_opposite"), "flagged": share("flagged", "studies"),
            "claim_false": cell["claim_false"], "claim_not_opposite": cell["claim_not_opposite"],
            "power": share("supported", "studies") if cell["supported"] else None,
            "skew_noted": share("skew_noted", "studies"), "with_failure": share("with_failure", "studies"),
            "caught": share("caught", "with_failure"), "flagged_sound": share("flagged_sound", "studies"),
            "diagnosed_intervals": cell["diagnosed_intervals"], "coverage_diagnosed": share("diagnosed_covered", "diagnosed_intervals"),
            "coverage_undiagnosed": (cell["covered"] - cell["diagnosed_covered"]) / (cell["intervals"] - cell["diagnosed_intervals"])
            if cell["intervals"] > cell["diagnosed_intervals"] else None}


def _seed_based_verdict(finding: findings.Finding) -> tuple[list | None, str]:
    """The seed-based interval findings.json keeps beside a verdict about languages in general, and
    the verdict it would give alone (before Holm)."""
    beside = finding.details.get("these_languages") or {}
    interval = beside.get("interval")
    if interval is None or interval[0] is None:
        return None, findings.INCONCLUSIVE
    above, below = interval[0] > 0, interval[1] < 0
    if not (above or below):
        return interval, findings.INCONCLUSIVE
    return interval, findings.SUPPORTED if above == (finding.claimed == "greater") else findings.CONTRADICTED


def calibrate_seed_effects(studies: int, seed: int, deadline: float | None) -> list[dict]:
    """The first scenario's rows: per question and seed count, against truth 0 (null world) and the planted effect (power)."""
    rng = np.random.default_rng(seed)
    rows = []
    for seeds in SEED_COUNTS:
        cells = {q: _new_cell() for q in QUESTIONS}
        cells_left = len(SEED_COUNTS) - SEED_COUNTS.index(seeds)
        limit = None if deadline is None else time.perf_counter() + (deadline - time.perf_counter()) / cells_left
        done = 0
        while done < studies and (limit is None or time.perf_counter() < limit):
            for finding in findings.findings(study(NULL, seeds, rng)):
                _count(cells[finding.question], finding, 0.0, finding.interval, finding.verdict)
            for finding in findings.findings(study(POWER, seeds, rng)):
                cells[finding.question]["supported"] += finding.verdict == findings.SUPPORTED
            done += 1
        rows += [{"question": q, "estimand": "these languages", "scenario": "seed-effects", "languages": len(LANGUAGES), "seeds": seeds,
                  **_rates(c)} for q, c in cells.items()]
    return rows


def calibrate_fixed(studies: int, seed: int, language_counts: tuple[int, ...], deadline: float | None,
                    world: FixedWorld = FIXED, scenario: str = "fixed-languages") -> list[dict]:
    """The fixed-languages scenario's rows (or skewed's, failed-seed's, by `world`): per question,
    estimand, language count and seed count."""
    rng = np.random.default_rng(seed)
    rows = []
    plan = [(count, seeds) for count in language_counts for seeds in FIXED_SEED_COUNTS]
    for position, (count, seeds) in enumerate(plan):
        languages = POOL[:count]
        cells: dict = {}
        limit = None if deadline is None else time.perf_counter() + (deadline - time.perf_counter()) / (len(plan) - position)
        done = 0
        while done < studies and (limit is None or time.perf_counter() < limit):
            data, structure, failed = fixed_study(world, languages, seeds, rng)
            truth = these_languages_truth(world, structure, rng)
            for finding in findings.findings(data):
                general = finding.estimand["population"] == findings.GENERAL
                key = (finding.question, "languages in general" if general else "these languages")
                _count(cells.setdefault(key, _new_cell()), finding, 0.0 if general else truth[finding.question], finding.interval,
                       finding.verdict, failed)
                if general:
                    interval, verdict = _seed_based_verdict(finding)
                    beside = cells.setdefault((finding.question, "these (beside)"), _new_cell())
                    _count(beside, finding, truth[finding.question], interval, verdict)
                    beside["supported"] += verdict == findings.SUPPORTED  # read as a claim about languages in general (truth 0)
            done += 1
        rows += [{"question": q, "estimand": estimand, "scenario": scenario, "languages": count, "seeds": seeds, **_rates(c)}
                 for (q, estimand), c in sorted(cells.items(), key=lambda item: (QUESTIONS.index(item[0][0]), item[0][1]))]
    return rows


def correlation_coverage(studies: int, seed: int, language_counts: tuple[int, ...], deadline: float | None) -> list[dict]:
    """Q4's and Q6's seed-based intervals about these languages alone (t over seeds, cut to [-1, 1], as
    the findings give them), drawn from the fixed-languages world by _q4_seeds and _q6_seeds, the
    draws fixed_study makes for them, without the rest of a study: some ten times the studies per
    second, to tell a coverage short of its target from the noise of a few hundred studies."""
    rng = np.random.default_rng(seed)
    rows = []
    plan = [(count, seeds) for count in language_counts for seeds in FIXED_SEED_COUNTS]
    for position, (count, seeds) in enumerate(plan):
        limit = None if deadline is None else time.perf_counter() + (deadline - time.perf_counter()) / (len(plan) - position)
        covered, intervals, done = {"Q4": 0, "Q6": 0}, {"Q4": 0, "Q6": 0}, 0
        while done < studies and (limit is None or time.perf_counter() < limit):
            structure = draw_structure(FIXED, POOL[:count], rng)
            truth = these_languages_truth(FIXED, structure, rng)
            for question, per_seed in (("Q4", _q4_seeds(FIXED, structure, rng, seeds)[0]), ("Q6", _q6_seeds(FIXED, structure, rng, seeds))):
                per_seed = per_seed[np.isfinite(per_seed)]
                if len(per_seed) < 2 or per_seed.min() == per_seed.max():
                    continue  # no interval, as in the findings
                low, high = stats.over_seeds(per_seed).interval()
                intervals[question] += 1
                covered[question] += max(low, -1.0) <= truth[question] <= min(high, 1.0)
            done += 1
        rows += [{"question": q, "languages": count, "seeds": seeds, "studies": done, "intervals": intervals[q],
                  "coverage": covered[q] / intervals[q] if intervals[q] else None} for q in ("Q4", "Q6")]
    return rows


def crossed_skew_coverage(studies: int, seed: int) -> list[dict]:
    """The crossed interval alone on (seeds, test examples) tables whose test examples carry most of
    the variance and are lognormal (sd 0.1 about their mean 0, log-scale sd sigma; seed shifts sd 0.01,
    noise 0.05): its coverage of 0, how often the findings would note the skewness
    (|G1| > stats.SKEWED_EXAMPLES_ABOVE), and the coverage with and without the note."""
    rng = np.random.default_rng(seed)
    rows = []
    for examples in (12, 24, 60):
        for seeds in FIXED_SEED_COUNTS:
            for sigma in (0.5, 1.0, 1.5, 2.0):
                mean, sd = math.exp(sigma**2 / 2), math.sqrt((math.exp(sigma**2) - 1) * math.exp(sigma**2))
                covered, noted = np.zeros(studies, dtype=bool), np.zeros(studies, dtype=bool)
                for i in range(studies):
                    lift = 0.1 * (np.exp(sigma * rng.normal(0, 1, examples)) - mean) / sd
                    table = rng.normal(0, 0.01, (seeds, 1)) + lift[None, :] + rng.normal(0, 0.05, (seeds, examples))
                    low, high = stats.crossed(table).interval()
                    covered[i], noted[i] = low <= 0 <= high, abs(stats.skewness(table.mean(axis=0))) > stats.SKEWED_EXAMPLES_ABOVE
                rows.append({"test_examples": examples, "seeds": seeds, "sigma": sigma, "studies": studies,
                             "coverage": float(covered.mean()), "noted": float(noted.mean()),
                             "coverage_noted": float(covered[noted].mean()) if noted.any() else None,
                             "coverage_not_noted": float(covered[~noted].mean()) if (~noted).any() else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="synthetic studies per cell (world or language count, and seed count)")
    parser.add_argument("--scenario", choices=("all", *SCENARIOS), nargs="+", default=["all"], help="one or more")
    parser.add_argument("--correlations", action="store_true",
                        help="instead: Q4's and Q6's seed-based coverage alone (fixed-languages), many studies per cell")
    parser.add_argument("--crossed-skew", action="store_true",
                        help="instead: the crossed interval alone on lognormal test examples that carry most of the variance")
    parser.add_argument("--languages", type=int, nargs="+", default=list(FIXED_LANGUAGES), help="fixed-languages: language counts (3 to 8)")
    parser.add_argument("--budget", type=float, help="seconds of wall time in all, split evenly over the cells (default: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    args = parser.parse_args()
    if not all(3 <= count <= len(POOL) for count in args.languages):
        parser.error(f"--languages: each between 3 and {len(POOL)}")
    started = time.perf_counter()
    if args.crossed_skew:
        rows = crossed_skew_coverage(args.studies, args.seed)
        print(f"the crossed interval on lognormal test examples, {args.studies} tables per cell; {time.perf_counter() - started:.0f} s")
        print("| test examples | seeds | log-scale sd | coverage | skewness noted | coverage noted | not noted |\n|---|---|---|---|---|---|---|")
        number = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        for r in rows:
            print(f"| {r['test_examples']} | {r['seeds']} | {r['sigma']} | {r['coverage']:.3f} | {r['noted']:.2f} | "
                  f"{number(r['coverage_noted'])} | {number(r['coverage_not_noted'])} |")
        return
    if args.correlations:
        rows = correlation_coverage(args.studies, args.seed, tuple(args.languages), None if args.budget is None else started + args.budget)
        print(f"Q4 and Q6 alone, up to {args.studies} studies per cell; {time.perf_counter() - started:.0f} s")
        print("| question | languages | seeds | studies | coverage |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['question']} | {r['languages']} | {r['seeds']} | {r['intervals']} | {r['coverage']:.3f} |")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
        return
    scenarios = SCENARIOS if "all" in args.scenario else tuple(s for s in SCENARIOS if s in args.scenario)
    languages = {scenario: tuple(args.languages) if scenario == "fixed-languages" else DIAGNOSTIC_LANGUAGES for scenario in scenarios}
    cells = {scenario: len(SEED_COUNTS) if scenario == "seed-effects" else len(languages[scenario]) * len(FIXED_SEED_COUNTS)
             for scenario in scenarios}
    rows, spent = [], 0
    for scenario in scenarios:  # the budget is split over the cells, every scenario's alike
        spent += cells[scenario]
        deadline = None if args.budget is None else started + args.budget * spent / sum(cells.values())
        if scenario == "seed-effects":
            rows += calibrate_seed_effects(args.studies, args.seed, deadline)
        else:
            rows += calibrate_fixed(args.studies, args.seed, languages[scenario], deadline, WORLDS[scenario], scenario)
    print(f"up to {args.studies} synthetic studies per cell; {time.perf_counter() - started:.0f} s")
    print("| question | estimand | scenario | languages | seeds | studies | coverage | false supported | false contradicted "
          "| seed flagged | power |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    number = lambda v, n=None: "-" if v is None else f"{v:.3f}" + (f" (of {n})" if n is not None else "")  # noqa: E731
    for r in rows:
        print(f"| {r['question']} | {r['estimand']} | {r['scenario']} | {r['languages']} | {r['seeds']} | {r['studies']} | "
              f"{number(r['coverage'])} | {number(r['false_supported'], r['claim_false'])} | "
              f"{number(r['false_contradicted'], r['claim_not_opposite'])} | {number(r['flagged'])} | {number(r['power'])} |")
    diagnosed = [r for r in rows if r["scenario"] in ("skewed", "failed-seed") and r["coverage"] is not None]
    if diagnosed:
        print("\nWhere coverage falls (skewed, failed-seed): how often each diagnostic comes, and the coverage with and without one")
        print("| question | scenario | languages | seeds | studies | coverage | a seed failed | flagged, a failed one | flagged, a sound one "
              "| skewness noted | coverage with a diagnostic | without |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in diagnosed:
            print(f"| {r['question']} | {r['scenario']} | {r['languages']} | {r['seeds']} | {r['studies']} | {number(r['coverage'])} | "
                  f"{number(r['with_failure'])} | {number(r['caught'])} | {number(r['flagged_sound'])} | {number(r['skew_noted'])} | "
                  f"{number(r['coverage_diagnosed'], r['diagnosed_intervals'])} | {number(r['coverage_undiagnosed'])} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
