"""Do the findings keep their nominal rates? Synthetic studies whose truth is planted, run through the
real findings code (`langspec.science.findings.findings` on a `StudyData`, the same function the report calls).

Two scenarios:

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

Per question, estimand, number of languages and seeds it prints the interval's coverage of the
estimand's truth, the rate of `supported` among studies whose truth is not on the claimed side, of
`contradicted` among those whose truth is not on the other side, the rate of a seed flagged as failed
(none is: stats.failed_seeds' false-flag rate), and (seed-effects) the rate of `supported` at the
planted effect (power). Targets: coverage >= 0.93, false `supported` and false `contradicted` <= 0.05
at 3 and 5 seeds. Where the estimand is languages in general, a second row ("these (beside)") gives
the seed-based interval that findings.json keeps in details against these languages' truth, and how
often it would have been `supported` had it been read as a claim about languages in general.

Run (from the repository root; --budget caps the wall time, split evenly over the cells, and each
row says how many studies it got):
    .venv/bin/python benchmarks/calibration.py [--studies 1000] [--scenario all|seed-effects|fixed-languages]
        [--languages 3 5 6 8] [--budget SECONDS] [--json calibration.json]
"""

from __future__ import annotations

import argparse
import json
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


FIXED = FixedWorld()


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


def draw_structure(world: FixedWorld, languages: tuple[str, ...], rng: np.random.Generator) -> Structure:
    count = len(languages)

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
        shared=rng.normal(0, 1, (count, GRID_EXAMPLES, count)),
    )


def _own_share(world: FixedWorld, structure: Structure, variant: str, shift: float, rise: np.ndarray | float) -> np.ndarray:
    """(L, TEST_PER_LANGUAGE): each test example's chance that a proponent is from its own language."""
    level = 0.3 + structure.row + structure.interaction[variant]
    return np.clip(level[:, None] + shift + structure.example[variant] + rise, 0.02, 0.98)


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


def these_languages_truth(world: FixedWorld, structure: Structure, rng: np.random.Generator) -> dict[str, float]:
    """Each question's value among these languages: the expectation over seeds (and, where the test
    treats them as random, test examples) given the fixed structure."""
    count = len(structure.languages)
    off = ~np.eye(count, dtype=bool)
    inter, slope = structure.interaction, structure.slope
    # Q4 and P1: M+ over MONTE_CARLO_SEEDS seeds of this structure (the study's test examples, as Q4's t over seeds keeps them)
    size = (MONTE_CARLO_SEEDS,)
    weights = _lender_weights(world, structure, rng, size)
    shifts = rng.normal(0, world.seed_sd, (*size, 1, 1))
    own = np.clip(0.3 + structure.row[:, None] + inter["full"][:, None] + structure.example["full"] + shifts, 0.02, 0.98)
    shares = _draw_counts(own, weights, rng).mean(axis=-2) / K  # (MC, L, L)
    q4 = float(np.nanmean(_off_diagonal_r(_excess(_draw_masks(structure, rng, size)), shares)))
    # P1, test examples random: E[share from s] = (1 - E[own]) * E[normalised weight of s]
    level = 0.3 + structure.row + inter["full"]
    expected = (1 - level)[:, None] * weights.mean(axis=0)
    fam = [FAMILIES.get(t) for t in structure.languages]
    related = np.array([[a != b and fam[a] is not None and fam[a] == fam[b] for b in range(count)] for a in range(count)])
    rows = [expected[t, related[t]].mean() - (expected[t, off[t] & ~related[t]].mean() if (off[t] & ~related[t]).any() else 0.0)
            for t in range(count) if related[t].any()]
    # Q6: P and E of this structure, with its shared example noise, over MONTE_CARLO_SEEDS seeds
    p, e = _seed_grids(world, structure, rng, size)
    q6 = float(np.mean(_off_diagonal_r(p.mean(axis=-2), e.mean(axis=-2))))
    return {"Q1": float((np.diag(structure.cell)[:, None] - structure.cell)[off].mean()),
            "Q2": float((inter["subnetwork"] - inter["full"]).mean()), "Q3": float((inter["sft"] - inter["subnetwork"]).mean()),
            "Q4": q4, "Q5": float((slope["sft"] - slope["full"]).mean()), "Q6": q6,
            "P1": float(np.mean(rows)) if rows else 0.0}


def fixed_study(world: FixedWorld, languages: tuple[str, ...], seeds: int,
                rng: np.random.Generator) -> tuple[findings.StudyData, Structure]:
    """One study of the fixed-languages scenario, as findings.load would read it, and its structure."""
    structure = draw_structure(world, languages, rng)
    count = len(languages)
    tests = [[f"{t}-test-{i}" for i in range(TEST_PER_LANGUAGE)] for t in languages]
    proponents: dict = {}
    masks, transfer, grids = {}, [], []
    for s in range(seeds):
        weights = _lender_weights(world, structure, rng)
        shift = {v: rng.normal(0, world.seed_sd) for v in VARIANTS}
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
        noise, seed_shift = rng.normal(0, 0.02, (count, count)), rng.normal(0, world.seed_sd)
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
    ), structure


