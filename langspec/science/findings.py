"""The study's answers as data: one `Finding` per question, each with the direction it claims, its
statistic, a 95% interval, the p-value that agrees with that interval, Holm's adjustment over the
primary questions, the sample sizes, a verdict and the reasons for it; computed from the store's
analyses (store/sql/) and per-test-example rows (store/sql/internal/findings_*.sql) with
langspec.science.stats.

Seeds are the replications; TracIn's test examples are the same in every seed (crossed with the
seeds, not nested in them). A statistic measured per seed gets a t interval over seeds
(`stats.over_seeds`); one measured per test example gets the crossed interval (`stats.crossed`).

Verdicts: `supported` (the interval lies on the claimed side of 0, and for a primary question
Holm's adjusted p < 0.05), `contradicted` (the interval lies on the far side, adjusted likewise),
`inconclusive` (the interval holds 0, the adjustment takes it back, or the question cannot be
answered: a sanity gate of a model it uses failed, data is missing, or one seed). Every reason is
in `reasons`.

QUESTIONS lists the finding functions in report order; a new question is a function
`(StudyData, Gates) -> Answer` appended to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property

import duckdb
import numpy as np

from langspec.science import stats, tracin_vs_ablation
from store.queries import VARIANTS, internal, k_fits, run_named

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
ALPHA = 0.05  # of every interval (95%) and of Holm's family of primary questions
SEED = 0  # of every random permutation: findings are deterministic
MIN_SEEDS = 2  # an interval over seeds needs at least two
MULTILINGUAL = "multilingual"  # the masks pruned on the model fine-tuned on every language (not `only`'s)


@dataclass(frozen=True)
class Finding:
    """One question's answer. interval: [low, high] at 95%, or None; n: the sample sizes."""

    question: str  # "Q1" ...
    title: str  # the claim, with its direction, e.g. "A language's own subnetwork serves it better than the others'"
    claimed: str  # the side of 0 the statistic takes if the claim holds: greater | less
    verdict: str  # supported | contradicted | inconclusive
    statistic: float | None
    statistic_name: str  # what `statistic` is, in words
    interval: list[float] | None
    p_value: float | None  # two-sided, of `statistic = 0`, from the same estimate as the interval
    p_adjusted: float | None  # Holm over the primary questions of the point; None for a secondary one
    primary: bool  # one of the study's questions (in Holm's family); False: a check or an exploration
    test: str | None  # how interval and p_value were computed
    n: dict[str, int]
    reasons: list[str]
    sentence: str  # the answer in plain words, with its numbers
    details: dict = field(default_factory=dict)  # further numbers (per variant, per epoch, ...): exploratory

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class StudyData:
    """What the findings of one run's sweep point read, loaded once."""

    run_id: int
    point: str
    k: int
    full_model: list[dict]  # findings_full_model rows
    accuracy: list[dict]  # the accuracy analysis, per seed
    mask_transfer: list[dict]  # the mask_transfer analysis, per seed
    pairs: list[dict]  # subnetwork_similarity of the multilingual model's masks, per seed
    proponents: dict  # (variant, checkpoint) -> seed -> test_id -> (test_language, {train_language: count})
    train_examples: dict  # (seed, variant) -> {language: training examples scored}
    threshold: float | None = None
    validity: list = field(default_factory=list)  # langspec.science.tracin_vs_ablation.Validity of the point's ablation, if any
    ablation_models: list = field(default_factory=list)  # findings_ablation_models rows

    @property
    def seeds(self) -> list[int]:
        return sorted({r["seed"] for r in self.full_model})

    @cached_property  # read by every resample: at the paper's size the set below takes 8 ms
    def languages(self) -> list[str]:
        """Every language the point has results of: fine-tuned, pruned or scored by TracIn."""
        scored = {name for by_seed in self.proponents.values() for examples in by_seed.values()
                  for test_language, counts in examples.values() for name in (test_language, *counts)}
        return sorted({r["language"] for r in self.full_model} | {r[side] for r in self.pairs for side in ("language_a", "language_b")}
                      | scored)

    @property
    def variants(self) -> list[str]:
        return [v for v in VARIANTS if (v, None) in self.proponents]

    def scored_training_examples(self) -> int | None:
        counts = [sum(by_language.values()) for by_language in self.train_examples.values()]
        return min(counts) if counts else None

    def in_language(self, variant: str, checkpoint: int | None = None) -> dict[int, dict[str, float]]:
        """seed -> test_id -> S+ of that test example: the share of its top-k proponents from its own language."""
        return {
            seed: {test_id: counts.get(language, 0) / self.k for test_id, (language, counts) in examples.items()}
            for seed, examples in self.proponents.get((variant, checkpoint), {}).items()
        }

    def checkpoints(self, variant: str) -> list[int]:
        return sorted(c for v, c in self.proponents if v == variant and c is not None)

    @cached_property  # read by Q1 and by each seed of Q4
    def jaccard_excess(self) -> dict[int, dict[tuple[str, str], float]]:
        """seed -> (a, b) -> J(a, b) minus its expectation for two random masks of the same sizes: raw
        Jaccard rises with mask size (random masks of 16 heads reach 0.34)."""
        kept = {(int(r["seed"]), r["language_a"]): r["heads_kept_a"] for r in self.pairs}
        excess: dict = {}
        for r in self.pairs:
            if r["language_a"] == r["language_b"] or r["sparsity_a"] >= 1:
                continue
            heads = round(r["heads_kept_a"] / (1 - r["sparsity_a"]))
            expected = stats.random_mask_jaccard(heads, round(r["heads_kept_a"]), round(kept[(int(r["seed"]), r["language_b"])]))
            excess.setdefault(int(r["seed"]), {})[(r["language_a"], r["language_b"])] = r["jaccard"] - expected
        return excess


