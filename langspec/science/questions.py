"""The study's questions, one function each, `(StudyData, Gates) -> Answer`, and QUESTIONS, the list
of them in report order (a new question is a function appended to it). langspec.science.findings
turns their answers into findings. Q6, against retraining, is in langspec.science.language_removal."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from langspec.science import language_tests, stats
from langspec.science.estimates import CROSSED_TEST, SEEDS_TEST, crossed_estimate, over_seeds_estimate
from langspec.science.language_removal import q6_tracin_predicts_removal
from langspec.science.study import SFT, SUBNETWORK, Gates, StudyData
from langspec.science.verdicts import MIN_SEEDS, Answer, LanguageTest, clean, plural

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
    notes: list[str] = []
    details: dict = {}
    if not by_seed:
        reasons.append("no mask_transfer rows: the run has no subnetworks (prune.enabled: false)")
    statistic, estimate, _ = crossed_estimate(by_seed, reasons, notes=notes, details=details) if by_seed else (None, None, {})
    languages = sorted({r["language"] for r in data.mask_transfer})
    common = set.intersection(*(set(v) for v in by_seed.values())) if by_seed else set()
    relabelled = language_tests.mask_specificity([{tuple(pair.split("/")): v[pair] for pair in common} for _, v in sorted(by_seed.items())],
                                                 languages)
    retention_by_seed: dict[int, list[float]] = {}
    for r in data.accuracy:
        if r["retention"] is not None:
            retention_by_seed.setdefault(int(r["seed"]), []).append(r["retention"])
    retention = [float(np.mean(v)) for _, v in sorted(retention_by_seed.items())]
    excess = [float(np.mean([v for (a, b), v in pairs.items() if a < b])) for _, pairs in sorted(data.jaccard_excess.items())]
    examples = [int(r["examples"]) for r in data.mask_transfer]
    n = {"seeds": len(by_seed), "languages": len(languages), "test_examples_per_language": min(examples, default=0)}
    details.update({
        "retention": float(np.mean(retention)) if retention else None,
        "retention_interval": list(stats.over_seeds(retention).interval()) if len(set(retention)) >= MIN_SEEDS else None,
        "jaccard_minus_random": float(np.mean(excess)) if excess else None,
        "jaccard_minus_random_interval": list(stats.over_seeds(excess).interval()) if len(set(excess)) >= MIN_SEEDS else None,
        "threshold": data.threshold,
    })

    def say(verdict: str, interval: str) -> str:
        retained = f"; the subnetworks keep {details['retention']:.0%} of the full model's test accuracy" if retention else ""
        overlap = (f"; their Jaccard overlap is {details['jaccard_minus_random']:+.2f} against random masks of the same sizes"
                   if excess else "")
        return (f"Q1 {verdict}: a language's own mask gives {statistic:+.3f} test accuracy over the other languages' masks "
                f"on its data ({interval}; {plural(n['seeds'], 'seed')} x {plural(n['languages'], 'language')} x "
                f"{plural(n['test_examples_per_language'], 'test example')}){retained}{overlap}.")

    language_test = LanguageTest(relabelled, "the masks' languages", language_tests.one_in_every) if relabelled else None
    return Answer("Q1", title, name, statistic, estimate, n, reasons, gate.of(SUBNETWORK), say, test=CROSSED_TEST, details=details,
                  languages=tuple(languages), random_factors=("seeds", "language pairs"), language_test=language_test,
                  unit="accuracy", notes=notes)


CONFINEMENT = ("This statistic includes the effect of confinement itself: the sft variant masks each training gradient by its "
               "language's subnetwork, as SFT trained the model, so even with the language labels shuffled (the negative control) "
               "SFT stays confined and Q3 gives about +0.03")


def _specialisation(data: StudyData, failed: list[str], question: str, title: str, minuend: str, subtrahend: str,
                    caveat: str = "") -> Answer:
    name = f"S+ {minuend} minus {subtrahend}"
    reasons: list[str] = []
    languages = tuple(data.languages)
    if minuend not in data.variants or subtrahend not in data.variants:
        reasons.append(f"the run lacks the TracIn variants {minuend} and {subtrahend}")
        return Answer(question, title, name, None, None, {}, reasons, failed, lambda v, i: "", languages=languages)
    notes: list[str] = []
    details: dict = {}
    statistic, estimate, n = crossed_estimate(paired(data, minuend, subtrahend), reasons, notes=notes, details=details)
    s_minuend, s_subtrahend = _mean_of(data.in_language(minuend)), _mean_of(data.in_language(subtrahend))
    details.update({f"s_plus_{minuend}": s_minuend, f"s_plus_{subtrahend}": s_subtrahend})

    def say(verdict: str, interval: str) -> str:
        return (f"{question} {verdict}: {title.lower()}? S+ is {s_minuend:.3f} ({minuend}) against {s_subtrahend:.3f} "
                f"({subtrahend}), a change of {statistic:+.3f} ({interval}; {plural(n['test_examples'], 'test example')} in each of "
                f"{plural(n['seeds'], 'seed')}, top-{data.k} proponents)" + (f". {caveat}." if caveat else "."))

    return Answer(question, title, name, statistic, estimate, {**n, "k": data.k}, reasons, failed, say, test=CROSSED_TEST,
                  details=details, languages=languages, random_factors=("seeds", "test examples"), unit="in S+", notes=notes)


def q2_subnetworks_rely_on_own_language(data: StudyData, gate: Gates) -> Answer:
    return _specialisation(data, gate.of(SUBNETWORK), "Q2", "Subnetworks rely more on in-language data than the full model",
                           "subnetwork", "full")


def q3_sft_changes_specialisation(data: StudyData, gate: Gates) -> Answer:
    """SFT against the subnetworks. The sft variant's TracIn masks each training example's gradient by
    its language's subnetwork: right for the model SFT trained (a language's heads were updated from
    its own batches only), and the reason the statistic includes confinement itself."""
    return _specialisation(data, gate.of(SUBNETWORK, SFT), "Q3", "SFT raises in-language reliance over the subnetworks",
                           "sft", "subnetwork", CONFINEMENT)


def _matrices(data: StudyData, variant: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One seed's size-adjusted Jaccard (J minus its random-mask expectation) and M+, as language x
    language matrices (M+: the mean over t's test examples of the share of proponents from s). A pair
    without J (a mask that keeps no heads) is NaN, never 0: it is left out, not scored as "unlike"."""
    languages = data.languages
    index = {language: i for i, language in enumerate(languages)}
    jaccard = np.full((len(languages), len(languages)), np.nan)
    for (a, b), value in data.jaccard_excess.get(seed, {}).items():
        jaccard[index[a], index[b]] = value
    shares = np.zeros((len(languages), len(languages)))
    counts = np.zeros(len(languages))
    for language, by_train in data.proponents[(variant, None)][seed].values():
        counts[index[language]] += 1
        for train_language, count in by_train.items():
            shares[index[language], index[train_language]] += count / data.k
    return jaccard, shares / np.maximum(counts, 1)[:, None]


