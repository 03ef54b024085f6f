"""The built-in toy multilingual task: synthetic languages, an NLI-like sentence-pair task, offline.

Every language realises one shared concept inventory with its own lexicon and word order. Languages
of one family (ka/kb, la/lb, na/nb; mi stands alone) share a word order and `lexicon_overlap` of
their words, so cross-language transfer is real and stronger inside a family. The label follows
from the concepts, as in NLI: the hypothesis restates the premise, perhaps with less detail
(entailment), negates it (contradiction), or adds a circumstance (a place) the premise does not
state (neutral). Negation and places can sit in either sentence, so the model must compare the
two sentences rather than spot one word: a negated hypothesis of a negated premise is entailment,
and a premise's own place repeated in the hypothesis is not new information.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2
LABELS = ("entailment", "neutral", "contradiction")

N_NOUNS, N_VERBS, N_ADJECTIVES, N_PLACES = 40, 16, 10, 12
NEGATED_PREMISE_SHARE = 0.3
PLACED_PREMISE_SHARE = 0.3

# Word order per family, and which side of the noun an adjective goes. Related languages agree.
FAMILIES = {"ka": "k", "kb": "k", "la": "l", "lb": "l", "mi": "m", "na": "n", "nb": "n"}
ORDERS = {"k": "SVO", "l": "SOV", "m": "VSO", "n": "OSV"}
ADJECTIVE_AFTER_NOUN = {"k": False, "l": True, "m": True, "n": False}
SYLLABLES = {
    "k": ["ka", "ko", "ki", "ta", "to", "ti", "ra", "ro"],
    "l": ["la", "lu", "le", "ma", "mu", "me", "sa", "su"],
    "m": ["mi", "ni", "pi", "mo", "no", "po", "wi", "wo"],
    "n": ["na", "ne", "da", "de", "ga", "ge", "ba", "be"],
}


@dataclass(frozen=True)
class Proposition:
    subject: int
    adjective: int | None  # describes the subject
    verb: int
    obj: int
    negated: bool
    place: int | None = None  # "... in the market": a circumstance of the event


@dataclass(frozen=True)
class Item:
    premise: Proposition
    hypothesis: Proposition
    label: int


@dataclass(frozen=True)
class Language:
    code: str
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    places: tuple[str, ...]
    negation: str
    order: str
    adjective_after_noun: bool

    def realise(self, p: Proposition) -> str:
        subject = [self.nouns[p.subject]]
        if p.adjective is not None:
            adjective = self.adjectives[p.adjective]
            subject = subject + [adjective] if self.adjective_after_noun else [adjective] + subject
        verb = [self.negation, self.verbs[p.verb]] if p.negated else [self.verbs[p.verb]]
        parts = {"S": subject, "V": verb, "O": [self.nouns[p.obj]]}
        words = [word for slot in self.order for word in parts[slot]]
        if p.place is not None:  # verb-final languages put the place first, the others last
            words = [self.places[p.place], *words] if self.order.endswith("V") else [*words, self.places[p.place]]
        return " ".join(words)


def build_languages(codes: list[str], lexicon_overlap: float, seed: int) -> dict[str, Language]:
    """Lexicons for `codes`; each family first draws a shared lexicon, then each member replaces
    a (1 - lexicon_overlap) share of it with words of its own."""
    rng = random.Random(f"lexicon-{seed}")
    used: set[str] = set()

    def new_word(family: str) -> str:
        while True:
            word = "".join(rng.choice(SYLLABLES[family]) for _ in range(rng.randint(2, 3)))
            if word not in used:
                used.add(word)
                return word

    sizes = {"nouns": N_NOUNS, "verbs": N_VERBS, "adjectives": N_ADJECTIVES, "places": N_PLACES, "negation": 1}
    family_lexicon = {
        family: {kind: [new_word(family) for _ in range(n)] for kind, n in sizes.items()}
        for family in sorted({FAMILIES[c] for c in codes})
    }
    languages = {}
    for code in codes:  # iteration order fixed by the caller's list; rng draws depend on it
        family = FAMILIES[code]
        lexicon = {
            kind: [w if rng.random() < lexicon_overlap else new_word(family) for w in words]
            for kind, words in family_lexicon[family].items()
        }
        languages[code] = Language(
            code=code,
            nouns=tuple(lexicon["nouns"]),
            verbs=tuple(lexicon["verbs"]),
            adjectives=tuple(lexicon["adjectives"]),
            places=tuple(lexicon["places"]),
            negation=lexicon["negation"][0],
            order=ORDERS[family],
            adjective_after_noun=ADJECTIVE_AFTER_NOUN[family],
        )
    return languages


def draw_item(rng: random.Random) -> Item:
    subject, obj = rng.sample(range(N_NOUNS), 2)
    adjective = rng.randrange(N_ADJECTIVES) if rng.random() < 0.5 else None
    place = rng.randrange(N_PLACES) if rng.random() < PLACED_PREMISE_SHARE else None
    negated = rng.random() < NEGATED_PREMISE_SHARE
    premise = Proposition(subject, adjective, rng.randrange(N_VERBS), obj, negated, place)
    label = rng.randrange(3)
    # Whatever the label, the hypothesis drops the adjective half of the time and the premise's
    # place half of the time (less detail is still entailed), so length is no cue.
    kept_adjective = premise.adjective if rng.random() < 0.5 else None
    kept_place = premise.place if rng.random() < 0.5 else None
    if label == ENTAILMENT:
        hypothesis = Proposition(subject, kept_adjective, premise.verb, obj, negated, kept_place)
    elif label == CONTRADICTION:
        hypothesis = Proposition(subject, kept_adjective, premise.verb, obj, not negated, kept_place)
    else:
        new_place = rng.choice([n for n in range(N_PLACES) if n != premise.place])
        hypothesis = Proposition(subject, kept_adjective, premise.verb, obj, negated, new_place)
    return Item(premise, hypothesis, label)


def generate(
    codes: list[str], sizes: dict[str, int], *, parallel: bool, lexicon_overlap: float, seed: int
) -> list[dict]:
    """Rows of the common schema (example_id, language, split, text_a, text_b, label)."""
    languages = build_languages(codes, lexicon_overlap, seed)
    rows = []
    for split, n in sizes.items():
        shared_items = _items(n, f"items-{seed}-{split}") if parallel else None
        for code in codes:
            items = shared_items or _items(n, f"items-{seed}-{split}-{code}")
            for index, item in enumerate(items):
                language = languages[code]
                rows.append(
                    {
                        "example_id": f"{code}-{split}-{index:06d}",
                        "language": code,
                        "split": split,
                        "text_a": language.realise(item.premise),
                        "text_b": language.realise(item.hypothesis),
                        "label": item.label,
                    }
                )
    return rows


def _items(n: int, seed: str) -> list[Item]:
    rng = random.Random(seed)
    return [draw_item(rng) for _ in range(n)]