def load(con: duckdb.DuckDBPyConnection, run_id: int, point: str, k: int) -> StudyData:
    params = {"run_id": run_id, "point": point}
    per_seed = lambda name, **extra: [r for r in run_named(con, name, **params, **extra).to_pylist() if r["seed"] != "mean"]  # noqa: E731
    proponents: dict = {}
    for per_checkpoint in (False, True):
        for seed, variant, checkpoint, test_id, test_language, train_language, count in internal(
                con, "findings_test_examples", **params, k=k, per_checkpoint=per_checkpoint):
            by_seed = proponents.setdefault((variant, checkpoint), {}).setdefault(seed, {})
            by_seed.setdefault(test_id, (test_language, {}))[1][train_language] = count
    train_examples: dict = {}
    for seed, variant, role, language, count in internal(con, "findings_tracin_sizes", **params):
        if role == "train":
            train_examples.setdefault((seed, variant), {})[language] = count
    columns = ("seed", "language", "accuracy", "examples", "majority_rate", "labels", "labels_predicted")
    thresholds = {row[0] for row in internal(con, "findings_thresholds", **params)}
    has_ablation = internal(con, "point_has_ablation", **params)[0][0]
    return StudyData(
        run_id=run_id, point=point, k=k,
        full_model=[dict(zip(columns, row)) for row in internal(con, "findings_full_model", **params)],
        accuracy=per_seed("accuracy"), mask_transfer=per_seed("mask_transfer"),
        pairs=[r for r in per_seed("subnetwork_similarity") if r["model"] == MULTILINGUAL],  # `only`'s masks answer no question here
        proponents=proponents, train_examples=train_examples,
        threshold=next(iter(thresholds)) if len(thresholds) == 1 else None,
        validity=tracin_vs_ablation.influence_validity(con, run_id, point, k) if has_ablation else [],
        ablation_models=[dict(zip(("seed", "ablated", "language", "accuracy", "examples"), row))
                         for row in internal(con, "findings_ablation_models", **params)] if has_ablation else [],
    )


# --- sanity gates -----------------------------------------------------------------------------

# The models a question's answer rests on; a failed gate of any of them makes it `inconclusive`.
FULL, SUBNETWORK, SFT, ABLATION = "full", "subnetwork", "sft", "ablation"


@dataclass(frozen=True)
class Gates:
    """The failed sanity gates of each model of a point, each naming its gate."""

    failed: dict[str, list[str]]

    def of(self, *models: str) -> list[str]:
        return [reason for model in (FULL, *models) for reason in self.failed.get(model, [])]


