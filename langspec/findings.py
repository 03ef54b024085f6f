"""The study's answers as data: one `Finding` per question, each with its statistic, a 95% interval,
a test, the sample sizes, a verdict and the reasons for it, computed from the store's analyses
(store/sql/) and per-test-example rows (store/sql/internal/findings_*.sql) with langspec.stats.

Verdicts: `supported` (the interval excludes the null value on the claimed side), `not supported`
(a sanity gate failed, or the interval lies on the other side), `inconclusive` (the interval holds
the null value, or there is no interval: one seed). Every failed gate is named in `reasons`.

QUESTIONS lists the finding functions in report order; a new question is a function
`(StudyData) -> Finding` appended to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property

import duckdb
import numpy as np

from langspec import stats, validity
from store.queries import VARIANTS, internal, run_named

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
SEED = 0  # of every bootstrap and random permutation: findings are deterministic
MIN_SEEDS = 2  # an interval over seeds needs at least two


@dataclass(frozen=True)
class Finding:
    """One question's answer. interval: [low, high] at 95%, or None; n: the sample sizes."""

    question: str  # "Q1" ...
    title: str  # the claim, e.g. "Language subnetworks exist"
    verdict: str  # supported | not supported | inconclusive
    statistic: float | None
    statistic_name: str  # what `statistic` is, in words
    interval: list[float] | None
    p_value: float | None
    test: str | None  # how p_value was computed
    n: dict[str, int]
    reasons: list[str]
    sentence: str  # the answer in plain words, with its numbers
    details: dict = field(default_factory=dict)  # further numbers (per variant, per epoch, ...)

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
    pairs: list[dict]  # subnetwork_similarity, per seed
    proponents: dict  # (variant, checkpoint) -> seed -> test_id -> (test_language, {train_language: count})
    train_examples: dict  # (seed, variant) -> {language: training examples scored}
    threshold: float | None = None
    validity: list = field(default_factory=list)  # langspec.validity.Validity of the point's ablation, if any

    @property
    def seeds(self) -> list[int]:
        return sorted({r["seed"] for r in self.full_model})

    @cached_property  # read by every bootstrap resample: at the paper's size the set below takes 8 ms
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
    pairs = per_seed("subnetwork_similarity")
    thresholds = {row[0] for row in internal(con, "findings_thresholds", **params)}
    return StudyData(
        run_id=run_id, point=point, k=k,
        full_model=[dict(zip(columns, row)) for row in internal(con, "findings_full_model", **params)],
        accuracy=per_seed("accuracy"), mask_transfer=per_seed("mask_transfer"), pairs=pairs,
        proponents=proponents, train_examples=train_examples,
        threshold=next(iter(thresholds)) if len(thresholds) == 1 else None,
        validity=validity.influence_validity(con, run_id, point, k) if internal(con, "point_has_ablation", **params)[0][0] else [],
    )


# --- sanity gates -----------------------------------------------------------------------------


def gates(data: StudyData) -> list[str]:
    """The failed sanity gates that void every finding of the point, each naming its gate."""
    failed = []
    if not data.full_model:
        return ["no full-model test accuracy: the run has no fine-tuning results at this point"]
    for r in data.full_model:
        low, high = stats.wilson_interval(round(r["accuracy"] * r["examples"]), r["examples"])
        if low <= r["majority_rate"]:
            failed.append(
                f"chance: the full model of seed {r['seed']} on {r['language']} has test accuracy {r['accuracy']:.3f} "
                f"(95% interval [{low:.3f}, {high:.3f}], n = {r['examples']}), not above the majority-class rate "
                f"{r['majority_rate']:.3f}"
            )
    for r in data.full_model:
        if r["labels"] == 0:
            failed.append(
                f"collapsed: the full model of seed {r['seed']} has no predicted-label counts (fine-tuned before langspec "
                "stored them): run the spec again to recompute them"
            )
            break
        if r["labels_predicted"] < r["labels"]:
            failed.append(
                f"collapsed: the full model of seed {r['seed']} predicts only {r['labels_predicted']} of the {r['labels']} "
                f"labels on {r['language']}'s {r['examples']} test examples"
            )
    scored = data.scored_training_examples()
    if scored is not None and not 0 < data.k < scored:
        failed.append(f"k: k = {data.k} must be between 1 and {scored - 1} (TracIn scored {scored} training examples)")
    return failed


