"""The named SQL over a hand-built store, against the same numbers computed naively in Python."""

from __future__ import annotations

import json
import random

import duckdb
import pytest

from store.migrations import schema_sql
from store.queries import VARIANTS, named_queries, register_views, run_named

LANGUAGES = ["ka", "kb", "la"]
LAYERS, HEADS = 3, 4


@pytest.fixture
def con():
    """Two studies (seeds 0 and 1, each its own fine-tuning task), three languages, random masks."""
    con = duckdb.connect()
    con.execute(schema_sql())
    con.execute("INSERT INTO runs (run_id, spec_name, status) VALUES (1, 'hand-built', 'completed')")
    rng = random.Random(0)
    masks = {}
    for seed in (0, 1):
        for language in LANGUAGES:
            key = f"prune-{seed}-{language}"
            params = {"seed": seed, "language": language, "prune": {"threshold": 0.95, "step": 0.1}}
            inputs = {"data": "d", "finetune": f"finetune-{seed}"}
            con.execute("INSERT INTO tasks (run_id, task_key, name, stage, params, inputs) VALUES (1, ?, ?, 'prune', ?, ?)",
                        [key, key, json.dumps(params), json.dumps(inputs)])
            con.execute("INSERT INTO points VALUES (1, '', ?)", [key])
            kept = {(l, h): rng.random() < 0.5 for l in range(LAYERS) for h in range(HEADS)}
            kept[(0, 0)] = False  # a head no language keeps
            masks[(seed, language)] = kept
            con.executemany("INSERT INTO subnetworks VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [[key, seed, language, l, h, k, rng.random()] for (l, h), k in kept.items()])
            metrics = [0.9, 0.88, 0.86, 0.8]  # steps 0..3; the last one falls below 0.95 x 0.9
            con.executemany("INSERT INTO prune_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [[key, seed, language, s, 12 - s, m, m / 0.9, m >= 0.95 * 0.9] for s, m in enumerate(metrics)])
    return con, masks


def test_jaccard_matches_naive_sets(con):
    con, masks = con
    rows = run_named(con, "subnetwork_jaccard", run_id=1, point="").to_pylist()
    assert len(rows) == 2 * len(LANGUAGES) ** 2
    for row in rows:
        a = {h for h, k in masks[(row["seed"], row["language_a"])].items() if k}
        b = {h for h, k in masks[(row["seed"], row["language_b"])].items() if k}
        assert row["jaccard"] == pytest.approx(len(a & b) / len(a | b))
        assert row["both_kept"] == len(a & b) and row["either_kept"] == len(a | b)


def test_sparsity_and_heads_kept_by_no_language(con):
    con, masks = con
    for row in run_named(con, "subnetwork_sparsity", run_id=1, point="").to_pylist():
        kept = sum(masks[(row["seed"], row["language"])].values())
        assert (row["heads_kept"], row["heads_total"]) == (kept, LAYERS * HEADS)
        assert row["sparsity"] == pytest.approx(1 - kept / (LAYERS * HEADS))
        assert (row["full_metric"], row["subnetwork_metric"], row["steps"]) == (0.9, 0.86, 3)
        assert row["retention"] == pytest.approx(0.86 / 0.9)
    nobody = {(r["seed"], r["layer"], r["head"]) for r in run_named(con, "heads_kept_by_no_language", run_id=1, point="").to_pylist()}
    expected = {(seed, l, h) for seed in (0, 1) for l in range(LAYERS) for h in range(HEADS)
                if not any(masks[(seed, language)][(l, h)] for language in LANGUAGES)}
    assert nobody == expected and (0, 0, 0) in nobody


def test_grid_rows_spell_the_mask(con):
    con, masks = con
    rows = run_named(con, "subnetwork_grid", language="kb", run_id=1, point="").to_pylist()
    assert len(rows) == 2 * LAYERS
    for row in rows:
        expected = " ".join("1" if masks[(row["seed"], "kb")][(row["layer"], h)] else "0" for h in range(HEADS))
        assert row["heads"] == expected


def test_the_analyses_of_a_run_alone_become_views_of_the_last_completed_run(con):
    con, _ = con
    con.execute("INSERT INTO runs (run_id, spec_name, status) VALUES (2, 'hand-built', 'failed')")  # not completed: not the views'
    con.execute("INSERT INTO points SELECT 2, '', task_key FROM points WHERE task_key LIKE 'prune-0-%'")
    register_views(con)
    views = {row[0] for row in con.sql("SELECT view_name FROM duckdb_views() WHERE temporary").fetchall()}
    assert {"subnetwork_jaccard", "accuracy"} <= views  # run_id and point alone: the last completed run's
    assert not views & {"final_accuracy", "in_language_share", "mask_transfer"}  # a split or k to choose; a table's name
    assert con.sql("SELECT count(*) FROM subnetwork_jaccard").fetchall() == [(18,)]  # run 1: both seeds
    con.execute("UPDATE runs SET status = 'completed' WHERE run_id = 2")
    register_views(con)
    assert con.sql("SELECT count(*) FROM subnetwork_jaccard").fetchall() == [(9,)]  # run 2: seed 0 alone


def test_the_python_variant_order_is_the_sql_macros():
    """store.queries.VARIANTS and variant_position() of macros.sql are the one order, written twice."""
    con = duckdb.connect()
    con.execute(schema_sql())
    positions = [con.sql("SELECT variant_position($v)", params={"v": v}).fetchall()[0][0] for v in VARIANTS]
    assert positions == [1, 2, 3]
    assert con.sql("SELECT variant_position('no such variant')").fetchall()[0][0] in (None, 0)


def test_every_analysis_of_one_run_names_what_it_needs():
    """`-- needs:` is what lets an empty answer say why (langspec analyze): every analysis that takes
    run_id declares it, with stages that exist (or `planted`), each with what turns it on."""
    from runners.stage import STAGES
    from store.queries import SWITCHES, named_queries

    for query in named_queries().values():
        if "run_id" in query.params:
            assert query.needs, query.name
        assert set(query.needs) <= set(STAGES) | {"planted"}, query.name
        assert set(query.needs) <= set(SWITCHES), query.name
