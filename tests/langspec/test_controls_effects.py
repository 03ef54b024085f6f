"""Recovery by ablation effect (controls.json's `recovery_by_effects`): on a hand-built store, each
language's heads with the largest loss increase, as many as its planted set holds, against that set,
minus the Jaccard of random sets of those sizes counted by enumerating every set; and through the
pipeline, beside the pruned masks' recovery, in tests/langspec/test_controls.py."""

from __future__ import annotations

import itertools
import json

import duckdb
import pytest

from langspec.science import controls
from store.migrations import schema_sql
from store.queries import run_named

LAYERS, HEADS = 2, 3
GRID = [(layer, head) for layer in range(LAYERS) for head in range(HEADS)]
SEEDS = (0, 1)
PLANTED = {"ka": {(0, 0), (1, 1)}, "la": {(0, 2), (1, 0), (1, 2)}}  # sets of different sizes


def random_jaccard(planted: int, other: int) -> float:
    """E J(fixed set of `planted` heads, a uniformly random set of `other`), over every such set."""
    fixed = set(range(planted))
    drawn = [set(c) for c in itertools.combinations(range(len(GRID)), other)]
    return sum(len(fixed & d) / len(fixed | d) for d in drawn) / len(drawn)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def add_task(con, key, stage, params, inputs):
    con.execute("INSERT INTO tasks (run_id, task_key, name, stage, params, inputs, outcome) VALUES (1, ?, ?, ?, ?, ?, 'ran')",
                [key, key, stage, json.dumps(params), json.dumps(inputs)])
    con.execute("INSERT INTO points VALUES (1, '', ?)", [key])


def store(top: dict[tuple[int, str], set], pruned_as_top: bool = False) -> duckdb.DuckDBPyConnection:
    """A planted run whose head effects rank `top[seed, language]` first (and, with pruned_as_top, whose
    pruned masks are those sets)."""
    con = duckdb.connect()
    con.execute(schema_sql())
    con.execute("INSERT INTO runs (run_id, status) VALUES (1, 'completed')")
    for seed in SEEDS:
        add_task(con, f"ft{seed}", "finetune", {"seed": seed, "planted": {"overlap": 0.0}}, {"data": "data"})
        add_task(con, f"he{seed}", "head_effects", {"seed": seed}, {"data": "data", "finetune": f"ft{seed}"})
        for language, planted in PLANTED.items():
            loss_all = 0.5 + seed + len(language)  # its own level per seed and language
            for i, (layer, head) in enumerate(GRID):
                effect = (1.0 if (layer, head) in top[seed, language] else -0.2) + 0.01 * i
                con.execute("INSERT INTO planted_heads VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [f"ft{seed}", seed, language, language[0], layer, head, (layer, head) in planted])
                con.execute("INSERT INTO head_effects VALUES (?, ?, ?, 'validation', 9, ?, ?, ?, ?)",
                            [f"he{seed}", seed, language, layer, head, loss_all, loss_all + effect])
            if pruned_as_top:
                add_task(con, f"prune{seed}{language}", "prune", {"seed": seed, "language": language, "prune": {"threshold": 0.95}},
                         {"data": "data", "finetune": f"ft{seed}"})
                con.executemany("INSERT INTO subnetworks VALUES (?, ?, ?, ?, ?, ?, 0.0)",
                                [[f"prune{seed}{language}", seed, language, l, h, (l, h) in top[seed, language]] for l, h in GRID])
    return con


def expected(top: dict[tuple[int, str], set]) -> tuple[float, float, float]:
    """(recovery, J, random J) by hand: per seed the mean over languages, then the mean over seeds."""
    per_seed = [(sum(jaccard(top[s, lang], PLANTED[lang]) for lang in PLANTED) / len(PLANTED),
                 sum(random_jaccard(len(PLANTED[lang]), len(top[s, lang])) for lang in PLANTED) / len(PLANTED)) for s in SEEDS]
    j = sum(p[0] for p in per_seed) / len(SEEDS)
    e = sum(p[1] for p in per_seed) / len(SEEDS)
    return j - e, j, e


EQUAL = {(s, lang): set(planted) for s in SEEDS for lang, planted in PLANTED.items()}
DISJOINT = {(s, lang): set(sorted(set(GRID) - planted)[: len(planted)]) for s in SEEDS for lang, planted in PLANTED.items()}
MIXED = {(0, "ka"): {(0, 0), (0, 1)}, (0, "la"): set(PLANTED["la"]),
         (1, "ka"): set(PLANTED["ka"]), (1, "la"): {(0, 2), (0, 0), (0, 1)}}


def test_top_heads_equal_to_the_planted_sets_recover_one_minus_the_random_jaccard():
    found = controls._recovery_by_effects(store(EQUAL), 1, "")
    chance = (random_jaccard(2, 2) + random_jaccard(3, 3)) / 2
    assert found["value"] == pytest.approx(1 - chance) and found["jaccard"] == 1.0
    assert found["random"] == pytest.approx(chance) and found["interval"] == pytest.approx([1 - chance] * 2)  # no spread over seeds
    assert found["n"] == {"seeds": 2, "languages": 2} and found["interval_vs_0"] == "above 0"


def test_top_heads_disjoint_from_the_planted_sets_recover_minus_the_random_jaccard():
    assert all(not (DISJOINT[key] & PLANTED[key[1]]) for key in DISJOINT)
    found = controls._recovery_by_effects(store(DISJOINT), 1, "")
    chance = (random_jaccard(2, 2) + random_jaccard(3, 3)) / 2
    assert found["value"] == pytest.approx(-chance) and found["jaccard"] == 0.0
    assert found["interval_vs_0"] == "below 0"


def test_partial_overlaps_are_averaged_over_languages_then_seeds():
    found = controls._recovery_by_effects(store(MIXED), 1, "")
    value, j, e = expected(MIXED)
    assert (found["value"], found["jaccard"], found["random"]) == pytest.approx((value, j, e))
    assert value == pytest.approx(((1 / 3 + 1) / 2 + (1 + 1 / 5) / 2) / 2 - e)  # the Jaccards by hand
    low, high = found["interval"]
    assert low < value < high


def test_it_is_aggregated_as_the_pruned_masks_recovery_is():
    # Pruned masks equal to the top heads: the two measures see the same sets, so every number agrees.
    con = store(MIXED, pruned_as_top=True)
    assert controls._recovery_by_effects(con, 1, "") == controls._recovery(con, 1, "")


def test_equal_effects_go_to_the_earlier_heads():
    con = store(EQUAL)
    con.execute("UPDATE head_effects SET loss_without = loss_all WHERE seed = 0 AND language = 'la'")  # every effect 0
    rows = {(r["seed"], r["language"]): r for r in run_named(con, "planted_recovery_by_effects", run_id=1, point="").to_pylist()}
    first = {(0, 0), (0, 1), (0, 2)}  # the first three heads; the last three would give 1/2
    assert rows["0", "la"]["jaccard"] == pytest.approx(jaccard(first, PLANTED["la"])) == pytest.approx(1 / 5)
    assert (rows["0", "la"]["top"], rows["0", "la"]["planted"], rows["0", "la"]["heads"]) == (3, 3, 6)
    assert rows["1", "la"]["jaccard"] == rows["0", "ka"]["jaccard"] == 1.0


def test_no_head_effects_no_measure():
    con = store(EQUAL)
    con.execute("DELETE FROM head_effects")
    assert controls._recovery_by_effects(con, 1, "") is None
    con.execute("DROP TABLE head_effects")  # a store no langspec with the stage has written to
    assert controls._recovery_by_effects(con, 1, "") is None
