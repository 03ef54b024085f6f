"""The toy languages: deterministic, parallel when asked, related languages share their lexicon,
and every label follows from the concepts."""

from __future__ import annotations

import random

from runners.methods import toy

SIZES = {"train": 300, "validation": 50, "test": 50}
LANGS = ["ka", "kb", "la", "lb", "mi"]


def test_deterministic_and_schema():
    a = toy.generate(LANGS, SIZES, parallel=True, lexicon_overlap=0.5, seed=3)
    b = toy.generate(LANGS, SIZES, parallel=True, lexicon_overlap=0.5, seed=3)
    assert a == b and len(a) == 5 * 400
    assert set(a[0]) == {"example_id", "language", "split", "text_a", "text_b", "label"}
    assert len({r["example_id"] for r in a}) == len(a)
    assert toy.generate(LANGS, SIZES, parallel=True, lexicon_overlap=0.5, seed=4) != a


def test_parallel_items_align_across_languages():
    rows = toy.generate(["ka", "la"], SIZES, parallel=True, lexicon_overlap=0.5, seed=0)
    labels = {(r["split"], r["example_id"][3:]): [] for r in rows}
    for r in rows:
        labels[(r["split"], r["example_id"][3:])].append(r["label"])
    assert all(len(set(v)) == 1 and len(v) == 2 for v in labels.values())
    independent = toy.generate(["ka", "la"], SIZES, parallel=False, lexicon_overlap=0.5, seed=0)
    ka = [r["label"] for r in independent if r["language"] == "ka"]
    la = [r["label"] for r in independent if r["language"] == "la"]
    assert ka != la


def test_related_languages_share_the_configured_share_of_words():
    languages = toy.build_languages(LANGS, lexicon_overlap=0.5, seed=0)

    def shared(a, b):
        x, y = languages[a], languages[b]
        pairs = list(zip(x.nouns + x.verbs + x.adjectives + x.places, y.nouns + y.verbs + y.adjectives + y.places))
        return sum(p == q for p, q in pairs) / len(pairs)

    assert 0.15 < shared("ka", "kb") < 0.4  # both keep a family word with p=0.5: about 0.25
    assert shared("ka", "la") == 0 and shared("ka", "mi") == 0
    full = toy.build_languages(["ka", "kb"], lexicon_overlap=1.0, seed=0)
    assert full["ka"].nouns == full["kb"].nouns
    assert languages["ka"].order == languages["kb"].order != languages["la"].order


def test_labels_follow_from_the_concepts():
    rng = random.Random(0)
    for _ in range(500):
        item = toy.draw_item(rng)
        p, h = item.premise, item.hypothesis
        assert (h.subject, h.verb, h.obj) == (p.subject, p.verb, p.obj)
        assert h.adjective in (None, p.adjective)
        if item.label == toy.ENTAILMENT:
            assert h.negated == p.negated and h.place in (None, p.place)
        elif item.label == toy.CONTRADICTION:
            assert h.negated != p.negated and h.place in (None, p.place)
        else:  # the hypothesis states a place the premise does not
            assert h.negated == p.negated and h.place is not None and h.place != p.place


def test_realisation_follows_word_order():
    ka = toy.build_languages(["ka", "la"], 0.5, 0)
    p = toy.Proposition(subject=0, adjective=None, verb=1, obj=2, negated=True)
    k, l = ka["ka"], ka["la"]
    assert k.realise(p).split() == [k.nouns[0], k.negation, k.verbs[1], k.nouns[2]]  # SVO
    assert l.realise(p).split() == [l.nouns[0], l.nouns[2], l.negation, l.verbs[1]]  # SOV


def test_places_go_first_in_verb_final_languages():
    languages = toy.build_languages(["ka", "la"], 0.5, 0)
    p = toy.Proposition(subject=0, adjective=None, verb=1, obj=2, negated=False, place=3)
    k, l = languages["ka"], languages["la"]
    assert k.realise(p).split() == [k.nouns[0], k.verbs[1], k.nouns[2], k.places[3]]  # SVO + place
    assert l.realise(p).split() == [l.places[3], l.nouns[0], l.nouns[2], l.verbs[1]]  # place + SOV


def test_no_single_word_gives_the_label_away():
    """Negation and places appear under every label: only comparing the sentences decides."""
    rows = toy.generate(["ka"], {"train": 3000}, parallel=True, lexicon_overlap=0.5, seed=0)
    ka = toy.build_languages(["ka"], 0.5, 0)["ka"]
    for word in (ka.negation, *ka.places[:3]):
        labels = {r["label"] for r in rows if word in r["text_b"].split()}
        assert labels == {toy.ENTAILMENT, toy.NEUTRAL, toy.CONTRADICTION}, word
