"""The findings' verdict paths on hand-built stores whose answers are known: S+ raised by
construction is `supported`, lowered is `contradicted`, unchanged is `inconclusive`; a model at
chance makes every question that uses it `inconclusive`, naming the gate; one seed draws no
interval; Holm adjusts the primary questions; the statistics agree with plain loops; findings.json
follows its schema."""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from pathlib import Path

import duckdb
import jsonschema
import numpy as np
import pyarrow as pa
import pytest

from langspec.science import findings
from store.migrations import schema_sql
from store.influence import insert_influence

LANGUAGES = ["ka", "kb", "la"]  # ka/kb one toy family, la another
TRAIN, TEST, K = 8, 9, 4  # per language; test labels 0, 1, 2 in turn: majority-class rate 1/3
LAYERS, HEADS = 2, 2
SCHEMA = Path(__file__).parents[2] / "docs" / "findings.schema.json"


def add_task(con, key, stage, params, inputs):
    con.execute("INSERT INTO tasks (run_id, task_key, name, stage, params, inputs, outcome) VALUES (1, ?, ?, ?, ?, ?, 'ran')",
                [key, key, stage, json.dumps(params), json.dumps(inputs)])
    con.execute("INSERT INTO points VALUES (1, '', ?)", [key])


@functools.cache  # each store is built once and only read
def build(seeds=(0, 1, 2), collapsed=False, bonus=5.0, sft_accuracy=None, only_masks=False):
    """A run of a store: the full model is good (or collapsed: every test example predicted 0, at
    chance); the subnetwork variant's scores favour same-language training examples by `bonus`.
    sft_accuracy: an SFT model of that test accuracy whose TracIn scores favour same-language
    examples at the last checkpoint only. only_masks: monolingual models' masks (ablation.mode: only)
    beside the multilingual ones, each keeping every head."""
    rng = random.Random(11)
    con = duckdb.connect()
    con.execute(schema_sql())
    con.execute("INSERT INTO runs (run_id, spec_name, spec, status) VALUES (1, 'hand-built', ?, 'completed')", [json.dumps({"analysis": {"top_k": K}})])
    train = [(f"{lang}-train-{i}", lang) for lang in LANGUAGES for i in range(TRAIN)]
    test = [(f"{lang}-test-{i}", lang, i % 3) for lang in LANGUAGES for i in range(TEST)]
    con.executemany("INSERT INTO examples (task_key, example_id, language, split, label) VALUES ('data', ?, ?, ?, ?)",
                    [[i, lang, "train", 0] for i, lang in train] + [[i, lang, "test", label] for i, lang, label in test])
    variants = ("full", "subnetwork") + (("sft",) if sft_accuracy is not None else ())
    for seed in seeds:
        add_task(con, f"ft{seed}", "finetune", {"seed": seed}, {"data": "data"})
        for lang in LANGUAGES:
            accuracy, counts = (3 / 9, [9, 0, 0]) if collapsed else (8 / 9, [3, 3, 3])
            con.execute("INSERT INTO metrics VALUES (?, ?, 'full', ?, 'test', 'accuracy', ?, 2)", [f"ft{seed}", seed, lang, accuracy])
            con.executemany("INSERT INTO metrics VALUES (?, ?, 'full', ?, 'test', ?, ?, 2)",
                            [[f"ft{seed}", seed, lang, f"predicted_label_{i}", c] for i, c in enumerate(counts)])
            if sft_accuracy is not None:
                con.execute("INSERT INTO metrics VALUES (?, ?, 'sft', ?, 'test', 'accuracy', ?, 2)", [f"sft{seed}", seed, lang, sft_accuracy])
        if sft_accuracy is not None:
            add_task(con, f"sft{seed}", "sparse_finetune", {"seed": seed}, {"data": "data"})
        for lang in LANGUAGES:
            key = f"prune{seed}{lang}"
            add_task(con, key, "prune", {"seed": seed, "language": lang, "prune": {"threshold": 0.95, "step": 0.1}},
                     {"data": "data", "finetune": f"ft{seed}"})
            kept = {(0, 0), (LANGUAGES.index(lang) % 2, 1)}
            con.executemany("INSERT INTO subnetworks VALUES (?, ?, ?, ?, ?, ?, 0.5)",
                            [[key, seed, lang, l, h, (l, h) in kept] for l in range(LAYERS) for h in range(HEADS)])
            con.execute("INSERT INTO metrics VALUES (?, ?, 'subnetwork', ?, 'test', 'accuracy', ?, 2)", [key, seed, lang, 7 / 9])
            if only_masks:
                add_task(con, f"only{seed}{lang}", "ablation", {"seed": seed, "mode": "only", "language": lang},
                         {"data": "data", "finetune": f"ft{seed}"})
                add_task(con, f"pruneonly{seed}{lang}", "prune", {"seed": seed, "language": lang, "prune": {"threshold": 0.95, "step": 0.1}},
                         {"data": "data", "ablation": f"only{seed}{lang}"})
                con.executemany("INSERT INTO subnetworks VALUES (?, ?, ?, ?, ?, true, 0.5)",
                                [[f"pruneonly{seed}{lang}", seed, lang, l, h] for l in range(LAYERS) for h in range(HEADS)])
        add_task(con, f"mt{seed}", "mask_transfer", {"seed": seed}, {"data": "data", "finetune": f"ft{seed}"})
        con.executemany("INSERT INTO mask_transfer VALUES (?, ?, ?, ?, 'test', 2, 2, 9, ?, ?)",
                        [[f"mt{seed}", seed, a, b, c, c / 9] for a in LANGUAGES for b in LANGUAGES
                         for c in [7 if a == b else 4 + rng.randint(0, 1)]])
        for variant in variants:
            key = f"tracin{seed}{variant}"
            add_task(con, key, "tracin", {"seed": seed, "variant": variant}, {"data": "data"})
            lift = {("subnetwork", 1): bonus, ("subnetwork", 2): bonus, ("sft", 2): 2 * abs(bonus)}
            rows = [(c, t, z, rng.randint(-64, 64) / 16 + (lift.get((variant, c), 0.0) if tl == zl else 0.0))
                    for c in (1, 2) for t, tl, _ in test for z, zl in train]
            checkpoint, test_id, train_id, score = zip(*rows)
            insert_influence(con, key, pa.table({
                "seed": pa.array([seed] * len(rows), pa.int32()), "variant": [variant] * len(rows),
                "checkpoint": pa.array(checkpoint, pa.int32()), "test_id": test_id, "train_id": train_id,
                "score": pa.array(score, pa.float32()),
            }))
    return con