# --- the questions ----------------------------------------------------------------------------


def _finding(question: str, title: str, *, statistic: float | None, statistic_name: str, interval, p_value=None,
             test=None, n: dict, reasons: list[str], claimed: str = "greater", failed: list[str],
             say: Callable[[str], str], details: dict | None = None, short_of: list[str] = ()) -> Finding:
    """A finding with its verdict: gates first, then the interval against 0 on the `claimed` side
    ('greater', 'less' or 'either'). `short_of`: reasons that keep an interval on the claimed side
    from `supported` (e.g. a permutation test that disagrees); they make it `inconclusive`."""
    reasons = list(failed) + list(reasons)
    if failed:
        verdict = NOT_SUPPORTED
    elif statistic is None or interval is None or any(math.isnan(v) for v in interval):
        verdict = INCONCLUSIVE
    elif interval[0] > 0 and claimed in ("greater", "either") or interval[1] < 0 and claimed in ("less", "either"):
        verdict = INCONCLUSIVE if short_of else SUPPORTED
    elif interval[1] < 0 and claimed == "greater" or interval[0] > 0 and claimed == "less":
        verdict = NOT_SUPPORTED
        reasons.append(f"the interval [{interval[0]:.3f}, {interval[1]:.3f}] lies on the side opposite to the claim")
    else:
        verdict = INCONCLUSIVE
        reasons.append(f"the interval [{interval[0]:.3f}, {interval[1]:.3f}] includes 0")
    reasons += list(short_of)
    if failed:
        sentence = f"{question} ({title}) cannot be answered: " + "; ".join(failed) + "."
    else:
        sentence = say(verdict)
    return Finding(question, title, verdict, _clean(statistic), statistic_name,
                   None if interval is None else [_clean(v) for v in interval], _clean(p_value), test, n, reasons,
                   sentence, details or {})


