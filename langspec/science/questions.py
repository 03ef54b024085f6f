"""The study's questions, one function each, `(StudyData, Gates) -> Answer`, and QUESTIONS, the list
of them in report order (a new question is a function appended to it). langspec.science.findings
turns their answers into findings."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from langspec.science import stats
from langspec.science.study import ABLATION, SFT, SUBNETWORK, Gates, StudyData
from langspec.science.verdicts import (CROSSED_TEST, MIN_SEEDS, SEEDS_TEST, Answer, clean, crossed_estimate,
                                       over_seeds_estimate)

SEED = 0  # of every random permutation: findings are deterministic


def _mean_of(by_seed: dict[int, dict[str, float]]) -> float | None:
    return float(np.mean([np.mean(list(v.values())) for v in by_seed.values()])) if by_seed else None


def paired(data: StudyData, minuend: str, subtrahend: str) -> dict[int, dict[str, float]]:
    """seed -> test_id -> S+ difference between two variants, over the test examples both scored."""
    a, b = data.in_language(minuend), data.in_language(subtrahend)
    return {seed: {z: a[seed][z] - b[seed][z] for z in a[seed] if z in b[seed]} for seed in sorted(a) if seed in b}



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
    statistic, estimate, n = crossed_estimate(paired(data, minuend, subtrahend), reasons)
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
    estimate = over_seeds_estimate(per_seed, reasons)
    mean_j, mean_m = np.mean(list(matrices.values()), axis=0)  # (2, L, L): over seeds
    r, p, permutations = stats.mantel(mean_j, mean_m, seed=SEED)
    raw = np.mean([_raw_jaccard(data, seed) for seed in seeds], axis=0)
    languages = len(data.languages)
    n = {"languages": languages, "pairs": languages * (languages - 1), "seeds": len(seeds)}
    details = {"per_seed_r": per_seed, "mantel_r_of_seed_means": clean(r), "mantel_p": p, "mantel_permutations": permutations,
               "raw_jaccard_r": clean(stats.correlation(stats.off_diagonal(raw), stats.off_diagonal(mean_m)))}

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
    estimate = over_seeds_estimate(list(main.per_seed), reasons)
    details = {f"{r.predictor}/{r.method}/{r.pairs}": {"r": clean(r.statistic), "interval": [clean(r.low), clean(r.high)],
                                                      "p_value": clean(r.p), "p_rows_permuted": r.p_rows, "pairs": r.n}
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
