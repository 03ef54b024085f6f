"""Influence validity on a hand-built store: TracIn's predicted effect P[t, s], the measured effect
E[t, s], the M+ shares, Jaccard and their correlations, against plain-Python loops; and the
statistics (correlation, permutation p-value, bootstrap interval) against hand-computed cases."""

from __future__ import annotations

import json
import random
import statistics

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from langspec.science import findings, questions, stats, tracin_vs_ablation
from store.migrations import schema_sql
from store.influence import insert_influence
from store.queries import run_named

LANGUAGES = ["ka", "kb", "la"]
TRAIN, TEST, EFFECT_TEST, SEEDS, K = 3, 2, 3, (0, 1), 2
LAYERS, HEADS = 2, 2
OTHER_POINT = "ablation.mode=x"  # a task of another sweep point, which must not leak in


def add_task(con, key, stage, params, inputs, point=""):
    con.execute("INSERT INTO tasks (run_id, task_key, name, stage, params, inputs, outcome) VALUES (1, ?, ?, ?, ?, ?, 'ran')",
                [key, key, stage, json.dumps(params), json.dumps(inputs)])
    con.execute("INSERT INTO points VALUES (1, ?, ?)", [point, key])


@pytest.fixture(scope="module")
def store():
    rng = random.Random(3)
    con = duckdb.connect()
    con.execute(schema_sql())
    con.execute("INSERT INTO runs (run_id, spec_name, spec, status) VALUES (1, 'hand-built', ?, 'completed')", [json.dumps({"analysis": {"top_k": K}})])
    train = {f"{lang}-train-{i}": lang for lang in LANGUAGES for i in range(TRAIN)}
    test = {f"{lang}-test-{i}": lang for lang in LANGUAGES for i in range(max(TEST, EFFECT_TEST))}
    con.executemany("INSERT INTO examples (task_key, example_id, language, split) VALUES ('data', ?, ?, ?)",
                    [[i, lang, "train"] for i, lang in train.items()] + [[i, lang, "test"] for i, lang in test.items()])
    truth = {"scores": {}, "effects": {}, "masks": {}, "train": train, "test": test}
    tracin_tests = [t for t in test if int(t.rsplit("-", 1)[1]) < TEST]  # TracIn scores the first TEST of each language
    for seed in SEEDS:
        add_task(con, f"ft{seed}", "finetune", {"seed": seed}, {"data": "data"})
        key = f"tracin{seed}"
        add_task(con, key, "tracin", {"seed": seed, "variant": "full"}, {"data": "data", "finetune": f"ft{seed}"})
        rows = []
        for checkpoint in (1, 2):
            for t in tracin_tests:
                for z in train:
                    score = rng.randint(-200, 200) / 32  # exact in float32
                    truth["scores"][(seed, t, z)] = truth["scores"].get((seed, t, z), 0.0) + score
                    rows.append((checkpoint, t, z, score))
        checkpoint, test_id, train_id, score = zip(*rows)
        insert_influence(con, key, pa.table({
            "seed": pa.array([seed] * len(rows), pa.int32()), "variant": ["full"] * len(rows),
            "checkpoint": pa.array(checkpoint, pa.int32()), "test_id": test_id, "train_id": train_id,
            "score": pa.array(score, pa.float32()),
        }))
        for s in LANGUAGES:
            key = f"ablation{seed}{s}"
            add_task(con, key, "ablation", {"seed": seed, "mode": "without", "language": s}, {"data": "data", "finetune": f"ft{seed}"})
            for t_id, t in test.items():
                loss, full = rng.random() * 2, rng.random() * 2
                truth["effects"][(seed, t_id, s)] = loss - full
                con.execute("INSERT INTO ablation_examples VALUES (?, ?, 'without', ?, ?, ?, 'test', ?, ?, ?, ?)",
                            [key, seed, s, t_id, t, loss, rng.random() < 0.5, full, rng.random() < 0.5])
            key = f"prune{seed}{s}"
            add_task(con, key, "prune", {"seed": seed, "language": s, "prune": {"threshold": 0.9, "step": 0.1}},
                     {"data": "data", "finetune": f"ft{seed}"})
            mask = {(l, h): rng.random() < 0.5 for l in range(LAYERS) for h in range(HEADS)}
            truth["masks"][(seed, s)] = mask
            con.executemany("INSERT INTO subnetworks VALUES (?, ?, ?, ?, ?, ?, 0.5)", [[key, seed, s, l, h, kept] for (l, h), kept in mask.items()])
    add_task(con, "ablation-other", "ablation", {"seed": 0}, {"data": "data", "finetune": "ft0"}, point=OTHER_POINT)
    con.execute("INSERT INTO ablation_examples VALUES ('ablation-other', 0, 'without', 'ka', 'ka-test-0', 'ka', 'test', 99, true, 0, true)")
    truth["tracin_tests"] = tracin_tests
    return con, truth