def gates(data: StudyData) -> Gates:
    if not data.full_model:
        return Gates({FULL: ["no full-model test accuracy: the run has no fine-tuning results at this point"]})
    majority = {(r["seed"], r["language"]): r for r in data.full_model}
    failed = {FULL: [], SUBNETWORK: [], SFT: [], ABLATION: []}
    for r in data.full_model:
        failed[FULL] += _chance(f"the full model of seed {r['seed']} on {r['language']}", r["accuracy"], r["examples"], r["majority_rate"])
    for r in data.full_model:
        if r["labels"] == 0:
            failed[FULL].append(f"collapsed: the full model of seed {r['seed']} has no predicted-label counts (fine-tuned before "
                                "langspec stored them): run the spec again to recompute them")
            break
        if r["labels_predicted"] < r["labels"]:
            failed[FULL].append(f"collapsed: the full model of seed {r['seed']} predicts only {r['labels_predicted']} of the "
                                f"{r['labels']} labels on {r['language']}'s {r['examples']} test examples")
    for r in data.accuracy:  # each language's own subnetwork, and the SFT model under it, on that language's test set
        base = majority.get((int(r["seed"]), r["language"]))
        for model, what in ((SUBNETWORK, "subnetwork"), (SFT, "SFT model")):
            if base is not None and r[model] is not None:
                failed[model] += _chance(f"the {what} of seed {r['seed']} on {r['language']}", r[model], base["examples"],
                                         base["majority_rate"])
    for r in data.ablation_models:
        base = majority.get((r["seed"], r["language"]))
        if base is not None:
            failed[ABLATION] += _chance(f"the model of seed {r['seed']} fine-tuned without {r['ablated']}, on {r['language']}",
                                        r["accuracy"], r["examples"], base["majority_rate"])
    scored = data.scored_training_examples()
    if scored is not None and not k_fits(data.k, scored):
        failed[FULL].append(f"k: k = {data.k} must be between 1 and {scored - 1} (TracIn scored {scored} training examples)")
    return Gates(failed)


def _chance(what: str, accuracy: float, examples: int, majority_rate: float) -> list[str]:
    low, high = stats.wilson_interval(round(accuracy * examples), examples)
    if low > majority_rate:
        return []
    return [f"chance: {what} has test accuracy {accuracy:.3f} (95% interval [{low:.3f}, {high:.3f}], n = {examples}), "
            f"not above the majority-class rate {majority_rate:.3f}"]


# --- answers, verdicts and the adjustment ----------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A question's numbers before its verdict: `finish` gives the Finding once Holm's adjustment
    over the point's primary questions is known."""

    question: str
    title: str
    statistic_name: str
    statistic: float | None  # the point estimate, also where there is no interval (one seed)
    estimate: stats.Estimate | None  # its interval and test
    n: dict
    reasons: list[str]  # why there is no estimate, or what else the verdict rests on
    failed: list[str]  # the failed gates of the models the question uses
    say: Callable[[str, str], str]  # (verdict, interval text) -> the sentence
    claimed: str = "greater"
    primary: bool = True
    test: str | None = None
    details: dict = field(default_factory=dict)
    short_of: list[str] = field(default_factory=list)  # reasons that keep `supported` from an interval on the claimed side
    bounds: tuple[float, float] = (-math.inf, math.inf)  # what the statistic can be (a correlation: [-1, 1]); the interval is cut to it

    @cached_property  # a root search: computed once
    def p_value(self) -> float | None:
        return None if self.estimate is None or self.failed else self.estimate.p_value()

    def finish(self, p_adjusted: float | None) -> Finding:
        interval = None
        if self.estimate is not None:  # cut to what the statistic can be: it covers no less, and says nothing impossible
            low, high = self.estimate.interval()
            interval = [max(low, self.bounds[0]), min(high, self.bounds[1])]
        reasons = list(self.failed) + list(self.reasons)
        verdict = INCONCLUSIVE
        if interval is not None and not self.failed:
            above, below = interval[0] > 0, interval[1] < 0
            if above or below:
                verdict = SUPPORTED if above == (self.claimed == "greater") else CONTRADICTED
            else:
                reasons.append(f"the interval [{interval[0]:.3f}, {interval[1]:.3f}] includes 0")
            if verdict == CONTRADICTED:
                reasons.append(f"the interval [{interval[0]:.3f}, {interval[1]:.3f}] lies on the side opposite to the claim")
        # What takes a verdict back goes first (after any failed gate): the reason the summary shows.
        if verdict != INCONCLUSIVE and p_adjusted is not None and p_adjusted >= ALPHA:
            reasons.insert(len(self.failed), f"Holm's adjusted p = {p_adjusted:.3f} over the primary questions is not below {ALPHA}")
            verdict = INCONCLUSIVE
        if verdict == SUPPORTED and self.short_of:
            reasons[len(self.failed):len(self.failed)] = self.short_of
            verdict = INCONCLUSIVE
        if self.failed:
            sentence = f"{self.question} ({self.title}) cannot be answered: " + "; ".join(self.failed) + "."
        elif self.statistic is None:
            sentence = f"{self.question} cannot be answered: {self.reasons[0]}."
        else:
            sentence = self.say(verdict, _interval_text(interval, self.p_value, p_adjusted))
        return Finding(self.question, self.title, self.claimed, verdict, _clean(self.statistic), self.statistic_name,
                       None if interval is None else [_clean(v) for v in interval], _clean(self.p_value),
                       _clean(p_adjusted), self.primary, self.test, self.n, reasons, sentence, self.details)