def by_question(con, k=K):
    return {f.question: f for f in findings.compute(con, 1, "", k)}


def s_plus_by_loop(con, variant, seed):
    """{test_id: in-language share of its top-K proponents by TracInCP}, from the raw scores."""
    rows = con.sql("SELECT test_id, test_language, train_id, train_language, sum(score) FROM influence_by_language "
                   "WHERE task_key = $key GROUP BY ALL", params={"key": f"tracin{seed}{variant}"}).fetchall()
    scores: dict = {}
    for test_id, test_language, train_id, train_language, score in rows:
        scores.setdefault((test_id, test_language), []).append((-score, train_id, train_language))
    return {test_id: sum(lang == test_language for _, _, lang in sorted(ranked)[:K]) / K
            for (test_id, test_language), ranked in scores.items()}


def test_s_plus_raised_by_construction_is_supported():
    con = build()
    answers = by_question(con)
    q2 = answers["Q2"]
    assert q2.verdict == findings.SUPPORTED and q2.interval[0] > 0 and q2.p_value < 0.01 and q2.claimed == "greater"
    differences = []
    for seed in (0, 1, 2):
        sub, full = s_plus_by_loop(con, "subnetwork", seed), s_plus_by_loop(con, "full", seed)
        differences.append(sum(sub[z] - full[z] for z in sub) / len(sub))
    assert q2.statistic == pytest.approx(sum(differences) / 3, abs=1e-12)
    assert q2.n == {"seeds": 3, "test_examples": 3 * TEST, "k": K}  # the same test examples in every seed
    assert q2.sentence.startswith("Q2 supported") and f"{q2.statistic:+.3f}" in q2.sentence
    # Own masks beat the others' by 7/9 - (4 or 5)/9 on every language: Q1's specificity is positive.
    q1 = answers["Q1"]
    assert q1.verdict == findings.SUPPORTED and 2 / 9 <= q1.statistic <= 3 / 9
    assert q1.details["retention"] == pytest.approx(7 / 8)
    # Masks of 2 of 4 heads: ka and la identical (J = 1), kb shares one head with each (J = 1/3); random
    # 2-of-4 masks have E[J] = (1/6)(1) + (4/6)(1/3) + (1/6)(0) = 7/18.
    assert q1.details["jaccard_minus_random"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3 - 7 / 18)
    assert not any(r.startswith(("chance", "collapsed")) for f in answers.values() for r in f.reasons)
    # 3 languages: the verdicts are about these languages; a claim about languages in general would need 6 (1/720 < 0.05/6)
    assert q1.estimand == {"population": "these 3 languages: ka, kb, la", "random_factors": ["seeds", "language pairs"]}
    assert q2.estimand == {"population": "these 3 languages: ka, kb, la", "random_factors": ["seeds", "test examples"]}
    assert q1.sentence.startswith("Q1 supported among ka, kb and la:")
    assert ("relabelling the masks' languages gives p = 0.167 (6 relabellings, smallest attainable p 0.167); with 3 languages no "
            "claim about languages in general can reach p < 0.05 after Holm's adjustment; it takes at least 6.") in q1.sentence