# --- the references: the definitions, with loops ----------------------------------------------------


def predicted(truth, seed, t, s):
    """P[t, s]: the mean over t's TracIn test examples of the summed TracInCP of s's training examples."""
    tests = [x for x in truth["tracin_tests"] if truth["test"][x] == t]
    return sum(sum(truth["scores"][(seed, x, z)] for z, lang in truth["train"].items() if lang == s) for x in tests) / len(tests)


def measured(truth, seed, t, s):
    """E[t, s]: the mean over t's test examples of loss without s minus loss with all."""
    tests = [x for x, lang in truth["test"].items() if lang == t]
    return sum(truth["effects"][(seed, x, s)] for x in tests) / len(tests)


def share(truth, seed, t, s):
    """M+[t, s]: the mean over t's TracIn test examples of the share of its top-K proponents from s."""
    tests = [x for x in truth["tracin_tests"] if truth["test"][x] == t]
    shares = []
    for x in tests:
        top = sorted(truth["train"], key=lambda z: (-truth["scores"][(seed, x, z)], z))[:K]
        shares.append(sum(truth["train"][z] == s for z in top) / K)
    return sum(shares) / len(shares)


def jaccard(truth, seed, a, b):
    x = {h for h, kept in truth["masks"][(seed, a)].items() if kept}
    y = {h for h, kept in truth["masks"][(seed, b)].items() if kept}
    return len(x & y) / len(x | y) if x | y else 1.0


def pearson(x, y):
    mx, my = statistics.mean(x), statistics.mean(y)
    num = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return num / (sum((a - mx) ** 2 for a in x) ** 0.5 * sum((b - my) ** 2 for b in y) ** 0.5)


def average_ranks(values):
    order = sorted(values)
    return [sum(i + 1 for i, v in enumerate(order) if v == x) / order.count(x) for x in values]


def spearman(x, y):
    return pearson(average_ranks(x), average_ranks(y))


PAIRS = [(t, s) for t in LANGUAGES for s in LANGUAGES]

# --- tests --------------------------------------------------------------------------------------------


def test_the_analysis_gives_p_e_shares_jaccard_and_correlations(store):
    con, truth = store
    rows = run_named(con, "influence_validity", run_id=1, point="", k=K).to_pylist()
    assert [(r["seed"], r["test_language"], r["train_language"]) for r in rows] == [(seed, t, s) for seed in SEEDS for t, s in PAIRS]
    for r in rows:
        seed, t, s = r["seed"], r["test_language"], r["train_language"]
        assert r["predicted"] == pytest.approx(predicted(truth, seed, t, s), abs=1e-9)
        assert r["loss_effect"] == pytest.approx(measured(truth, seed, t, s), abs=1e-12)
        assert r["share"] == pytest.approx(share(truth, seed, t, s), abs=1e-12)
        assert r["jaccard"] == pytest.approx(jaccard(truth, seed, t, s), abs=1e-12)
        assert r["diagonal"] == (t == s) and r["pairs"] == len(PAIRS)
        assert (r["tracin_test_examples"], r["test_examples"]) == (TEST, EFFECT_TEST)
        p = [predicted(truth, seed, *pair) for pair in PAIRS]
        e = [measured(truth, seed, *pair) for pair in PAIRS]
        assert r["pearson"] == pytest.approx(pearson(p, e), abs=1e-9)
        assert r["spearman"] == pytest.approx(spearman(p, e), abs=1e-9)


def test_influence_validity_is_the_mean_over_seeds_of_each_predictors_correlation(store):
    con, truth = store
    results = tracin_vs_ablation.influence_validity(con, 1, "", K, permutations=50)
    found = {(r.predictor, r.method, r.pairs): r for r in results if r.variant == "full"}
    assert set(found) == {(p, m, s) for p in tracin_vs_ablation.PREDICTORS for m in tracin_vs_ablation.METHODS for s in tracin_vs_ablation.PAIRS}
    predictors = {"tracin": predicted, "share": share, "jaccard": jaccard}
    for (predictor, method, pairs), result in found.items():
        chosen = [(t, s) for t, s in PAIRS if pairs == "all" or t != s]
        correlate = pearson if method == "pearson" else spearman
        expected = statistics.mean(
            correlate([predictors[predictor](truth, seed, *pair) for pair in chosen], [measured(truth, seed, *pair) for pair in chosen])
            for seed in SEEDS
        )
        assert result.statistic == pytest.approx(expected, abs=1e-9)
        assert (result.n, result.seeds) == (len(chosen), len(SEEDS))
        assert statistics.mean(result.per_seed) == pytest.approx(expected, abs=1e-9)
        # seeds are the replications: the t interval and test over the per-seed correlations (df = 1)
        low, high = stats.over_seeds(result.per_seed).interval()
        assert [result.low, result.high] == pytest.approx([max(low, -1.0), min(high, 1.0)])  # a correlation's interval, cut to [-1, 1]
        assert result.p == pytest.approx(stats.over_seeds(result.per_seed).p_value())
        assert 1 / 51 <= result.p_rows <= 1