def _clean(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _interval_text(interval, p: float | None, p_adjusted: float | None) -> str:
    if interval is None:
        return "no interval: one seed"
    adjusted = f", Holm-adjusted {p_adjusted:.3g}" if p_adjusted is not None else ""
    return f"95% interval [{interval[0]:+.3f}, {interval[1]:+.3f}], p = {p:.3g}{adjusted}"


def _over_seeds(per_seed: list[float], reasons: list[str]) -> stats.Estimate | None:
    if len(per_seed) < MIN_SEEDS:
        reasons.append(f"seeds: {len(per_seed)} seed(s); an interval over seeds needs at least {MIN_SEEDS}")
        return None
    return stats.over_seeds(per_seed)


def crossed_estimate(by_seed: dict[int, dict[str, float]], reasons: list[str]) -> tuple[float | None, stats.Estimate | None, dict]:
    """The mean of per-test-example values (seed -> test_id -> value) over the test examples every
    seed has, its crossed estimate (None with one seed), and their sample sizes."""
    common = sorted(set.intersection(*(set(v) for v in by_seed.values()))) if by_seed else []
    n = {"seeds": len(by_seed), "test_examples": len(common)}
    if not common:
        reasons.append("no test example was scored in every seed")
        return None, None, n
    table = np.array([[by_seed[seed][z] for z in common] for seed in sorted(by_seed)])
    if len(by_seed) < MIN_SEEDS:
        reasons.append(f"seeds: {len(by_seed)} seed(s); an interval over seeds needs at least {MIN_SEEDS}")
        return float(table.mean()), None, n
    if len(common) < 2:
        reasons.append("test examples: fewer than 2 scored in every seed")
        return float(table.mean()), None, n
    return float(table.mean()), stats.crossed(table), n


CROSSED_TEST = ("crossed interval and t test: seeds (S - 1 df) and test examples (N - 1 df) as the two random factors, "
                "each part with its own t quantile")
SEEDS_TEST = "t interval and t test over the per-seed statistics (seeds - 1 df)"


def _mean_of(by_seed: dict[int, dict[str, float]]) -> float | None:
    return float(np.mean([np.mean(list(v.values())) for v in by_seed.values()])) if by_seed else None


def _paired(data: StudyData, minuend: str, subtrahend: str) -> dict[int, dict[str, float]]:
    """seed -> test_id -> S+ difference between two variants, over the test examples both scored."""
    a, b = data.in_language(minuend), data.in_language(subtrahend)
    return {seed: {z: a[seed][z] - b[seed][z] for z in a[seed] if z in b[seed]} for seed in sorted(a) if seed in b}


# --- the questions ----------------------------------------------------------------------------


def q1_subnetworks_exist(data: StudyData, gate: Gates) -> Answer:
    """Specificity: a language's own mask against the other languages' masks on its test set."""
    title = "A language's own subnetwork serves it better than the other languages' subnetworks"
    name = "own-mask minus other-mask test accuracy (mean over language pairs)"
    by_seed: dict[int, dict[str, float]] = {}  # the language pairs' test sets are the same in every seed: crossed
    for r in data.mask_transfer:
        if r["language"] != r["mask_language"]:
            by_seed.setdefault(int(r["seed"]), {})[f"{r['language']}/{r['mask_language']}"] = r["own_minus_this"]
    reasons: list[str] = []
    if not by_seed:
        reasons.append("no mask_transfer rows: the run has no subnetworks (prune.enabled: false)")
    statistic, estimate, _ = crossed_estimate(by_seed, reasons) if by_seed else (None, None, {})
    retention_by_seed: dict[int, list[float]] = {}
    for r in data.accuracy:
        if r["retention"] is not None:
            retention_by_seed.setdefault(int(r["seed"]), []).append(r["retention"])
    retention = [float(np.mean(v)) for _, v in sorted(retention_by_seed.items())]
    excess = [float(np.mean([v for (a, b), v in pairs.items() if a < b])) for _, pairs in sorted(data.jaccard_excess.items())]
    examples = [int(r["examples"]) for r in data.mask_transfer]
    n = {"seeds": len(by_seed), "languages": len({r["language"] for r in data.mask_transfer}),
         "test_examples_per_language": min(examples, default=0)}
    details = {
        "retention": float(np.mean(retention)) if retention else None,
        "retention_interval": list(stats.over_seeds(retention).interval()) if len(retention) >= MIN_SEEDS else None,
        "jaccard_minus_random": float(np.mean(excess)) if excess else None,
        "jaccard_minus_random_interval": list(stats.over_seeds(excess).interval()) if len(excess) >= MIN_SEEDS else None,
        "threshold": data.threshold,
    }

    def say(verdict: str, interval: str) -> str:
        retained = f"; the subnetworks keep {details['retention']:.0%} of the full model's test accuracy" if retention else ""
        overlap = (f"; their Jaccard overlap is {details['jaccard_minus_random']:+.2f} against random masks of the same sizes"
                   if excess else "")
        return (f"Q1 {verdict}: a language's own mask gives {statistic:+.3f} test accuracy over the other languages' masks "
                f"on its data ({interval}; {n['seeds']} seeds x {n['languages']} languages x {n['test_examples_per_language']} "
                f"test examples){retained}{overlap}.")

    return Answer("Q1", title, name, statistic, estimate, n, reasons, gate.of(SUBNETWORK), say, test=CROSSED_TEST, details=details)


def _specialisation(data: StudyData, failed: list[str], question: str, title: str, minuend: str, subtrahend: str) -> Answer:
    name = f"S+ {minuend} minus {subtrahend}"
    reasons: list[str] = []
    if minuend not in data.variants or subtrahend not in data.variants:
        reasons.append(f"the run lacks the TracIn variants {minuend} and {subtrahend}")
        return Answer(question, title, name, None, None, {}, reasons, failed, lambda v, i: "")
    statistic, estimate, n = crossed_estimate(_paired(data, minuend, subtrahend), reasons)
    s_minuend, s_subtrahend = _mean_of(data.in_language(minuend)), _mean_of(data.in_language(subtrahend))

    def say(verdict: str, interval: str) -> str:
        return (f"{question} {verdict}: {title.lower()}? S+ is {s_minuend:.3f} ({minuend}) against {s_subtrahend:.3f} "
                f"({subtrahend}), a change of {statistic:+.3f} ({interval}; {n['test_examples']} test examples in each of "
                f"{n['seeds']} seeds, top-{data.k} proponents).")

    return Answer(question, title, name, statistic, estimate, {**n, "k": data.k}, reasons, failed, say, test=CROSSED_TEST,
                  details={f"s_plus_{minuend}": s_minuend, f"s_plus_{subtrahend}": s_subtrahend})


def q2_subnetworks_rely_on_own_language(data: StudyData, gate: Gates) -> Answer:
    return _specialisation(data, gate.of(SUBNETWORK), "Q2", "Subnetworks rely more on in-language data than the full model",
                           "subnetwork", "full")


def q3_sft_changes_specialisation(data: StudyData, gate: Gates) -> Answer:
    return _specialisation(data, gate.of(SUBNETWORK, SFT), "Q3", "SFT raises in-language reliance over the subnetworks",
                           "sft", "subnetwork")


def _matrices(data: StudyData, variant: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One seed's size-adjusted Jaccard (J minus its random-mask expectation) and M+, as language x
    language matrices (M+: the mean over t's test examples of the share of proponents from s)."""
    languages = data.languages
    index = {language: i for i, language in enumerate(languages)}
    jaccard = np.zeros((len(languages), len(languages)))
    for (a, b), value in data.jaccard_excess.get(seed, {}).items():
        jaccard[index[a], index[b]] = value
    shares = np.zeros((len(languages), len(languages)))
    counts = np.zeros(len(languages))
    for language, by_train in data.proponents[(variant, None)][seed].values():
        counts[index[language]] += 1
        for train_language, count in by_train.items():
            shares[index[language], index[train_language]] += count / data.k
    return jaccard, shares / np.maximum(counts, 1)[:, None]


def q4_similarity_predicts_influence(data: StudyData, gate: Gates) -> Answer:
    title = "Subnetwork similarity predicts positive cross-language influence"
    name = "Pearson r of J(a, b) minus its random-mask expectation with M+[a, b], full model, mean over seeds"
    reasons: list[str] = []
    if "full" not in data.variants or not data.pairs:
        reasons.append("the run lacks subnetworks or the full model's TracIn scores")
        return Answer("Q4", title, name, None, None, {}, reasons, gate.of(SUBNETWORK), lambda v, i: "")
    seeds = sorted(set(data.proponents[("full", None)]) & {int(r["seed"]) for r in data.pairs})
    matrices = {seed: _matrices(data, "full", seed) for seed in seeds}
    per_seed = [r for r in (stats.correlation(stats.off_diagonal(j), stats.off_diagonal(m)) for j, m in matrices.values())
                if not math.isnan(r)]  # NaN: a seed whose matrices are constant
    statistic = float(np.mean(per_seed)) if per_seed else None
    estimate = _over_seeds(per_seed, reasons)
    mean_j, mean_m = np.mean(list(matrices.values()), axis=0)  # (2, L, L): over seeds
    r, p, permutations = stats.mantel(mean_j, mean_m, seed=SEED)
    raw = np.mean([_raw_jaccard(data, seed) for seed in seeds], axis=0)
    languages = len(data.languages)
    n = {"languages": languages, "pairs": languages * (languages - 1), "seeds": len(seeds)}
    details = {"per_seed_r": per_seed, "mantel_r_of_seed_means": _clean(r), "mantel_p": p, "mantel_permutations": permutations,
               "raw_jaccard_r": _clean(stats.correlation(stats.off_diagonal(raw), stats.off_diagonal(mean_m)))}

    def say(verdict: str, interval: str) -> str:
        return (f"Q4 {verdict}: does subnetwork similarity predict cross-language influence? r = {statistic:+.2f} between "
                f"size-adjusted J(a, b) and M+[a, b] ({interval}; {n['pairs']} pairs in each of {n['seeds']} seeds); exploratory: "
                f"Mantel p = {p:.3f} on the seeds' mean matrices ({permutations} relabellings of the {languages} languages), "
                f"raw Jaccard r = {details['raw_jaccard_r']:+.2f}.")

    return Answer("Q4", title, name, statistic, estimate, n, reasons, gate.of(SUBNETWORK), say, test=SEEDS_TEST, details=details,
                  bounds=(-1.0, 1.0))


def _raw_jaccard(data: StudyData, seed: int) -> np.ndarray:
    index = {language: i for i, language in enumerate(data.languages)}
    jaccard = np.eye(len(index))
    for r in data.pairs:
        if int(r["seed"]) == seed:
            jaccard[index[r["language_a"]], index[r["language_b"]]] = r["jaccard"]
    return jaccard


def _slopes(data: StudyData, variant: str) -> dict[int, dict[str, float]]:
    """seed -> test_id -> the least-squares slope of its S+ over the checkpoints (per epoch)."""
    epochs = data.checkpoints(variant)
    if len(epochs) < 2:
        return {}
    by_epoch = {epoch: data.in_language(variant, epoch) for epoch in epochs}
    x = np.array(epochs, dtype=float) - np.mean(epochs)
    slopes: dict[int, dict[str, float]] = {}
    for seed, examples in by_epoch[epochs[0]].items():
        for z in examples:
            if all(z in by_epoch[e].get(seed, {}) for e in epochs):
                y = np.array([by_epoch[e][seed][z] for e in epochs])
                slopes.setdefault(seed, {})[z] = float((x * y).sum() / (x * x).sum())
    return slopes


def q5_dynamics(data: StudyData, gate: Gates) -> Answer:
    """The paper's open question: does in-language reliance build up differently under SFT than
    under full fine-tuning? The per-example slope of S+ over checkpoints, SFT minus full."""
    title = "In-language reliance rises faster over training under SFT than under full fine-tuning"
    name = "slope of S+ per epoch, SFT minus full model"
    slopes = {variant: _slopes(data, variant) for variant in ("full", "sft")}
    reasons: list[str] = []
    details: dict = {}
    for variant, by_seed in slopes.items():
        slope, estimate, _ = crossed_estimate(by_seed, []) if by_seed else (None, None, {})
        details[f"slope_{variant}"] = slope
        details[f"slope_{variant}_interval"] = list(estimate.interval()) if estimate else None
        details[f"s_plus_by_epoch_{variant}"] = {str(e): _mean_of(data.in_language(variant, e)) for e in data.checkpoints(variant)}
    if not slopes["full"] or not slopes["sft"]:
        reasons.append("needs TracIn scores of the full and the SFT model at two or more checkpoints each")
        return Answer("Q5", title, name, None, None, {}, reasons, gate.of(SFT), lambda v, i: "", details=details)
    difference = {seed: {z: slopes["sft"][seed][z] - slopes["full"][seed][z] for z in slopes["sft"][seed] if z in slopes["full"][seed]}
                  for seed in slopes["sft"] if seed in slopes["full"]}
    statistic, estimate, n = crossed_estimate(difference, reasons)

    def say(verdict: str, interval: str) -> str:
        return (f"Q5 {verdict}: S+ changes by {details['slope_sft']:+.4f} per epoch under SFT and {details['slope_full']:+.4f} under "
                f"full fine-tuning, a difference of {statistic:+.4f} ({interval}; {n['test_examples']} test examples in each of "
                f"{n['seeds']} seeds).")

    return Answer("Q5", title, name, statistic, estimate, {**n, "checkpoints": len(data.checkpoints("full")), "k": data.k}, reasons,
                  gate.of(SFT), say, test=CROSSED_TEST, details=details)


def related_languages(languages: list[str]) -> dict[str, list[str]]:
    """language -> the other studied languages of its toy family (runners.methods.toy.FAMILIES)."""
    from runners.methods.toy import FAMILIES

    return {a: [b for b in languages if b != a and FAMILIES.get(a) is not None and FAMILIES.get(a) == FAMILIES.get(b)]
            for a in languages}


def related_minus_unrelated(data: StudyData, variant: str, languages: list[str] | None = None) -> dict[int, dict[str, float]]:
    """seed -> test_id -> share of the test example's top-k proponents from a related language minus
    that from an unrelated one (each the mean over those languages), for test examples whose language
    has a relative (and is in `languages`, when given)."""
    related = related_languages(data.languages)
    by_seed: dict[int, dict[str, float]] = {}
    for seed, examples in data.proponents.get((variant, None), {}).items():
        for test_id, (language, counts) in examples.items():
            if related[language] and (languages is None or language in languages):
                unrelated = [b for b in data.languages if b != language and b not in related[language]]
                rel = np.mean([counts.get(b, 0) / data.k for b in related[language]])
                unrel = np.mean([counts.get(b, 0) / data.k for b in unrelated]) if unrelated else 0.0
                by_seed.setdefault(seed, {})[test_id] = float(rel - unrel)
    return by_seed


def p1_planted_families(data: StudyData, gate: Gates) -> Answer:
    """The toy world's families (runners.methods.toy.FAMILIES): are M+ and J higher for related pairs?"""
    title = "The planted language families are recovered"
    name = "M+ from the related language minus the mean M+ from unrelated languages (full model)"
    related = related_languages(data.languages)
    reasons: list[str] = []
    if "full" not in data.variants or not any(related.values()):
        reasons.append("needs the full model's TracIn scores and two toy languages of one family")
        return Answer("P1", title, name, None, None, {}, reasons, gate.of(), lambda v, i: "", primary=False)
    by_seed = related_minus_unrelated(data, "full")
    statistic, estimate, n = crossed_estimate(by_seed, reasons)
    jaccard_seed = []
    for seed in sorted({int(r["seed"]) for r in data.pairs}):
        rows = [r for r in data.pairs if int(r["seed"]) == seed and r["language_a"] < r["language_b"]]
        rel = [r["jaccard"] for r in rows if r["language_b"] in related[r["language_a"]]]
        unrel = [r["jaccard"] for r in rows if r["language_b"] not in related[r["language_a"]]]
        if rel and unrel:
            jaccard_seed.append(float(np.mean(rel) - np.mean(unrel)))
    jaccard = stats.over_seeds(jaccard_seed) if len(jaccard_seed) >= MIN_SEEDS else None
    jaccard_interval = list(jaccard.interval()) if jaccard else None
    short_of = []
    if jaccard_interval is not None and jaccard_interval[0] <= 0:
        short_of.append(f"J: related pairs' Jaccard is not above unrelated pairs' (interval [{jaccard_interval[0]:.3f}, "
                        f"{jaccard_interval[1]:.3f}]): the masks do not show the families")

    def say(verdict: str, interval: str) -> str:
        j = f"; J is {jaccard.mean:+.3f} higher for related than unrelated pairs ([{jaccard_interval[0]:+.3f}, {jaccard_interval[1]:+.3f}])" if jaccard else ""
        return (f"P1 {verdict} (a check of the toy world and TracIn): a test example's top-{data.k} proponents come "
                f"{statistic:+.3f} more from its related language than from an unrelated one ({interval}; "
                f"{n['test_examples']} test examples in each of {n['seeds']} seeds){j}.")

    return Answer("P1", title, name, statistic, estimate, {**n, "related_pairs": sum(map(len, related.values())) // 2, "k": data.k},
                  reasons, gate.of(), say, primary=False, test=CROSSED_TEST, short_of=short_of,
                  details={"jaccard_related_minus_unrelated": jaccard.mean if jaccard else None, "jaccard_interval": jaccard_interval,
                           "related": {a: b for a, b in related.items() if b}})


def q6_tracin_predicts_removal(data: StudyData, gate: Gates) -> Answer:
    """Ground truth from retraining (the ablation stage): does TracIn's predicted group effect P[t, s]
    go with the measured effect E[t, s] of leaving language s out of fine-tuning?"""
    title = "TracIn predicts the effect of removing a language"
    name = "Pearson r of TracIn's P[t, s] with the measured E[t, s] over all (t, s) pairs, full model, mean over seeds"
    chosen = {(r.variant, r.predictor, r.method, r.pairs): r for r in data.validity}
    variant = "full" if any(key[0] == "full" for key in chosen) else next(iter(chosen), (None,))[0]
    main = chosen.get((variant, "tracin", "pearson", "all"))
    reasons: list[str] = []
    if main is None:
        reasons.append("the run has no ablation with TracIn scores (ablation.enabled: false)")
        return Answer("Q6", title, name, None, None, {}, reasons, gate.of(ABLATION), lambda v, i: "")
    estimate = _over_seeds(list(main.per_seed), reasons)
    details = {f"{r.predictor}/{r.method}/{r.pairs}": {"r": _clean(r.statistic), "interval": [_clean(r.low), _clean(r.high)],
                                                      "p_value": _clean(r.p), "p_rows_permuted": r.p_rows, "pairs": r.n}
               for r in data.validity if r.variant == variant}
    n = {"pairs_per_seed": main.n, "seeds": main.seeds}

    def say(verdict: str, interval: str) -> str:
        return (f"Q6 {verdict}: TracIn's predicted effect P[t, s] correlates with the measured effect of removing s from "
                f"fine-tuning at r = {main.statistic:+.2f} ({interval}; {main.n} pairs in each of {main.seeds} seeds, {variant} "
                f"model); exploratory: with E's rows permuted, p = {main.p_rows:.3f}; the other predictors and pair sets are in details.")

    return Answer("Q6", title, name, main.statistic, estimate, n, reasons, gate.of(ABLATION), say, test=SEEDS_TEST, details=details,
                  bounds=(-1.0, 1.0))


# The questions in report order; P1 is a check of the toy world, outside Holm's family.
QUESTIONS: list[Callable[[StudyData, Gates], Answer]] = [
    q1_subnetworks_exist, q2_subnetworks_rely_on_own_language, q3_sft_changes_specialisation,
    q4_similarity_predicts_influence, q5_dynamics, q6_tracin_predicts_removal, p1_planted_families,
]


def findings(data: StudyData) -> list[Finding]:
    """Every question's finding: the gates of the models each uses, then Holm over the primary ones."""
    gate = gates(data)
    answers = [question(data, gate) for question in QUESTIONS]
    adjusted = stats.holm([a.p_value if a.primary else None for a in answers])
    return [answer.finish(p) for answer, p in zip(answers, adjusted)]


def compute(con: duckdb.DuckDBPyConnection, run_id: int, point: str, k: int) -> list[Finding]:
    return findings(load(con, run_id, point, k))
