"""A question's answer before and after its verdict: `Answer` (its statistic, interval and test,
the failed gates of the models it uses, its language-level test) and `Finding` (the verdict, once
Holm's adjustment over the point's primary questions is known). The estimates an Answer carries
(a t interval over seeds, the crossed interval over seeds and test examples): langspec.science.estimates.

Every finding names its estimand: the population its claim is about and the random factors its
test treats as sampled. Seeds and test examples replicate training and test data, not languages:
a seed-based interval speaks of *these* languages. A claim about *languages in general* needs a
test over relabellings of the languages (langspec.science.language_tests), which becomes the
primary test where the study has enough languages for it to reach significance after Holm's
adjustment; below that it is reported beside the seed-based one, with the number of languages it
would take. Every finding also says what its design could detect (`power`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property

from langspec.science import relabelling, stats

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
ALPHA = 0.05  # of every interval (95%) and of Holm's family of primary questions
MIN_SEEDS = 2  # an interval over seeds needs at least two
POWER = 0.8  # of the minimum detectable effects findings report
POWER_SEEDS = (5, 10)  # seed counts the minimum detectable effect is also given for, besides the run's own
IDENTICAL_SEEDS = "the seeds agree exactly: no interval"  # zero variance is no certainty
GENERAL = "languages in general"


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
    estimand: dict = field(default_factory=dict)  # {"population": ..., "random_factors": [...]}: what the verdict is about
    power: dict = field(default_factory=dict)  # what the design could detect: minimum detectable effects, the language test's reach
    point: dict = field(default_factory=dict)  # {"label", "primary_point", "exploratory"}: the sweep point, and whether it was named in advance

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LanguageTest:
    """A question's test over relabellings of its languages (langspec.science.language_tests)."""

    result: relabelling.RelabellingTest
    relabelled: str  # what a relabelling moves, in words: "the masks' languages"
    smallest_p_at: Callable[[int], float]  # its smallest attainable p with that many languages