def _clean(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _interval_text(interval) -> str:
    return f"95% interval [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else "no interval (one seed)"


def _seed_interval(per_seed: list[float], reasons: list[str]):
    """Interval of a mean over seeds (bootstrap of the seeds), or None with the reason."""
    if len(per_seed) < MIN_SEEDS:
        reasons.append(f"seeds: {len(per_seed)} seed(s); an interval over seeds needs at least {MIN_SEEDS}")
        return None
    values = np.asarray(per_seed, dtype=float)
    return list(stats.bootstrap_interval(lambda rng: float(values[rng.integers(0, len(values), len(values))].mean()), seed=SEED))


def _example_interval(groups: dict[int, list[float]], reasons: list[str]):
    """Interval of a mean over seeds of per-test-example values (seeds and examples resampled)."""
    if len(groups) < MIN_SEEDS:
        reasons.append(f"seeds: {len(groups)} seed(s); an interval over seeds needs at least {MIN_SEEDS}")
        return None
    return list(stats.nested_bootstrap_mean([groups[s] for s in sorted(groups)], seed=SEED))


def _mean_of_groups(groups: dict[int, list[float]]) -> float | None:
    return float(np.mean([np.mean(v) for v in groups.values()])) if groups else None


def _paired(data: StudyData, minuend: str, subtrahend: str, checkpoints=(None, None)) -> dict[int, list[float]]:
    """seed -> per-test-example differences of S+ between two variants (or checkpoints), over the
    test examples both scored."""
    a, b = data.in_language(minuend, checkpoints[0]), data.in_language(subtrahend, checkpoints[1])
    return {seed: [a[seed][z] - b[seed][z] for z in sorted(a[seed]) if z in b[seed]] for seed in sorted(a) if seed in b}


def q1_subnetworks_exist(data: StudyData, failed: list[str]) -> Finding:
    """Specificity: a language's own mask against the other languages' masks on its test set."""
    title = "Language subnetworks exist"
    by_seed: dict[int, list[float]] = {}
    for r in data.mask_transfer:
        if r["language"] != r["mask_language"]:
            by_seed.setdefault(int(r["seed"]), []).append(r["own_minus_this"])
    if not by_seed:
        return _finding("Q1", title, statistic=None, statistic_name="own-mask minus other-mask test accuracy", interval=None,
                        n={}, reasons=["no mask_transfer rows: the run has no subnetworks (prune.enabled: false)"],
                        failed=failed, say=lambda v: "Q1 cannot be answered: the run has no subnetworks.")
    reasons: list[str] = []
    per_seed = [float(np.mean(v)) for _, v in sorted(by_seed.items())]
    specificity = float(np.mean(per_seed))
    interval = _seed_interval(per_seed, reasons)
    retention_by_seed: dict[int, list[float]] = {}
    for r in data.accuracy:
        if r["retention"] is not None:
            retention_by_seed.setdefault(int(r["seed"]), []).append(r["retention"])
    retention = [float(np.mean(v)) for _, v in sorted(retention_by_seed.items())]
    retention_interval = _seed_interval(retention, []) if retention else None
    jaccard_seed: dict[int, list[float]] = {}
    for r in data.pairs:
        if r["language_a"] < r["language_b"]:
            heads = round(r["heads_kept_a"] / (1 - r["sparsity_a"])) if r["sparsity_a"] < 1 else None
            other = next(p for p in data.pairs if (p["seed"], p["language_a"]) == (r["seed"], r["language_b"]))
            if heads:
                expected = stats.random_mask_jaccard(heads, round(r["heads_kept_a"]), round(other["heads_kept_a"]))
                jaccard_seed.setdefault(int(r["seed"]), []).append(r["jaccard"] - expected)
    jaccard_excess = [float(np.mean(v)) for _, v in sorted(jaccard_seed.items())]
    examples = {int(r["seed"]): int(r["examples"]) for r in data.mask_transfer}
    n = {"seeds": len(per_seed), "languages": len({r["language"] for r in data.mask_transfer}),
         "test_examples_per_language": min(examples.values())}
    details = {
        "retention": float(np.mean(retention)) if retention else None, "retention_interval": retention_interval,
        "jaccard_minus_random": float(np.mean(jaccard_excess)) if jaccard_excess else None,
        "jaccard_minus_random_interval": _seed_interval(jaccard_excess, []) if jaccard_excess else None,
        "threshold": data.threshold,
    }

    def say(verdict: str) -> str:
        retained = (f"the subnetworks keep {details['retention']:.0%} of the full model's test accuracy"
                    + (f" ({_pct_interval(retention_interval)})" if retention_interval else "")) if retention else ""
        overlap = (f"; their Jaccard overlap is {details['jaccard_minus_random']:+.2f} against random masks of the same sizes"
                   if jaccard_excess else "")
        base = (f"a language's own mask gives {specificity:+.3f} test accuracy over the other languages' masks on its data "
                f"({_interval_text(interval)}; {n['seeds']} seeds x {n['languages']} languages x {n['test_examples_per_language']} "
                f"test examples); {retained}{overlap}.")
        if verdict == SUPPORTED:
            return "Q1 supported: language subnetworks exist: " + base
        if verdict == NOT_SUPPORTED:
            return "Q1 not supported: the subnetworks are not specific to their language: " + base
        return "Q1 inconclusive: whether the subnetworks are specific to their language is not settled: " + base

    return _finding("Q1", title, statistic=specificity, statistic_name="own-mask minus other-mask test accuracy",
                    interval=interval, n=n, reasons=reasons, failed=failed, say=say, details=details)


def _pct_interval(interval) -> str:
    return f"95% interval {interval[0]:.0%} to {interval[1]:.0%}"


def _specialisation(data: StudyData, failed: list[str], question: str, title: str, minuend: str, subtrahend: str,
                    claimed: str) -> Finding:
    name = f"S+ {minuend} minus {subtrahend}"
    if minuend not in data.variants or subtrahend not in data.variants:
        return _finding(question, title, statistic=None, statistic_name=name, interval=None, n={},
                        reasons=[f"the run lacks the TracIn variants {minuend} and {subtrahend}"], failed=failed,
                        say=lambda v: f"{question} cannot be answered: the run lacks the TracIn variants {minuend} and {subtrahend}.")
    groups = _paired(data, minuend, subtrahend)
    reasons: list[str] = []
    statistic = _mean_of_groups(groups)
    interval = _example_interval(groups, reasons)
    differences = [d for seed in sorted(groups) for d in groups[seed]]
    p = stats.sign_flip_p(differences, seed=SEED)
    n = {"seeds": len(groups), "test_examples": len(differences), "k": data.k}
    s_minuend = _mean_of_groups({s: list(v.values()) for s, v in data.in_language(minuend).items()})
    s_subtrahend = _mean_of_groups({s: list(v.values()) for s, v in data.in_language(subtrahend).items()})

    def say(verdict: str) -> str:
        numbers = (f"S+ is {s_minuend:.3f} ({minuend}) against {s_subtrahend:.3f} ({subtrahend}), a change of {statistic:+.3f} "
                   f"({_interval_text(interval)}; sign-flip p = {p:.3g}; {n['test_examples']} test examples over {n['seeds']} "
                   f"seed(s), top-{data.k} proponents).")
        return f"{question} {verdict}: {title.lower()}? {numbers}"

    return _finding(question, title, statistic=statistic, statistic_name=name, interval=interval, p_value=p,
                    test="two-sided sign-flip permutation test over test examples (9,999 seeded flips)", n=n,
                    reasons=reasons, claimed=claimed, failed=failed, say=say,
                    details={f"s_plus_{minuend}": s_minuend, f"s_plus_{subtrahend}": s_subtrahend})


def q2_subnetworks_rely_on_own_language(data: StudyData, failed: list[str]) -> Finding:
    return _specialisation(data, failed, "Q2", "Subnetworks rely more on in-language data", "subnetwork", "full", "greater")


def q3_sft_changes_specialisation(data: StudyData, failed: list[str]) -> Finding:
    return _specialisation(data, failed, "Q3", "SFT changes specialisation", "sft", "subnetwork", "either")


def _matrices(data: StudyData, variant: str, seed: int, examples: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """J and M+ of one seed as language x language matrices (M+ from the given test examples'
    proponents, default all of them)."""
    languages = data.languages
    index = {language: i for i, language in enumerate(languages)}
    jaccard = np.eye(len(languages))
    for r in data.pairs:
        if int(r["seed"]) == seed:
            jaccard[index[r["language_a"]], index[r["language_b"]]] = r["jaccard"]
    shares = np.zeros((len(languages), len(languages)))
    counts = np.zeros(len(languages))
    for language, by_train in (examples if examples is not None else data.proponents[(variant, None)][seed]).values():
        counts[index[language]] += 1
        for train_language, count in by_train.items():
            shares[index[language], index[train_language]] += count / data.k
    return jaccard, shares / np.maximum(counts, 1)[:, None]


def _resampled_examples(data: StudyData, variant: str, seed: int, rng: np.random.Generator) -> dict:
    """A resample of one seed's test examples, with replacement within each test language."""
    by_language: dict[str, list] = {}
    for test_id, value in data.proponents[(variant, None)][seed].items():
        by_language.setdefault(value[0], []).append(value)
    drawn = {}
    for language, values in by_language.items():
        for j, i in enumerate(rng.integers(0, len(values), len(values))):
            drawn[(language, j)] = values[i]
    return drawn


def q4_similarity_predicts_influence(data: StudyData, failed: list[str]) -> Finding:
    title = "Subnetwork similarity predicts positive cross-language influence"
    name = "Mantel r (Pearson) of J(a, b) with M+[a, b], full model"
    variants = [v for v in data.variants if data.pairs]
    if not variants:
        return _finding("Q4", title, statistic=None, statistic_name=name, interval=None, n={},
                        reasons=["the run lacks subnetworks or TracIn scores"], failed=failed,
                        say=lambda v: "Q4 cannot be answered: the run lacks subnetworks or TracIn scores.")
    seeds = sorted(data.proponents[(variants[0], None)])
    details = {}
    for variant in variants:
        mean_j, mean_m = np.mean([_matrices(data, variant, s) for s in seeds], axis=0)  # (2, L, L): J and M+
        r, p, permutations = stats.mantel(mean_j, mean_m, seed=SEED)
        details[variant] = {"r": _clean(r), "p_value": p, "permutations": permutations}
    primary = variants[0]  # the full model when scored: the paper's question is about the model as trained
    reasons: list[str] = []
    interval = None
    if len(seeds) < MIN_SEEDS:
        reasons.append(f"seeds: {len(seeds)} seed(s); an interval over seeds needs at least {MIN_SEEDS}")
    else:
        def resample(rng: np.random.Generator) -> float:
            drawn = rng.choice(seeds, len(seeds))
            pairs = [_matrices(data, primary, int(s), _resampled_examples(data, primary, int(s), rng)) for s in drawn]
            return stats.correlation(stats.off_diagonal(np.mean([j for j, _ in pairs], axis=0)),
                                     stats.off_diagonal(np.mean([m for _, m in pairs], axis=0)))
        interval = list(stats.bootstrap_interval(resample, resamples=1000, seed=SEED))
    r, p, permutations = details[primary]["r"], details[primary]["p_value"], details[primary]["permutations"]
    languages = len(data.languages)
    n = {"languages": languages, "pairs": languages * (languages - 1), "seeds": len(seeds), "permutations": permutations}
    short_of = []
    if p is not None and p > 0.05:
        short_of.append(f"Mantel p = {p:.3f} > 0.05 (smallest attainable p with {languages} languages: 1/{permutations} = "
                        f"{1 / permutations:.4f})")

    def say(verdict: str) -> str:
        others = "; ".join(f"{v}: r = {d['r']:+.2f}, p = {d['p_value']:.3f}" for v, d in details.items() if v != primary and d["r"] is not None)
        numbers = (f"Mantel r = {r:+.2f} between J(a, b) and M+[a, b] ({primary} model; {_interval_text(interval)}; "
                   f"p = {p:.3f} from all {permutations} relabellings of the {languages} languages, the smallest attainable p "
                   f"being {1 / permutations:.4f}; mean over {len(seeds)} seed(s))" + (f"; {others}" if others else "") + ".")
        return f"Q4 {verdict}: does subnetwork similarity predict cross-language influence? {numbers}"

    return _finding("Q4", title, statistic=r, statistic_name=name, interval=interval, p_value=p,
                    test="Mantel test, one-sided, language labels of J permuted", n=n, reasons=reasons,
                    failed=failed, say=say, details=details, short_of=short_of)


def q5_dynamics(data: StudyData, failed: list[str]) -> Finding:
    title = "In-language reliance changes over training"
    per_epoch: dict = {}
    for variant in data.variants:
        for checkpoint in data.checkpoints(variant):
            groups = {s: list(v.values()) for s, v in data.in_language(variant, checkpoint).items()}
            per_epoch.setdefault(variant, {})[checkpoint] = {
                "s_plus": _mean_of_groups(groups), "interval": _example_interval(groups, []),
            }
    variant = "full" if "full" in per_epoch else next(iter(per_epoch), None)
    epochs = sorted(per_epoch.get(variant, {}))
    name = f"S+ at the last minus the first checkpoint ({variant} model)"
    if len(epochs) < 2:
        return _finding("Q5", title, statistic=None, statistic_name=name, interval=None, n={},
                        reasons=["fewer than two checkpoints with TracIn scores"], failed=failed,
                        say=lambda v: "Q5 cannot be answered: fewer than two checkpoints were scored.")
    groups = _paired(data, variant, variant, (epochs[-1], epochs[0]))
    reasons: list[str] = []
    statistic = _mean_of_groups(groups)
    interval = _example_interval(groups, reasons)
    differences = [d for seed in sorted(groups) for d in groups[seed]]
    p = stats.sign_flip_p(differences, seed=SEED)
    n = {"seeds": len(groups), "test_examples": len(differences), "checkpoints": len(epochs), "k": data.k}
    first, last = per_epoch[variant][epochs[0]]["s_plus"], per_epoch[variant][epochs[-1]]["s_plus"]

    def say(verdict: str) -> str:
        return (f"Q5 {verdict}: in-language reliance of the {variant} model goes from S+ {first:.3f} at epoch {epochs[0]} to "
                f"{last:.3f} at epoch {epochs[-1]}, a change of {statistic:+.3f} ({_interval_text(interval)}; sign-flip "
                f"p = {p:.3g}; {n['test_examples']} test examples over {n['seeds']} seed(s)).")

    return _finding("Q5", title, statistic=statistic, statistic_name=name, interval=interval, p_value=p,
                    test="two-sided sign-flip permutation test over test examples (9,999 seeded flips)", n=n,
                    reasons=reasons, claimed="either", failed=failed, say=say,
                    details={v: {str(e): value for e, value in by_epoch.items()} for v, by_epoch in per_epoch.items()})


def p1_planted_families(data: StudyData, failed: list[str]) -> Finding:
    """The toy world's families (runners.methods.toy.FAMILIES): are M+ and J higher for related pairs?"""
    from runners.methods.toy import FAMILIES

    title = "The planted language families are recovered"
    name = "M+ from the related language minus the mean M+ from unrelated languages (full model)"
    languages = data.languages
    related = {a: [b for b in languages if b != a and FAMILIES.get(a) is not None and FAMILIES.get(a) == FAMILIES.get(b)]
               for a in languages}
    if "full" not in data.variants or not any(related.values()):
        return _finding("P1", title, statistic=None, statistic_name=name, interval=None, n={},
                        reasons=["needs the full model's TracIn scores and two toy languages of one family"], failed=failed,
                        say=lambda v: "P1 cannot be answered: the run lacks the full model's TracIn scores or a related pair.")
    groups: dict[int, list[float]] = {}
    for seed, examples in data.proponents[("full", None)].items():
        for language, counts in examples.values():
            if not related[language]:
                continue
            unrelated = [b for b in languages if b != language and b not in related[language]]
            rel = np.mean([counts.get(b, 0) / data.k for b in related[language]])
            unrel = np.mean([counts.get(b, 0) / data.k for b in unrelated]) if unrelated else 0.0
            groups.setdefault(seed, []).append(float(rel - unrel))
    reasons: list[str] = []
    statistic = _mean_of_groups(groups)
    interval = _example_interval(groups, reasons)
    jaccard_seed: dict[int, float] = {}
    for seed in sorted({int(r["seed"]) for r in data.pairs}):
        rows = [r for r in data.pairs if int(r["seed"]) == seed and r["language_a"] < r["language_b"]]
        rel = [r["jaccard"] for r in rows if r["language_b"] in related[r["language_a"]]]
        unrel = [r["jaccard"] for r in rows if r["language_b"] not in related[r["language_a"]]]
        if rel and unrel:
            jaccard_seed[seed] = float(np.mean(rel) - np.mean(unrel))
    jaccard = float(np.mean(list(jaccard_seed.values()))) if jaccard_seed else None
    jaccard_interval = _seed_interval(list(jaccard_seed.values()), []) if jaccard_seed else None
    n = {"seeds": len(groups), "test_examples": sum(map(len, groups.values())),
         "related_pairs": sum(map(len, related.values())) // 2, "k": data.k}

    def say(verdict: str) -> str:
        j = (f"; J is {jaccard:+.3f} higher for related than unrelated pairs"
             + (f" ({_interval_text(jaccard_interval)})" if jaccard_interval else " (one seed: no interval)")) if jaccard is not None else ""
        return (f"P1 {verdict} (a check of the toy world and TracIn): a test example's top-{data.k} proponents come "
                f"{statistic:+.3f} more from its related language than from an unrelated one "
                f"({_interval_text(interval)}; {n['test_examples']} test examples over {n['seeds']} seed(s)){j}.")

    short_of = []
    if jaccard_interval is not None and jaccard_interval[0] <= 0:
        short_of.append(f"J: related pairs' Jaccard is not above unrelated pairs' (interval [{jaccard_interval[0]:.3f}, "
                       f"{jaccard_interval[1]:.3f}]): the masks do not show the families")
    return _finding("P1", title, statistic=statistic, statistic_name=name, interval=interval, n=n, reasons=reasons,
                    failed=failed, say=say, short_of=short_of,
                    details={"jaccard_related_minus_unrelated": jaccard, "jaccard_interval": jaccard_interval,
                             "related": {a: b for a, b in related.items() if b}})


def q6_tracin_predicts_removal(data: StudyData, failed: list[str]) -> Finding:
    """Ground truth from retraining (the ablation stage): does TracIn's predicted group effect P[t, s]
    go with the measured effect E[t, s] of leaving language s out of fine-tuning?"""
    title = "TracIn predicts the effect of removing a language"
    name = "Pearson r of TracIn's P[t, s] with the measured E[t, s] over all (t, s) pairs, full model, mean over seeds"
    chosen = {(r.variant, r.predictor, r.method, r.pairs): r for r in data.validity}
    variant = "full" if any(key[0] == "full" for key in chosen) else next(iter(chosen), (None,))[0]
    main = chosen.get((variant, "tracin", "pearson", "all"))
    if main is None:
        return _finding("Q6", title, statistic=None, statistic_name=name, interval=None, n={},
                        reasons=["the run has no ablation with TracIn scores (ablation.enabled: false)"], failed=failed,
                        say=lambda v: "Q6 cannot be answered: the run has no ablation (ablation.enabled: false).")
    reasons: list[str] = []
    interval = [main.low, main.high]
    if main.seeds < MIN_SEEDS:
        reasons.append(f"seeds: {main.seeds} seed(s); an interval over seeds needs at least {MIN_SEEDS}")
        interval = None
    short_of = [f"permutation p = {main.p:.3f} > 0.05"] if main.p > 0.05 else []
    off = chosen.get((variant, "tracin", "pearson", "off_diagonal"))
    others = {predictor: chosen.get((variant, predictor, "pearson", "off_diagonal")) for predictor in ("share", "jaccard")}
    details = {f"{r.predictor}/{r.method}/{r.pairs}": {"r": _clean(r.statistic), "interval": [_clean(r.low), _clean(r.high)],
                                                      "p_value": r.p, "pairs": r.n}
               for r in data.validity if r.variant == variant}
    n = {"pairs_per_seed": main.n, "seeds": main.seeds}

    def say(verdict: str) -> str:
        cross = (f"; over the pairs t ≠ s alone r = {off.statistic:+.2f} [{off.low:+.2f}, {off.high:+.2f}], p = {off.p:.3f}"
                 if off else "")
        rivals = "; ".join(f"{'M+ share' if k == 'share' else 'Jaccard'} r = {r.statistic:+.2f} (t ≠ s)" for k, r in others.items() if r)
        return (f"Q6 {verdict}: TracIn's predicted effect P[t, s] correlates with the measured effect of removing s from "
                f"fine-tuning at r = {main.statistic:+.2f} ({_interval_text(interval)}, permutation p = {main.p:.3f}; "
                f"{main.n} pairs in each of {main.seeds} seed(s), {variant} model){cross}"
                + (f"; the other predictors: {rivals}" if rivals else "") + ".")

    return _finding("Q6", title, statistic=main.statistic, statistic_name=name, interval=interval, p_value=main.p,
                    test="permutation of E over the (t, s) pairs within each seed, two-sided", n=n, reasons=reasons,
                    failed=failed, say=say, details=details, short_of=short_of)


# The questions in report order.
QUESTIONS: list[Callable[[StudyData, list[str]], Finding]] = [
    q1_subnetworks_exist, q2_subnetworks_rely_on_own_language, q3_sft_changes_specialisation,
    q4_similarity_predicts_influence, q5_dynamics, q6_tracin_predicts_removal, p1_planted_families,
]


def findings(data: StudyData) -> list[Finding]:
    """Every question's finding; the sanity gates apply to each."""
    failed = gates(data)
    return [question(data, failed) for question in QUESTIONS]


def compute(con: duckdb.DuckDBPyConnection, run_id: int, point: str, k: int) -> list[Finding]:
    return findings(load(con, run_id, point, k))