def _pair_correlation(jaccard: np.ndarray, shares: np.ndarray) -> tuple[float, int]:
    """Pearson r of J and M+ over the ordered pairs a != b that have J, and how many they are."""
    j, m = stats.off_diagonal(jaccard), stats.off_diagonal(shares)
    kept = np.isfinite(j)
    return (stats.correlation(j[kept], m[kept]) if kept.sum() >= 2 else math.nan), int(kept.sum())


Q4_FEW_PAIRS = 12  # ordered pairs (4 languages) from which Q4's t interval over seeds covered >= 0.93 in the calibration (#36)


def q4_similarity_predicts_influence(data: StudyData, gate: Gates) -> Answer:
    title = "Subnetwork similarity predicts positive cross-language influence"
    name = "Pearson r of J(a, b) minus its random-mask expectation with M+[a, b], full model, mean over seeds"
    reasons: list[str] = []
    languages = tuple(data.languages)
    if "full" not in data.variants or not data.pairs:
        reasons.append("the run lacks subnetworks or the full model's TracIn scores")
        return Answer("Q4", title, name, None, None, {}, reasons, gate.of(SUBNETWORK), lambda v, i: "", languages=languages)
    seeds = sorted(set(data.proponents[("full", None)]) & {int(r["seed"]) for r in data.pairs})
    matrices = {seed: _matrices(data, "full", seed) for seed in seeds}
    correlated = {seed: _pair_correlation(j, m) for seed, (j, m) in matrices.items()}
    defined = [seed for seed in seeds if not math.isnan(correlated[seed][0])]  # NaN: a seed whose matrices are constant
    per_seed = [correlated[seed][0] for seed in defined]
    statistic = float(np.mean(per_seed)) if per_seed else None
    notes: list[str] = []
    details: dict = {}
    estimate = over_seeds_estimate(per_seed, reasons, seeds=defined, notes=notes, details=details)
    count = len(languages)
    pairs = count * (count - 1)
    used = [correlated[seed][1] for seed in seeds]
    no_interval = ""
    if defined and min(used) < Q4_FEW_PAIRS:  # the statistic stays, as a description
        no_interval = f"{min(used)} pairs, fewer than the {Q4_FEW_PAIRS} of 4 languages"
        reasons.append(f"{no_interval}: J is symmetric, so each seed's r rests on {min(used) // 2} J values and spreads over "
                       "[-1, 1], where a t interval over seeds covered 0.905 (3 seeds) and 0.927 (5 seeds) of simulated "
                       "3-language studies (benchmarks/RESULTS.md): no interval and no verdict below 4 languages")
        estimate = None
    for seed, (jaccard, _) in matrices.items():
        absent = [f"{languages[a]}/{languages[b]}" for a, b in zip(*np.nonzero(np.isnan(jaccard))) if a != b]
        if absent:
            reasons.append(f"seed {seed}: {len(absent)} of the {pairs} pairs have no Jaccard (a mask that keeps no heads) and are "
                           f"left out of its correlation: {', '.join(absent)}")
    relabelled = language_tests.matrix_agreement([matrices[seed] for seed in defined]) if defined else None
    raw = np.mean([_raw_jaccard(data, seed) for seed in seeds], axis=0)
    mean_m = np.mean([m for _, m in matrices.values()], axis=0)
    n = {"languages": count, "pairs": min(used, default=0), "seeds": len(seeds)}
    if min(used, default=pairs) < pairs:
        n["pairs_without_jaccard"] = pairs - min(used)
    details.update({"per_seed_r": per_seed, "pairs_per_seed": used,
                    "raw_jaccard_r": clean(stats.correlation(stats.off_diagonal(raw), stats.off_diagonal(mean_m)))})

    def say(verdict: str, interval: str) -> str:
        return (f"Q4 {verdict}: does subnetwork similarity predict cross-language influence? r = {statistic:+.2f} between "
                f"size-adjusted J(a, b) and M+[a, b] of the full model ({interval}; {plural(n['pairs'], 'pair')} in each of "
                f"{plural(n['seeds'], 'seed')}); exploratory: "
                f"raw Jaccard r = {details['raw_jaccard_r']:+.2f}.")

    language_test = LanguageTest(relabelled, "the languages of J (Mantel)", language_tests.one_in_every) if relabelled else None
    return Answer("Q4", title, name, statistic, estimate, n, reasons, gate.of(SUBNETWORK), say, test=SEEDS_TEST, details=details,
                  bounds=(-1.0, 1.0), languages=languages, language_test=language_test, unit="in r", notes=notes,
                  no_interval=no_interval)


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
        return Answer("Q5", title, name, None, None, {}, reasons, gate.of(SFT), lambda v, i: "", details=details,
                      languages=tuple(data.languages))
    difference = {seed: {z: slopes["sft"][seed][z] - slopes["full"][seed][z] for z in slopes["sft"][seed] if z in slopes["full"][seed]}
                  for seed in slopes["sft"] if seed in slopes["full"]}
    notes: list[str] = []
    statistic, estimate, n = crossed_estimate(difference, reasons, notes=notes, details=details)

    def say(verdict: str, interval: str) -> str:
        return (f"Q5 {verdict}: S+ changes by {details['slope_sft']:+.4f} per epoch under SFT and {details['slope_full']:+.4f} under "
                f"full fine-tuning, a difference of {statistic:+.4f} ({interval}; {plural(n['test_examples'], 'test example')} in "
                f"each of {plural(n['seeds'], 'seed')}).")

    return Answer("Q5", title, name, statistic, estimate, {**n, "checkpoints": len(data.checkpoints("full")), "k": data.k}, reasons,
                  gate.of(SFT), say, test=CROSSED_TEST, details=details, languages=tuple(data.languages),
                  random_factors=("seeds", "test examples"), unit="in S+ per epoch", notes=notes)