def test_s_plus_lowered_by_construction_is_contradicted():
    q2 = by_question(build(bonus=-5.0))["Q2"]
    assert q2.verdict == findings.CONTRADICTED and q2.interval[1] < 0
    assert any("opposite to the claim" in r for r in q2.reasons) and q2.sentence.startswith("Q2 contradicted")


def test_no_bonus_gives_no_verdict_either_way():
    answers = by_question(build(bonus=0.0))
    assert answers["Q2"].verdict == findings.INCONCLUSIVE and answers["Q2"].interval[0] <= 0 <= answers["Q2"].interval[1]
    assert any("includes 0" in r for r in answers["Q2"].reasons)


def test_the_interval_is_the_crossed_estimate_of_the_seeds_by_examples_table():
    from langspec.science import stats

    con = build()
    table = []
    for seed in (0, 1, 2):
        sub, full = s_plus_by_loop(con, "subnetwork", seed), s_plus_by_loop(con, "full", seed)
        table.append([sub[z] - full[z] for z in sorted(sub)])
    expected = stats.crossed(np.array(table))
    q2 = by_question(con)["Q2"]
    assert q2.interval == pytest.approx(list(expected.interval()), abs=1e-12)
    assert q2.p_value == pytest.approx(expected.p_value(), abs=1e-9)


def test_a_collapsed_model_answers_nothing_and_names_the_gate():
    answers = by_question(build(collapsed=True))
    for finding in answers.values():
        assert finding.verdict == findings.INCONCLUSIVE  # not a refutation: the question cannot be answered
        assert any(r.startswith("chance:") for r in finding.reasons)
        assert any(r.startswith("collapsed:") and "only 1 of the 3 labels" in r for r in finding.reasons)
        assert "cannot be answered" in finding.sentence and " supported" not in finding.sentence
        assert finding.p_value is None and finding.p_adjusted is None


def test_an_sft_model_at_chance_voids_the_questions_that_use_it_only():
    answers = by_question(build(sft_accuracy=2 / 9))
    for question in ("Q3", "Q5"):
        assert answers[question].verdict == findings.INCONCLUSIVE, question
        assert any(r.startswith("chance: the SFT model of seed") for r in answers[question].reasons), question
    for question in ("Q1", "Q2", "Q4"):
        assert not any("SFT model" in r for r in answers[question].reasons), question
    assert answers["Q2"].verdict == findings.SUPPORTED


def test_sft_in_language_reliance_rising_over_checkpoints_is_q5():
    answers = by_question(build(sft_accuracy=8 / 9))
    q5 = answers["Q5"]
    assert "includes the effect of confinement itself" in answers["Q3"].sentence  # what Q3 measures, said where it is read
    assert q5.details["slope_sft"] > 0.1 and abs(q5.details["slope_full"]) < 0.1
    assert q5.statistic == pytest.approx(q5.details["slope_sft"] - q5.details["slope_full"], abs=1e-12)
    assert q5.verdict == findings.SUPPORTED and q5.claimed == "greater"


def test_one_seed_draws_no_interval_over_seeds():
    answers = by_question(build(seeds=(0,)))
    for question in ("Q1", "Q2", "Q4", "P1"):
        assert answers[question].interval is None, question
        assert answers[question].statistic is not None, question  # the point estimate is still given
        assert answers[question].verdict == findings.INCONCLUSIVE, question
        assert any(r.startswith("seeds: 1 seed") for r in answers[question].reasons), question
    assert "no interval: one seed" in answers["Q2"].sentence


def test_holm_adjusts_the_primary_questions_only():
    from langspec.science import stats

    answers = list(by_question(build(sft_accuracy=8 / 9)).values())
    primary = [f for f in answers if f.primary]
    assert [f.question for f in primary] == ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"]
    assert [f.p_adjusted for f in primary] == stats.holm([f.p_value for f in primary])
    assert all(f.p_adjusted is None or f.p_adjusted >= f.p_value for f in primary)
    p1 = next(f for f in answers if f.question == "P1")
    assert not p1.primary and p1.p_adjusted is None
    # What its TracIn part measures where the families are in the data (#38, item 4)
    assert "The families are in the toy data itself" in p1.sentence and "only the masks' part speaks of modules" in p1.sentence


def test_monolingual_masks_do_not_enter_q1_or_p1():
    plain, with_only = by_question(build()), by_question(build(only_masks=True))
    for question in ("Q1", "P1"):
        assert with_only[question].statistic == plain[question].statistic, question
        assert with_only[question].details == plain[question].details, question
        assert with_only[question].verdict == plain[question].verdict, question