def test_permuting_whole_rows_keeps_its_rate_where_both_grids_carry_row_effects():
    """P and E each with its own per-test-language level and no information about s: shuffling
    single cells rejects far too often; shuffling whole rows of E keeps about its nominal 5%."""
    rng = np.random.default_rng(7)
    keep = np.ones((5, 5), dtype=bool)
    rejected = {"cells": 0, "rows": 0}
    runs = 150
    for _ in range(runs):
        p = rng.normal(0, 1, (5, 1)) + rng.normal(0, 0.3, (5, 5))
        e = rng.normal(0, 1, (5, 1)) + rng.normal(0, 0.3, (5, 5))
        observed = tracin_vs_ablation.seed_statistic(p, e, "pearson", keep)
        shuffles = [None, *np.random.default_rng(int(rng.integers(1 << 30))).spawn(199)]
        rows = stats.permutation_p(observed, lambda g: tracin_vs_ablation.seed_statistic(p, e, "pearson", keep, shuffle=g), shuffles,
                                   alternative="two-sided")
        cells = stats.permutation_p(observed, lambda g: stats.correlation(p.ravel(), (g.permutation(e.ravel()) if g else e.ravel())),
                                    shuffles, alternative="two-sided")
        rejected["rows"] += rows <= 0.05
        rejected["cells"] += cells <= 0.05
    assert rejected["rows"] / runs <= 0.10 and rejected["cells"] / runs >= 0.2, rejected


def test_correlation_against_the_definitions():
    x, y = [1.0, 2.0, 2.0, 5.0, 3.0], [2.0, 1.0, 4.0, 4.0, 9.0]
    assert stats.correlation(x, y) == pytest.approx(pearson(x, y))
    assert stats.correlation(x, y, "spearman") == pytest.approx(spearman(x, y))
    assert list(stats.ranks(x)) == [1.0, 2.5, 2.5, 5.0, 4.0]


def test_a_statistic_that_permutation_cannot_change_has_p_one_and_a_constant_a_point_interval():
    shuffles = [None, *range(99)]  # None: the observed pairing, counted once
    assert stats.permutation_p(0.5, lambda shuffle: 0.5, shuffles, alternative="two-sided") == 1.0
    never = stats.permutation_p(0.9, lambda shuffle: 0.9 if shuffle is None else 0.0, shuffles, alternative="two-sided")
    assert never == 1 / 100  # never as extreme: the floor
    assert stats.over_seeds([0.3, 0.3]).interval() == (0.3, 0.3) and stats.over_seeds([0.3, 0.3]).p_value() == 0.0


def test_the_report_shows_the_figure_and_the_numbers_when_the_run_has_ablations(store, tmp_path):
    from langspec.science.report import write_report

    con, truth = store
    page = write_report(con, tmp_path, run_id=1, k=K, point="").read_text()
    assert (tmp_path / "influence_validity.png").is_file() and "influence_validity.png" in page
    tracin = [r for r in tracin_vs_ablation.influence_validity(con, 1, "", K)  # Q6's primary statistic leaves out t = s
              if (r.predictor, r.method, r.pairs) == ("tracin", "pearson", "off_diagonal")]
    written = next(f for f in json.loads((tmp_path / "findings.json").read_text()) if f["question"] == "Q6")
    assert written["statistic"] == pytest.approx(tracin[0].statistic)
    # this store has no full model's accuracy, so its gate voids Q6; with the gates passed, Q6 gives validity's numbers
    assert written["verdict"] == "inconclusive" and written["reasons"][0].startswith("no full-model test accuracy")
    q6 = questions.q6_tracin_predicts_removal(findings.load(con, 1, "", K), findings.Gates({})).finish(None)
    assert q6.statistic == pytest.approx(tracin[0].statistic) and q6.p_value == pytest.approx(tracin[0].p)
    assert q6.interval == pytest.approx([tracin[0].low, tracin[0].high])


def test_the_ablation_effect_per_seed_and_its_mean(store):
    con, truth = store
    rows = {(r["ablated"], r["language"], r["seed"]): r for r in run_named(con, "ablation_effect", run_id=1, point="").to_pylist()}
    assert set(rows) == {(s, t, seed) for s in LANGUAGES for t in LANGUAGES for seed in ("0", "1", "mean")}
    for s in LANGUAGES:
        for t in LANGUAGES:
            per_seed = [measured(truth, seed, t, s) for seed in SEEDS]
            assert rows[(s, t, "mean")]["loss_effect"] == pytest.approx(statistics.mean(per_seed), abs=1e-12)
            assert rows[(s, t, "mean")]["loss_effect_sd"] == pytest.approx(statistics.stdev(per_seed), abs=1e-12)
            assert rows[(s, t, "0")]["loss_effect"] == pytest.approx(per_seed[0], abs=1e-12)