# --- counting -----------------------------------------------------------------------------------------


def _new_cell() -> dict:
    return {"studies": 0, "intervals": 0, "covered": 0, "claim_false": 0, "false_supported": 0, "claim_not_opposite": 0,
            "false_contradicted": 0, "flagged": 0, "supported": 0}


def _count(cell: dict, finding: findings.Finding, truth: float, interval: list | None, verdict: str) -> None:
    """One verdict and interval against its estimand's truth: coverage, and a verdict the truth does not bear out."""
    side = 1 if finding.claimed == "greater" else -1
    cell["studies"] += 1
    if interval is not None:
        cell["intervals"] += 1
        cell["covered"] += interval[0] <= truth <= interval[1]
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
            "power": share("supported", "studies") if cell["supported"] else None}


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


def calibrate_fixed(studies: int, seed: int, language_counts: tuple[int, ...], deadline: float | None) -> list[dict]:
    """The fixed-languages scenario's rows: per question, estimand, language count and seed count."""
    rng = np.random.default_rng(seed)
    rows = []
    plan = [(count, seeds) for count in language_counts for seeds in FIXED_SEED_COUNTS]
    for position, (count, seeds) in enumerate(plan):
        languages = POOL[:count]
        cells: dict = {}
        limit = None if deadline is None else time.perf_counter() + (deadline - time.perf_counter()) / (len(plan) - position)
        done = 0
        while done < studies and (limit is None or time.perf_counter() < limit):
            data, structure = fixed_study(FIXED, languages, seeds, rng)
            truth = these_languages_truth(FIXED, structure, rng)
            for finding in findings.findings(data):
                general = finding.estimand["population"] == findings.GENERAL
                key = (finding.question, "languages in general" if general else "these languages")
                _count(cells.setdefault(key, _new_cell()), finding, 0.0 if general else truth[finding.question], finding.interval,
                       finding.verdict)
                if general:
                    interval, verdict = _seed_based_verdict(finding)
                    beside = cells.setdefault((finding.question, "these (beside)"), _new_cell())
                    _count(beside, finding, truth[finding.question], interval, verdict)
                    beside["supported"] += verdict == findings.SUPPORTED  # read as a claim about languages in general (truth 0)
            done += 1
        rows += [{"question": q, "estimand": estimand, "scenario": "fixed-languages", "languages": count, "seeds": seeds, **_rates(c)}
                 for (q, estimand), c in sorted(cells.items(), key=lambda item: (QUESTIONS.index(item[0][0]), item[0][1]))]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="synthetic studies per cell (world or language count, and seed count)")
    parser.add_argument("--scenario", choices=("all", "seed-effects", "fixed-languages"), default="all")
    parser.add_argument("--languages", type=int, nargs="+", default=list(FIXED_LANGUAGES), help="fixed-languages: language counts (3 to 8)")
    parser.add_argument("--budget", type=float, help="seconds of wall time in all, split evenly over the cells (default: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    args = parser.parse_args()
    if not all(3 <= count <= len(POOL) for count in args.languages):
        parser.error(f"--languages: each between 3 and {len(POOL)}")
    started = time.perf_counter()
    scenarios = ("seed-effects", "fixed-languages") if args.scenario == "all" else (args.scenario,)
    rows = []
    for i, scenario in enumerate(scenarios):
        deadline = None if args.budget is None else started + args.budget * (i + 1) / len(scenarios)
        if scenario == "seed-effects":
            rows += calibrate_seed_effects(args.studies, args.seed, deadline)
        else:
            rows += calibrate_fixed(args.studies, args.seed, tuple(args.languages), deadline)
    print(f"up to {args.studies} synthetic studies per cell; {time.perf_counter() - started:.0f} s")
    print("| question | estimand | scenario | languages | seeds | studies | coverage | false supported | false contradicted "
          "| seed flagged | power |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    number = lambda v, n=None: "-" if v is None else f"{v:.3f}" + (f" (of {n})" if n is not None else "")  # noqa: E731
    for r in rows:
        print(f"| {r['question']} | {r['estimand']} | {r['scenario']} | {r['languages']} | {r['seeds']} | {r['studies']} | "
              f"{number(r['coverage'])} | {number(r['false_supported'], r['claim_false'])} | "
              f"{number(r['false_contradicted'], r['claim_not_opposite'])} | {number(r['flagged'])} | {number(r['power'])} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