def test_q4_correlates_size_adjusted_similarity():
    q4 = by_question(build())["Q4"]
    assert q4.n == {"languages": 3, "pairs": 6, "seeds": 3}
    assert q4.details["language_test"]["permutations"] == 6 and "relabelling the languages of J (Mantel) gives p =" in q4.sentence
    assert len(q4.details["per_seed_r"]) == 3 and q4.statistic == pytest.approx(np.mean(q4.details["per_seed_r"]))


def test_bad_k_is_a_failed_gate():
    answers = by_question(build(), k=3 * TRAIN)
    assert all(f.verdict == findings.INCONCLUSIVE and any(r.startswith("k:") for r in f.reasons) for f in answers.values())


def test_report_of_a_collapsed_model_claims_nothing(tmp_path):
    from langspec.science.report import write_report

    page = write_report(build(collapsed=True), tmp_path).read_text()
    written = json.loads((tmp_path / "findings.json").read_text())
    assert [f["verdict"] for f in written] == [findings.INCONCLUSIVE] * len(findings.QUESTIONS)
    section = page[page.index("<h2>Findings</h2>"):page.index("</ul>")]
    assert section.count("cannot be answered") == len(findings.QUESTIONS) and "chance:" in section
    assert "Q2 supported" not in page


def test_findings_json_follows_its_schema():
    schema = json.loads(SCHEMA.read_text())
    for con in (build(), build(seeds=(0,)), build(collapsed=True)):
        document = json.loads(json.dumps([f.to_json() for f in findings.compute(con, 1, "", K)]))
        jsonschema.validate(document, schema)
        assert [f["question"] for f in document] == ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "P1"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{**document[0], "verdict": "maybe"}], schema)


def test_mask_transfer_analysis_against_its_rows():
    from store.queries import run_named

    con = build()
    stored = {(s, a, b): c / 9 for s, a, b, c in con.sql("SELECT seed, language, mask_language, correct FROM mask_transfer").fetchall()}
    rows = run_named(con, "mask_transfer", run_id=1, point="").to_pylist()
    for r in rows:
        seeds = (0, 1, 2) if r["seed"] == "mean" else (int(r["seed"]),)
        this = [stored[(s, r["language"], r["mask_language"])] for s in seeds]
        own = [stored[(s, r["language"], r["language"])] for s in seeds]
        assert r["accuracy"] == pytest.approx(sum(this) / len(seeds), abs=1e-12)
        assert r["own_minus_this"] == pytest.approx(sum(o - t for o, t in zip(own, this)) / len(seeds), abs=1e-12)
        assert r["seeds"] == len(seeds)
    assert len(rows) == 3 * 3 * 4  # (language, mask) x (3 seeds + mean)


def test_an_interval_of_a_correlation_stays_within_minus_one_and_one():
    from langspec.science import stats

    estimate = stats.over_seeds([0.95, 0.9, 0.97])  # 3 seeds: t(0.975, 2) = 4.3 takes the upper end past 1
    answer = findings.Answer("Q4", "t", "r", estimate.mean, estimate, {}, [], [], lambda v, i: "", bounds=(-1.0, 1.0))
    finished = answer.finish(None)
    assert estimate.interval()[1] > 1 > estimate.interval()[0] > -1
    assert finished.interval == [pytest.approx(estimate.interval()[0]), 1.0]
    assert finished.p_value == pytest.approx(estimate.p_value())


def test_p1s_mask_part_reads_jaccard_adjusted_for_mask_size():
    """ka and kb (one family) keep all 4 heads, la keeps 1, 2 or 3 by seed: raw J says the family
    shows (related 1 minus unrelated s/4 = +0.75, +0.5, +0.25), but each J is exactly what random
    masks of those sizes give (a full mask contains any other), so the size-adjusted difference is 0."""
    data = findings.load(build(), 1, "", K)
    sizes = {"ka": 4, "kb": 4, "la": None}
    pairs = []
    for seed, la in enumerate((1, 2, 3)):
        kept = {**sizes, "la": la}
        for a in kept:
            for b in kept:
                pairs.append({"seed": seed, "language_a": a, "language_b": b, "jaccard": min(kept[a], kept[b]) / max(kept[a], kept[b]),
                              "sparsity_a": 1 - kept[a] / 4, "heads_kept_a": kept[a], "model": "multilingual"})
    p1 = {f.question: f for f in findings.findings(dataclasses.replace(data, pairs=pairs))}["P1"]
    assert p1.details["jaccard_related_minus_unrelated"] == pytest.approx(0.0, abs=1e-12)
