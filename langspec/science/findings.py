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

The parts: `study` loads what the questions read and gates each model, `questions` holds the
questions (QUESTIONS, in report order; a new question is a function `(StudyData, Gates) -> Answer`
appended to it), `verdicts` turns an answer into a finding; this module runs them.
"""

from __future__ import annotations

from dataclasses import replace

import duckdb

from langspec.science import stats
from langspec.science.estimates import crossed_estimate
from langspec.science.questions import QUESTIONS, paired, related_languages, related_minus_unrelated
from langspec.science.study import MULTILINGUAL, Gates, StudyData, gates, load
from langspec.science.verdicts import (ALPHA, CONTRADICTED, GENERAL, INCONCLUSIVE, MIN_SEEDS, POWER_SEEDS, SUPPORTED, Answer,
                                       Finding)

# The names the report, the controls, the benchmarks and the tests read through this module.
__all__ = ["ALPHA", "CONTRADICTED", "GENERAL", "INCONCLUSIVE", "MIN_SEEDS", "MULTILINGUAL", "QUESTIONS", "SUPPORTED", "Answer", "Finding",
           "Gates", "StudyData", "compute", "crossed_estimate", "findings", "gates", "load", "paired", "related_languages",
           "related_minus_unrelated"]


def findings(data: StudyData, power_seeds: tuple[int, ...] = ()) -> list[Finding]:
    """Every question's finding: the gates of the models each uses, then Holm over the primary ones.
    The family's size sets the threshold a language-level test must be able to reach (ALPHA / family)
    for a question's verdict to be about languages in general (Answer.general). power_seeds: seed
    counts to size detectable effects for, besides the run's own and POWER_SEEDS."""
    gate = gates(data)
    answers = [question(data, gate) for question in QUESTIONS]
    family = sum(a.primary for a in answers)
    counts = tuple(sorted({*POWER_SEEDS, *power_seeds}))
    answers = [replace(a, family=family, power_seeds=counts) for a in answers]
    adjusted = stats.holm([a.p_value if a.primary else None for a in answers])
    return [at_point(answer.finish(p), data) for answer, p in zip(answers, adjusted)]


def at_point(finding: Finding, data: StudyData) -> Finding:
    """The finding with its sweep point: at the spec's primary point (analysis.primary_point, named
    before the results) it answers the study; at any other it is labelled exploratory, in its
    sentence and its reasons, with its verdict as computed (no adjustment is made over points)."""
    primary = data.point if data.primary_point is None else data.primary_point
    point = {"label": data.point, "primary_point": primary, "exploratory": data.point != primary}
    if not point["exploratory"]:
        return replace(finding, point=point)
    why = (f"sweep point {data.point} is not the spec's primary point {primary} (analysis.primary_point): "
           "exploratory, with no adjustment over the points")
    return replace(finding, point=point, reasons=[*finding.reasons, why],
                   sentence=f"Exploratory (sweep point {data.point}; the primary point is {primary}): {finding.sentence}")


def compute(con: duckdb.DuckDBPyConnection, run_id: int, point: str, k: int) -> list[Finding]:
    return findings(load(con, run_id, point, k))