def related_languages(languages: list[str]) -> dict[str, list[str]]:
    """language -> the other studied languages of its toy family (runners.methods.toy.FAMILIES)."""
    from runners.methods.toy import FAMILIES

    return {a: [b for b in languages if b != a and FAMILIES.get(a) is not None and FAMILIES.get(a) == FAMILIES.get(b)]
            for a in languages}


def families(languages: list[str]) -> list[str | None]:
    """Each studied language's toy family (runners.methods.toy.FAMILIES), None for a language outside them."""
    from runners.methods.toy import FAMILIES

    return [FAMILIES.get(language) for language in languages]


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


def _mean_shares(data: StudyData, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """shares[seed, t, s]: the mean share of the top-k proponents from s over t's test examples that
    every seed scored, per seed (in seed order); examples[t]: how many such test examples t has."""
    by_seed = [examples for _, examples in sorted(data.proponents.get((variant, None), {}).items())]
    common = set.intersection(*(set(examples) for examples in by_seed)) if by_seed else set()
    index = {language: i for i, language in enumerate(data.languages)}
    shares = np.zeros((len(by_seed), len(index), len(index)))
    examples = np.zeros(len(index))
    for test_id in common:
        language = by_seed[0][test_id][0]
        examples[index[language]] += 1
        for seed, seed_examples in enumerate(by_seed):
            for train_language, count in seed_examples[test_id][1].items():
                shares[seed, index[language], index[train_language]] += count / data.k
    return shares / np.maximum(examples, 1)[None, :, None], examples


def p1_planted_families(data: StudyData, gate: Gates) -> Answer:
    """The toy world's families (runners.methods.toy.FAMILIES): are M+ and J higher for related pairs?"""
    title = "The planted language families are recovered"
    name = "M+ from the related language minus the mean M+ from unrelated languages (full model)"
    related = related_languages(data.languages)
    reasons: list[str] = []
    languages = tuple(data.languages)
    if "full" not in data.variants or not any(related.values()):
        reasons.append("needs the full model's TracIn scores and two toy languages of one family")
        return Answer("P1", title, name, None, None, {}, reasons, gate.of(), lambda v, i: "", primary=False, languages=languages)
    by_seed = related_minus_unrelated(data, "full")
    notes: list[str] = []
    details: dict = {}
    statistic, estimate, n = crossed_estimate(by_seed, reasons, notes=notes, details=details)
    relabelled, smallest_p_at = language_tests.planted_families(*_mean_shares(data, "full"), families(data.languages))
    jaccard_seed = []  # size-adjusted J (StudyData.jaccard_excess): raw J rises with mask size, whatever the families
    for seed, excess in sorted(data.jaccard_excess.items()):
        pairs = [(a, b) for a, b in excess if a < b]
        rel = [excess[a, b] for a, b in pairs if b in related[a]]
        unrel = [excess[a, b] for a, b in pairs if b not in related[a]]
        if rel and unrel:
            jaccard_seed.append(float(np.mean(rel) - np.mean(unrel)))
    jaccard = stats.over_seeds(jaccard_seed) if len(set(jaccard_seed)) >= MIN_SEEDS else None
    jaccard_interval = list(jaccard.interval()) if jaccard else None
    short_of = []
    if jaccard_interval is not None and jaccard_interval[0] <= 0:
        short_of.append(f"J: related pairs' size-adjusted Jaccard is not above unrelated pairs' (interval [{jaccard_interval[0]:.3f}, "
                        f"{jaccard_interval[1]:.3f}]): the masks do not show the families")
    details.update({"jaccard_related_minus_unrelated": clean(np.mean(jaccard_seed)) if jaccard_seed else None,
                    "jaccard_interval": jaccard_interval,
                    "related": {a: b for a, b in related.items() if b}})

    def say(verdict: str, interval: str) -> str:
        j = (f"; size-adjusted J is {jaccard.mean:+.3f} higher for related than unrelated pairs ([{jaccard_interval[0]:+.3f}, "
             f"{jaccard_interval[1]:+.3f}])") if jaccard else ""
        return (f"P1 {verdict} (a check of the toy world and TracIn): a test example's top-{data.k} proponents come "
                f"{statistic:+.3f} more from its related language than from an unrelated one ({interval}; "
                f"{plural(n['test_examples'], 'test example')} in each of {plural(n['seeds'], 'seed')}){j}. The families are in "
                "the toy data itself (a shared word order and half the lexicon), so the proponents show them with or without "
                "language modules in the model; only the masks' part speaks of modules.")

    language_test = LanguageTest(relabelled, "the family labels", smallest_p_at) if relabelled else None
    return Answer("P1", title, name, statistic, estimate, {**n, "related_pairs": sum(map(len, related.values())) // 2, "k": data.k},
                  reasons, gate.of(), say, primary=False, test=CROSSED_TEST, short_of=short_of, details=details, languages=languages,
                  random_factors=("seeds", "test examples"), language_test=language_test, unit="in M+ share", notes=notes)


# The questions in report order; P1 is a check of the toy world, outside Holm's family.
QUESTIONS: list[Callable[[StudyData, Gates], Answer]] = [
    q1_subnetworks_exist, q2_subnetworks_rely_on_own_language, q3_sft_changes_specialisation,
    q4_similarity_predicts_influence, q5_dynamics, q6_tracin_predicts_removal, p1_planted_families,
]
