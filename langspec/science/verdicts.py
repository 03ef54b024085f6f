"""A question's answer before and after its verdict: `Answer` (its statistic, interval and test,
the failed gates of the models it uses) and `Finding` (the verdict, once Holm's adjustment over the
point's primary questions is known), with the estimates every question shares: a t interval over
seeds, and the crossed interval over seeds and test examples."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from langspec.science import stats

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
ALPHA = 0.05  # of every interval (95%) and of Holm's family of primary questions
MIN_SEEDS = 2  # an interval over seeds needs at least two


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
            sentence = self.say(verdict, interval_text(interval, self.p_value, p_adjusted))
        return Finding(self.question, self.title, self.claimed, verdict, clean(self.statistic), self.statistic_name,
                       None if interval is None else [clean(v) for v in interval], clean(self.p_value),
                       clean(p_adjusted), self.primary, self.test, self.n, reasons, sentence, self.details)


def clean(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def interval_text(interval, p: float | None, p_adjusted: float | None) -> str:
    if interval is None:
        return "no interval: one seed"
    adjusted = f", Holm-adjusted {p_adjusted:.3g}" if p_adjusted is not None else ""
    return f"95% interval [{interval[0]:+.3f}, {interval[1]:+.3f}], p = {p:.3g}{adjusted}"


def over_seeds_estimate(per_seed: list[float], reasons: list[str]) -> stats.Estimate | None:
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
