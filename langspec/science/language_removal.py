"""Q6, the ground truth from retraining: does TracIn's predicted effect of removing a language go with
the effect the ablation stage measured, over the pairs t != s; its diagonal and the languages' main
effects reported apart."""

from __future__ import annotations

import math

import numpy as np

from langspec.science import language_tests, stats
from langspec.science.estimates import SEEDS_TEST, over_seeds_estimate
from langspec.science.study import ABLATION, Gates, StudyData
from langspec.science.verdicts import Answer, LanguageTest, clean, plural


def q6_tracin_predicts_removal(data: StudyData, gate: Gates) -> Answer:
    """Ground truth from retraining (the ablation stage): does TracIn's predicted group effect P[t, s]
    go with the measured effect E[t, s] of leaving language s out of fine-tuning, for t != s? The
    diagonal t = s (a language's own removal) is reported apart: a large diagonal that P and E share
    would make the correlation over all cells high whatever the pairs do."""
    title = "TracIn predicts the effect of removing a language"
    name = "Pearson r of TracIn's P[t, s] with the measured E[t, s] over the pairs t != s, full model, mean over seeds"
    chosen = {(r.variant, r.predictor, r.method, r.pairs): r for r in data.validity}
    variant = "full" if any(key[0] == "full" for key in chosen) else next(iter(chosen), (None,))[0]
    main = chosen.get((variant, "tracin", "pearson", "off_diagonal"))
    reasons: list[str] = []
    languages = tuple(data.languages)
    if main is None:
        reasons.append("the run has no ablation with TracIn scores (ablation.enabled: false)")
        return Answer("Q6", title, name, None, None, {}, reasons, gate.of(ABLATION), lambda v, i: "", languages=languages)
    notes: list[str] = []
    details: dict = {}
    estimate = over_seeds_estimate(list(main.per_seed), reasons, notes=notes, details=details)
    details.update({f"{r.predictor}/{r.method}/{r.pairs}": {"r": clean(r.statistic), "interval": [clean(r.low), clean(r.high)],
                                                           "p_value": clean(r.p), "p_rows_permuted": r.p_rows, "pairs": r.n}
                    for r in data.validity if r.variant == variant})
    seeds = data.validity_data.get(variant, [])
    grids = [seed.grid("tracin") for seed in seeds]
    details.update(_diagonal_and_main_effects(grids, chosen.get((variant, "tracin", "pearson", "all"))))
    relabelled = None
    if seeds and all(seed.test_languages == seed.ablated == seeds[0].test_languages for seed in seeds):
        languages = tuple(seeds[0].test_languages)
        relabelled = language_tests.matrix_agreement([(effect, predicted) for predicted, effect in grids])
    elif seeds:
        notes.append("the ablation left out other languages than the test languages: no test over relabellings of the languages")
    n = {"pairs_per_seed": main.n, "seeds": main.seeds}

    def say(verdict: str, interval: str) -> str:
        diagonal, main_effects = details["diagonal"]["r_all_pairs"], details["main_effects"]
        with_diagonal = f"with the diagonal t = s, r = {diagonal:+.2f}; " if diagonal is not None else ""
        split = (f"; of r, {main_effects['r_from_main_effects']:+.2f} comes from the test and ablated languages' main effects "
                 f"and {main_effects['r_from_pairs']:+.2f} from the pairs themselves" if main_effects["r_from_pairs"] is not None else "")
        return (f"Q6 {verdict}: TracIn's predicted effect P[t, s] correlates with the measured effect of removing s from "
                f"fine-tuning at r = {main.statistic:+.2f} over the pairs t ≠ s ({interval}; {plural(main.n, 'pair')} in each of "
                f"{plural(main.seeds, 'seed')}, {variant} model); exploratory: {with_diagonal}with E's rows permuted, "
                f"p = {main.p_rows:.3f}{split}.")

    language_test = LanguageTest(relabelled, "the languages of E (Mantel)", language_tests.one_in_every) if relabelled else None
    return Answer("Q6", title, name, main.statistic, estimate, n, reasons, gate.of(ABLATION), say, test=SEEDS_TEST, details=details,
                  bounds=(-1.0, 1.0), languages=languages, language_test=language_test, unit="in r", notes=notes)


def _diagonal_and_main_effects(grids: list[tuple[np.ndarray, np.ndarray]], all_pairs) -> dict:
    """Q6's diagonal and main effects, means over seeds. diagonal: r over every cell (t = s included),
    the mean P and E on the diagonal and off it. main_effects: each seed's r over the cells t != s
    splits exactly into a part from the languages' main effects (P and E each fitted by least squares
    as row + column levels over those cells) and a part from what is left, the pairs' own
    (Sum (P - mean)(E - mean) = Sum of the fits' products + Sum of the residuals' products: the
    residuals are orthogonal to every row and column level); rows_r and columns_r are the
    correlations of the test languages' and the ablated languages' mean P and E."""
    parts = {"r_from_main_effects": [], "r_from_pairs": [], "pairs_r": [], "rows_r": [], "columns_r": []}
    diagonal = {"p_diagonal": [], "e_diagonal": [], "p_off_diagonal": [], "e_off_diagonal": []}
    for predicted, effect in grids:
        rows, columns = predicted.shape
        if rows != columns or rows < 3:
            continue
        off = ~np.eye(rows, dtype=bool)
        cells = np.argwhere(off)
        design = np.zeros((len(cells), rows + columns))
        design[np.arange(len(cells)), cells[:, 0]] = 1
        design[np.arange(len(cells)), rows + cells[:, 1]] = 1
        p, e = predicted[off], effect[off]
        fitted_p = design @ np.linalg.lstsq(design, p, rcond=None)[0]
        fitted_e = design @ np.linalg.lstsq(design, e, rcond=None)[0]
        scale = math.sqrt(float(((p - p.mean()) ** 2).sum() * ((e - e.mean()) ** 2).sum()))
        if scale == 0:
            continue
        parts["r_from_main_effects"].append(float(((fitted_p - p.mean()) * (fitted_e - e.mean())).sum()) / scale)
        parts["r_from_pairs"].append(float(((p - fitted_p) * (e - fitted_e)).sum()) / scale)
        parts["pairs_r"].append(stats.correlation(p - fitted_p, e - fitted_e))
        parts["rows_r"].append(stats.correlation(np.where(off, predicted, 0).sum(1), np.where(off, effect, 0).sum(1)))
        parts["columns_r"].append(stats.correlation(np.where(off, predicted, 0).sum(0), np.where(off, effect, 0).sum(0)))
        diagonal["p_diagonal"].append(float(np.diag(predicted).mean()))
        diagonal["e_diagonal"].append(float(np.diag(effect).mean()))
        diagonal["p_off_diagonal"].append(float(p.mean()))
        diagonal["e_off_diagonal"].append(float(e.mean()))
    mean = lambda values: clean(np.nanmean(values)) if values and not np.isnan(values).all() else None  # noqa: E731
    return {"diagonal": {"r_all_pairs": clean(all_pairs.statistic) if all_pairs else None, **{k: mean(v) for k, v in diagonal.items()}},
            "main_effects": {k: mean(v) for k, v in parts.items()}}