@dataclass(frozen=True)
class Answer:
    """A question's numbers before its verdict: `finish` gives the Finding once Holm's adjustment
    over the point's primary questions is known."""

    question: str
    title: str
    statistic_name: str
    statistic: float | None  # the point estimate, also where there is no interval (one seed)
    estimate: stats.Estimate | None  # its seed-based interval and test: about these languages
    n: dict
    reasons: list[str]  # why there is no estimate, or what else the verdict rests on
    failed: list[str]  # the failed gates of the models the question uses
    say: Callable[[str, str], str]  # (verdict and population, e.g. "supported among ka and la"; interval text) -> the sentence
    claimed: str = "greater"
    primary: bool = True
    test: str | None = None
    details: dict = field(default_factory=dict)
    short_of: list[str] = field(default_factory=list)  # reasons that keep `supported` from an interval on the claimed side
    bounds: tuple[float, float] = (-math.inf, math.inf)  # what the statistic can be (a correlation: [-1, 1]); the interval is cut to it
    languages: tuple[str, ...] = ()  # the languages the statistic is over: the population of "these languages"
    random_factors: tuple[str, ...] = ("seeds",)  # what the seed-based estimate treats as sampled
    language_test: LanguageTest | None = None  # the claim about languages in general (Q1, Q4, Q6, P1)
    unit: str = ""  # of the statistic, for what the design could detect: "accuracy"
    notes: list[str] = field(default_factory=list)  # diagnostics that leave the verdict as it is (a seed that looks failed)
    family: int = 1  # primary questions in Holm's family (findings.findings sets it): Holm's first step tests at ALPHA / family
    power_seeds: tuple[int, ...] = POWER_SEEDS  # seed counts `power` sizes effects for, besides the run's own (`plan` adds the spec's)
    no_interval: str = ""  # why a question with seeds enough has no interval (Q4 below 4 languages), in a few words

    @property
    def threshold(self) -> float:
        """The p below which Holm's adjustment lets a verdict stand whatever the other questions give."""
        return ALPHA / self.family if self.primary else ALPHA

    @property
    def languages_needed(self) -> int | None:
        """The fewest languages with which the language test can reach p < threshold."""
        test = self.language_test
        return None if test is None else relabelling.languages_needed(test.smallest_p_at, self.threshold)

    @property
    def general(self) -> bool:
        """Whether the verdict is about languages in general: the study has enough languages for its
        language test to reach significance after Holm's adjustment. Else it is about these languages."""
        test = self.language_test
        return test is not None and test.result.smallest_p < self.threshold

    @cached_property  # a root search: computed once
    def p_value(self) -> float | None:
        if self.failed:
            return None
        if self.general:
            return clean(self.language_test.result.p_value)
        return None if self.estimate is None else self.estimate.p_value()

    def estimand(self) -> dict:
        """What the verdict is about: the population its claim speaks of and what its test treats as sampled."""
        if self.general:
            return {"population": GENERAL, "random_factors": ["languages", *self.random_factors]}
        return {"population": self.these_languages(), "random_factors": list(self.random_factors)}

    def these_languages(self) -> str:
        return f"these {len(self.languages)} languages" + (f": {', '.join(self.languages)}" if self.languages else "")

    def finish(self, p_adjusted: float | None) -> Finding:
        general = self.general
        interval = None
        if self.estimate is not None and not general:  # cut to what the statistic can be: it covers no less, and says nothing impossible
            low, high = self.estimate.interval()
            interval = [max(low, self.bounds[0]), min(high, self.bounds[1])]
        reasons = list(self.failed) + list(self.reasons)
        verdict = INCONCLUSIVE
        if general and not self.failed:
            verdict = self._by_relabelling(p_adjusted, reasons)
        elif interval is not None and not self.failed:
            above, below = interval[0] > 0, interval[1] < 0
            if above or below:
                verdict = SUPPORTED if above == (self.claimed == "greater") else CONTRADICTED
            else:
                reasons.append("the 95% interval includes 0")  # its numbers are in the sentence, once
            if verdict == CONTRADICTED:
                reasons.append("the 95% interval lies on the side opposite to the claim")
            # What takes a verdict back goes first (after any failed gate): the reason the summary shows.
            if verdict != INCONCLUSIVE and p_adjusted is not None and p_adjusted >= ALPHA:
                reasons.insert(len(self.failed), f"Holm's adjusted p = {p_adjusted:.3f} over the primary questions is not below {ALPHA}")
                verdict = INCONCLUSIVE
        if verdict == SUPPORTED and self.short_of:
            reasons[len(self.failed):len(self.failed)] = self.short_of
            verdict = INCONCLUSIVE
        reasons += self.notes
        power = self._power()
        sentence = self._sentence(verdict, interval, p_adjusted, power["detectable"])
        details = dict(self.details)
        if self.language_test is not None:
            details["language_test"] = self._language_test_details()
        if general and self.estimate is not None:
            low, high = self.estimate.interval()
            details["these_languages"] = {"population": self.these_languages(), "random_factors": list(self.random_factors),
                                          "interval": [clean(max(low, self.bounds[0])), clean(min(high, self.bounds[1]))],
                                          "p_value": clean(self.estimate.p_value()), "test": self.test}
        return Finding(self.question, self.title, self.claimed, verdict, clean(self.statistic), self.statistic_name,
                       None if interval is None else [clean(v) for v in interval], clean(self.p_value),
                       clean(p_adjusted), self.primary, RELABELLING_TEST if general else self.test, self.n, reasons, sentence,
                       details, self.estimand(), power)

    def _by_relabelling(self, p_adjusted: float | None, reasons: list[str]) -> str:
        """The verdict of a claim about languages in general: the relabelling test's p (Holm-adjusted
        for a primary question) below ALPHA, on the claimed side of 0 or the other."""
        result = self.language_test.result
        p = p_adjusted if p_adjusted is not None else self.p_value
        if p is None or self.statistic is None:
            reasons.append("the relabelling test has no p-value: a side is constant under every relabelling")
            return INCONCLUSIVE
        which = "Holm's adjusted p" if p_adjusted is not None else "p"
        if p >= ALPHA or self.statistic == 0:
            reasons.append(f"over {result.permutations} relabellings of the {result.languages} languages, {which} = {p:.3g} "
                           f"is not below {ALPHA}")
            return INCONCLUSIVE
        if (self.statistic > 0) == (self.claimed == "greater"):
            return SUPPORTED
        reasons.append(f"over {result.permutations} relabellings of the {result.languages} languages, {which} = {p:.3g}, "
                       "on the side opposite to the claim")
        return CONTRADICTED

    def _sentence(self, verdict: str, interval, p_adjusted: float | None, detectable: str) -> str:
        # Every sentence opens with its label ("Q1 inconclusive") and says each number once; the gates
        # that failed and the other reasons are in `reasons`, which the report shows beside it.
        if self.failed:
            return (f"{self.question} {verdict}: cannot be answered, as {plural(len(self.failed), 'sanity check')} of the models "
                    f"it uses failed. Power: {detectable}.")
        if self.statistic is None:
            return f"{self.question} {verdict}: {self.reasons[0]}. Power: {detectable}."  # detectable: "cannot be answered ..."
        population = f"for {GENERAL}" if self.general else f"among {and_list(self.languages)}" if self.languages else ""
        if self.general:
            result = self.language_test.result
            adjusted = f", Holm-adjusted {p_adjusted:.3g}" if p_adjusted is not None else ""
            tested = (f"relabelling {self.language_test.relabelled}: p = {result.p_value:.3g} over {result.permutations} "
                      f"relabellings{adjusted}")
        else:
            why = self.no_interval or ("the seeds agree exactly" if IDENTICAL_SEEDS in self.reasons else "one seed")
            tested = interval_text(interval, self.p_value, p_adjusted, why)
        sentence = self.say(f"{verdict} {population}".strip(), tested)
        sentence += self._language_sentence()
        if verdict == INCONCLUSIVE:
            sentence += f" Power: {detectable}."
        return sentence

    def _language_sentence(self) -> str:
        test = self.language_test
        if test is None:
            return ""
        result = test.result
        if self.general:
            if self.estimate is None:
                return ""
            low, high = self.estimate.interval()
            return (f" Among these {result.languages} languages alone (seeds as the replications): 95% interval "
                    f"[{max(low, self.bounds[0]):+.3f}, {min(high, self.bounds[1]):+.3f}].")
        after = " after Holm's adjustment" if self.primary and self.family > 1 else ""
        needed = self.languages_needed
        takes = f"; it takes at least {needed}" if needed is not None else ""
        return (f" Languages in general: relabelling {test.relabelled} gives p = {result.p_value:.3g} ({result.permutations} "
                f"relabellings, smallest attainable p {result.smallest_p:.3g}); with {result.languages} languages no claim about "
                f"languages in general can reach p < {ALPHA}{after}{takes}.")

    def _language_test_details(self) -> dict:
        result = self.language_test.result
        return {"statistic": clean(result.statistic), "p_value": clean(result.p_value), "p_relabelling": clean(result.p_relabelling),
                "seeds_sd": result.seeds_sd, "relabelled": self.language_test.relabelled,
                "permutations": result.permutations, "exact": result.exact, "smallest_p": result.smallest_p,
                "languages": result.languages, "languages_needed": self.languages_needed, "primary": self.general}

    def _power(self) -> dict:
        """What the design could detect: `seeds` maps the seeds used and power_seeds to the minimum
        detectable effect at POWER at each of `alpha` (ALPHA, and Holm's first-step ALPHA / family:
        the threshold a verdict meets lies between, as it depends on the other questions' p-values),
        from the observed variance components (Estimate.at_seeds: the seeds' part shrinks with
        seeds, the test examples' part stays); for a language test, its smallest attainable p and the
        languages it needs; `detectable` says it in words."""
        alphas = [ALPHA, self.threshold]
        power: dict = {"power": POWER, "alpha": alphas, "seeds": None, "unit": self.unit, "language_test": None}
        if self.language_test is not None:
            result = self.language_test.result
            power["language_test"] = {"languages": result.languages, "smallest_p": result.smallest_p,
                                      "languages_needed": self.languages_needed}
        estimate, why = self.estimate, None
        if self.failed:
            why = "a sanity gate failed"
        elif self.statistic is None:
            why = "the question cannot be answered from this run"
        elif self.no_interval:
            why = f"{self.no_interval}, there is no interval"
        elif IDENTICAL_SEEDS in self.reasons:
            why = "the seeds agree exactly, so there is no variance to size an effect against"
        elif estimate is None or estimate.seeds is None:
            why = "one seed gives no variance to size an effect against; two or more seeds would"
        if why is not None:
            power["detectable"] = f"not detectable with this design: {why}"
            return power
        counts = sorted({estimate.seeds, *self.power_seeds})
        limit = max(abs(b) for b in self.bounds)

        def detectable(seeds: int, alpha: float) -> float | None:  # None: beyond what the statistic can be (a correlation above 1)
            size = clean(estimate.at_seeds(seeds).minimum_detectable(alpha, POWER))
            return None if size is not None and size >= limit else size

        table = {str(s): [detectable(s, a) for a in alphas] for s in counts}
        power["seeds"] = table
        power["detectable"] = self._detectable(table, estimate.seeds)
        return power

    def _detectable(self, table: dict, seeds: int) -> str:
        """E.g. "could detect ≥ 0.033 accuracy at 80% power and α = 0.05 (≥ 0.074 at Holm's strictest
        α = 0.05/6); 5 seeds would detect ≥ 0.018 (0.028), 10 seeds ≥ 0.011 (0.014)"."""
        limit = max(abs(b) for b in self.bounds)
        unit = f" {self.unit}" if self.unit else ""
        strict = self.threshold < ALPHA

        def size(values: list) -> str | None:  # "≥ low (high)": at ALPHA (at Holm's strictest threshold)
            low, high = (None if v is None or v >= limit else v for v in values)
            if low is None:
                return None
            return f"≥ {low:.2g}" + (f" ({'nothing' if high is None else f'{high:.2g}'})" if strict else "")

        low, high = table[str(seeds)]
        if size([low, high]) is None:
            text = f"not detectable with this design at {seeds} seeds (80% power, α = {ALPHA})"
        else:
            at_strict = "nothing" if high is None or high >= limit else f"≥ {high:.2g}"
            text = f"could detect ≥ {low:.2g}{unit} at 80% power and α = {ALPHA}"
            text += f" ({at_strict} at Holm's strictest α = {ALPHA}/{self.family})" if strict else ""
        more = [f"{s} seeds {size(v) or 'nothing'}" for s, v in table.items() if int(s) > seeds]
        if more:
            text += "; " + more[0].replace(" seeds ", " seeds would detect ", 1) + "".join(f", {m}" for m in more[1:])
        if self.general:
            result = self.language_test.result
            text = (f"among these languages it {text}; for languages in general, {result.languages} languages give a smallest "
                    f"attainable p of {result.smallest_p:.2g}")
        return text


def plural(number: int, noun: str) -> str:
    """'1 seed', '3 seeds', '1 test example'."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def and_list(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def clean(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def interval_text(interval, p: float | None, p_adjusted: float | None, why: str = "one seed") -> str:
    if interval is None:
        return f"no interval: {why}"
    adjusted = f", Holm-adjusted {p_adjusted:.3g}" if p_adjusted is not None else ""
    return f"95% interval [{interval[0]:+.3f}, {interval[1]:+.3f}], p = {p:.3g}{adjusted}"


RELABELLING_TEST = ("test over relabellings of the languages (every one up to 8 languages, else 9,999 sampled): two-sided, "
                    "one relabelling for every seed, with the seeds' part that moves with the observed labels added as a t "
                    "variate (seeds - 1 df)")
