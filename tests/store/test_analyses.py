"""The study's analyses (store/sql/) on a hand-built store, against the same quantities computed
by plain Python loops: TracInCP sums, top-k proponents and opponents, shares, Jaccard, Pearson and
Spearman (average ranks), influence mass, means and standard deviations over seeds."""

from __future__ import annotations

import json
import random
import statistics

import duckdb
import pyarrow as pa
import pytest

from store.migrations import schema_sql
from store.errors import QueryError
from store.influence import insert_influence
from store.queries import defaults, named_queries, resolve, run_named

LANGUAGES = ["ka", "kb", "la"]
TRAIN, TEST, CHECKPOINTS, SEEDS, K = 4, 2, (1, 2), (0, 1), 2
VARIANTS = ("full", "subnetwork", "sft")
LAYERS, HEADS = 2, 3
SWEPT = "prune.threshold=0.5"  # run 1's second sweep point: one TracIn task of its own


def add_task(con, run_id, key, stage, params, inputs, point=""):
    con.execute("INSERT INTO tasks (run_id, task_key, name, stage, params, inputs, outcome) VALUES (?, ?, ?, ?, ?, ?, 'ran')",
                [run_id, key, key, stage, json.dumps(params), json.dumps(inputs)])
    con.execute("INSERT INTO points VALUES (?, ?, ?)", [run_id, point, key])


def add_scores(con, key, seed, variant, rows):
    """A TracIn task's table as the stage writes it ((checkpoint, test_id, train_id, score) rows),
    through the store's ingest of it."""
    checkpoint, test_id, train_id, score = zip(*rows)
    insert_influence(con, key, pa.table({
        "seed": pa.array([seed] * len(rows), pa.int32()), "variant": [variant] * len(rows),
        "checkpoint": pa.array(checkpoint, pa.int32()), "test_id": test_id, "train_id": train_id,
        "score": pa.array(score, pa.float32()),
    }))


@pytest.fixture(scope="module")
def store():
    rng = random.Random(7)
    con = duckdb.connect()
    con.execute(schema_sql())
    con.execute("INSERT INTO runs (run_id, spec, status) VALUES (1, ?, 'completed'), (2, '{}', 'failed')",
                [json.dumps({"analysis": {"top_k": K}})])
    train = [(f"{lang}-train-{i}", lang) for lang in LANGUAGES for i in range(TRAIN)]
    test = [(f"{lang}-test-{i}", lang) for lang in LANGUAGES for i in range(TEST)]
    con.executemany("INSERT INTO examples (task_key, example_id, language, split) VALUES ('data', ?, ?, ?)",
                    [[i, lang, "train"] for i, lang in train] + [[i, lang, "test"] for i, lang in test])
    truth = {"scores": {}, "masks": {}, "accuracy": {}}
    for seed in SEEDS:
        add_task(con, 1, f"ft{seed}", "finetune", {"seed": seed}, {"data": "data"})
        for variant in VARIANTS:
            key = f"tracin{seed}{variant}"
            add_task(con, 1, key, "tracin", {"seed": seed, "variant": variant}, {"data": "data"})
            rows = []
            for c in CHECKPOINTS:
                for t, _ in test:
                    for z, _ in train:
                        score = rng.randint(-300, 300) / 64  # exact in float32 (REAL); ties happen
                        truth["scores"][(seed, variant, c, t, z)] = score
                        rows.append((c, t, z, score))
            add_scores(con, key, seed, variant, rows)
        for lang in LANGUAGES:
            key = f"prune{seed}{lang}"
            add_task(con, 1, key, "prune", {"seed": seed, "language": lang, "prune": {"threshold": 0.9, "step": 0.1}},
                     {"data": "data", "finetune": f"ft{seed}"})
            mask = {(l, h): rng.random() < 0.5 for l in range(LAYERS) for h in range(HEADS)}
            truth["masks"][(seed, lang)] = mask
            con.executemany("INSERT INTO subnetworks VALUES (?, ?, ?, ?, ?, ?, 0.5)",
                            [[key, seed, lang, l, h, kept] for (l, h), kept in mask.items()])
        for variant, key in (("full", f"ft{seed}"), ("sft", f"sft{seed}")):
            if variant == "sft":
                add_task(con, 1, key, "sparse_finetune", {"seed": seed}, {"data": "data"})
            for lang in LANGUAGES:
                for epoch in (1, 2):  # only the last epoch counts
                    value = round(rng.random(), 3)
                    truth["accuracy"][(seed, variant, lang)] = value
                    con.execute("INSERT INTO metrics VALUES (?, ?, ?, ?, 'test', 'accuracy', ?, ?)", [key, seed, variant, lang, value, epoch])
        for lang in LANGUAGES:
            value = round(rng.random(), 3)
            truth["accuracy"][(seed, "subnetwork", lang)] = value
            con.execute("INSERT INTO metrics VALUES (?, ?, 'subnetwork', ?, 'test', 'accuracy', ?, 2)", [f"prune{seed}{lang}", seed, lang, value])
    # Neither a task of another run nor one of run 1's other sweep point may leak into the analyses
    # of run 1's point "".
    add_task(con, 2, "tracin-other", "tracin", {"seed": 0, "variant": "full"}, {"data": "data"})
    add_scores(con, "tracin-other", 0, "full", [(1, "ka-test-0", "la-train-0", 1000.0)])
    add_task(con, 1, "tracin-swept", "tracin", {"seed": 0, "variant": "full"}, {"data": "data"}, point=SWEPT)
    add_scores(con, "tracin-swept", 0, "full", [(1, "ka-test-0", "la-train-0", 1000.0), (1, "ka-test-0", "ka-train-0", -1000.0)])
    truth.update(train=dict(train), test=dict(test), norms={})
    norm_rng = random.Random(11)  # its own draws: the rows above stay what they were
    for seed in SEEDS:
        for variant in VARIANTS:
            for c in CHECKPOINTS:
                for example, _ in train + test:
                    norm = truth["norms"][(seed, variant, c, example)] = norm_rng.randint(1, 400) / 8
                    con.execute("INSERT INTO gradient_norms VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [f"tracin{seed}{variant}", seed, variant, c, "train" if "train" in example else "test", example, norm])
        for lang in LANGUAGES:  # planted sets, written by the seed's fine-tuning
            planted = truth.setdefault("planted", {})[(seed, lang)] = {(l, h): norm_rng.random() < 0.5 for l in range(LAYERS) for h in range(HEADS)}
            con.executemany("INSERT INTO planted_heads VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [[f"ft{seed}", seed, lang, lang[0], l, h, kept] for (l, h), kept in planted.items()])
    return con, truth


def run(con, name, **params):
    """The rows of an analysis that average over the seeds (seed = 'mean')."""
    return [row for row in run_all(con, name, **params) if row["seed"] == "mean"]


def run_all(con, name, **params):
    if "point" in named_queries()[name].params:
        params.setdefault("point", "")
    return run_named(con, name, **params).to_pylist()


def mean_sd(values):
    values = list(values)
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def close(a, b):
    return (a is None and b is None) or a == pytest.approx(b, abs=1e-9)


def tracin_cp(truth, seed, variant, checkpoint=None):
    """{(test, train): score}, summed over checkpoints or one checkpoint's term."""
    out = {}
    for (s, v, c, t, z), score in truth["scores"].items():
        if s == seed and v == variant and checkpoint in (None, c):
            out[(t, z)] = out.get((t, z), 0.0) + score
    return out


def shares(truth, seed, variant, checkpoint=None) -> dict[tuple[str, str, str], float]:
    """{(side, t, s): M[t, s]} by the definition, with loops."""
    scores = tracin_cp(truth, seed, variant, checkpoint)
    result = {}
    for side in ("proponents", "opponents"):
        for t_lang in LANGUAGES:
            tests = [t for t, lang in truth["test"].items() if lang == t_lang]
            for s_lang in LANGUAGES:
                per_test = []
                for t in tests:
                    ranked = sorted(truth["train"], key=lambda z: (-scores[(t, z)] if side == "proponents" else scores[(t, z)], z))
                    top = ranked[:K]
                    per_test.append(sum(truth["train"][z] == s_lang for z in top) / K)
                result[(side, t_lang, s_lang)] = sum(per_test) / len(per_test)
    return result


def jaccard(truth, seed, a, b):
    x = {h for h, kept in truth["masks"][(seed, a)].items() if kept}
    y = {h for h, kept in truth["masks"][(seed, b)].items() if kept}
    return len(x & y) / len(x | y) if x | y else 1.0


def average_ranks(values):
    order = sorted(values)
    return [sum(i + 1 for i, v in enumerate(order) if v == x) / order.count(x) for x in values]


def pearson(x, y):
    mx, my = statistics.mean(x), statistics.mean(y)
    num = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return num / (sum((a - mx) ** 2 for a in x) ** 0.5 * sum((b - my) ** 2 for b in y) ** 0.5)


def test_defaults_come_from_the_last_completed_run(store):
    con, _ = store
    query = named_queries()["in_language_share"]
    assert defaults(con, query) == {"run_id": 1, "k": K}  # run 1 has two sweep points: no default point
    assert defaults(con, query, {"run_id": 2}) == {"point": ""}  # its only point; its spec has no top_k
    assert defaults(con, query, {"k": 5}) == {"run_id": 1}


def test_a_run_with_a_sweep_needs_a_point_and_gets_only_its_tasks(store):
    con, _ = store
    query = named_queries()["cross_language"]
    with pytest.raises(QueryError, match=f"--param point=.*run 1 swept several settings; its points: '', '{SWEPT}'"):
        resolve(con, query)
    with pytest.raises(QueryError, match="run 1 has no sweep point 'prune.threshold=0.7'"):
        resolve(con, query, {"point": "prune.threshold=0.7"})
    assert resolve(con, query, {"point": SWEPT}) == {"k": K, "point": SWEPT, "run_id": 1}
    with pytest.raises(QueryError, match="no run 9"):
        resolve(con, query, {"run_id": 9, "point": ""})
    # A point given to an analysis without one is ignored, as any extra parameter.
    assert "point" not in resolve(con, named_queries()["threshold_sweep"], {"point": "x"})  # it reads every point


def test_a_swept_run_from_before_points_asks_for_a_new_run(store):
    con, _ = store
    con.execute("INSERT INTO runs (run_id, spec, status) VALUES (3, '{}', 'completed')")  # no points
    try:
        with pytest.raises(QueryError, match="run 3 recorded no sweep points.*run its spec again"):
            resolve(con, named_queries()["accuracy"], {"run_id": 3})
    finally:
        con.execute("DELETE FROM runs WHERE run_id = 3")
    # k = 1: the swept task's one test example has la-train-0 on top and ka-train-0 at the bottom.
    rows = {(r["seed"], r["side"], r["test_language"], r["train_language"]): r["share"]
            for r in run_all(con, "cross_language", run_id=1, point=SWEPT, k=1)}
    assert rows == {(seed, side, "ka", lang): float(lang == top)
                    for seed in ("0", "mean") for side, top in (("proponents", "la"), ("opponents", "ka")) for lang in ("ka", "la")}


def test_accuracy(store):
    con, truth = store
    rows = run(con, "accuracy", run_id=1)
    assert [r["language"] for r in rows] == LANGUAGES
    for row in rows:
        acc = {v: [truth["accuracy"][(s, v, row["language"])] for s in SEEDS] for v in VARIANTS}
        for v in VARIANTS:
            assert (row[v], row[f"{v}_sd"]) == pytest.approx(mean_sd(acc[v]))
        assert (row["retention"], row["retention_sd"]) == pytest.approx(mean_sd([s / f for s, f in zip(acc["subnetwork"], acc["full"])]))


def test_in_language_share_and_cross_language(store):
    con, truth = store
    expected = {(s, v): shares(truth, s, v) for s in SEEDS for v in VARIANTS}
    rows = run(con, "in_language_share", run_id=1, k=K)
    assert len(rows) == len(VARIANTS) * len(LANGUAGES)
    for row in rows:
        v, t = row["variant"], row["language"]
        assert (row["s_plus"], row["s_plus_sd"]) == pytest.approx(mean_sd(expected[(s, v)][("proponents", t, t)] for s in SEEDS))
        assert (row["s_minus"], row["s_minus_sd"]) == pytest.approx(mean_sd(expected[(s, v)][("opponents", t, t)] for s in SEEDS))
        assert row["chance"] == pytest.approx(1 / 3) and row["seeds"] == 2
    rows = run(con, "cross_language", run_id=1, k=K)
    assert len(rows) == len(VARIANTS) * 2 * len(LANGUAGES) ** 2  # every (t, s), zeros included
    for row in rows:
        key = (row["side"], row["test_language"], row["train_language"])
        assert (row["share"], row["share_sd"]) == pytest.approx(mean_sd(expected[(s, row["variant"])][key] for s in SEEDS))


def test_specialization(store):
    con, truth = store
    s_plus = {(s, v, t): shares(truth, s, v)[("proponents", t, t)] for s in SEEDS for v in VARIANTS for t in LANGUAGES}
    for row in run(con, "specialization", run_id=1, k=K):
        t = row["language"]
        assert row["s_plus_full"] == pytest.approx(statistics.mean(s_plus[(s, "full", t)] for s in SEEDS))
        assert (row["subnetwork_minus_full"], row["subnetwork_minus_full_sd"]) == pytest.approx(
            mean_sd(s_plus[(s, "subnetwork", t)] - s_plus[(s, "full", t)] for s in SEEDS))
        assert (row["sft_minus_subnetwork"], row["sft_minus_subnetwork_sd"]) == pytest.approx(
            mean_sd(s_plus[(s, "sft", t)] - s_plus[(s, "subnetwork", t)] for s in SEEDS))


def test_subnetwork_similarity(store):
    con, truth = store
    rows = run(con, "subnetwork_similarity", run_id=1)
    assert len(rows) == len(LANGUAGES) ** 2
    for row in rows:
        a, b = row["language_a"], row["language_b"]
        assert (row["jaccard"], row["jaccard_sd"]) == pytest.approx(mean_sd(jaccard(truth, s, a, b) for s in SEEDS))
        kept = [sum(truth["masks"][(s, a)].values()) for s in SEEDS]
        assert row["heads_kept_a"] == pytest.approx(statistics.mean(kept))
        assert row["sparsity_a"] == pytest.approx(statistics.mean(1 - k / (LAYERS * HEADS) for k in kept))
        unused = [sum(not any(truth["masks"][(s, lang)][h] for lang in LANGUAGES) for h in truth["masks"][(s, a)]) for s in SEEDS]
        assert row["heads_kept_by_no_language"] == pytest.approx(statistics.mean(unused))


def test_similarity_vs_influence(store):
    con, truth = store
    rows = {r["variant"]: r for r in run(con, "similarity_vs_influence", run_id=1, k=K)}
    assert list(rows) == list(VARIANTS)
    for v in VARIANTS:
        per_seed = []
        for s in SEEDS:
            m = shares(truth, s, v)
            pairs = [(a, b) for a in LANGUAGES for b in LANGUAGES if a != b]
            j = [jaccard(truth, s, a, b) for a, b in pairs]
            plus = [m[("proponents", a, b)] for a, b in pairs]
            per_seed.append((pearson(j, plus), pearson(average_ranks(j), average_ranks(plus))))
        assert (rows[v]["pearson"], rows[v]["pearson_sd"]) == pytest.approx(mean_sd(p for p, _ in per_seed))
        assert (rows[v]["spearman"], rows[v]["spearman_sd"]) == pytest.approx(mean_sd(r for _, r in per_seed))
        assert rows[v]["pairs"] == 6


def test_dynamics(store):
    con, truth = store
    check_dynamics(run(con, "dynamics", run_id=1, k=K), truth)


def check_dynamics(rows, truth):
    assert len(rows) == len(VARIANTS) * len(LANGUAGES) * len(CHECKPOINTS)
    for row in rows:
        t = row["language"]
        per_seed = [shares(truth, s, row["variant"], row["epoch"])[("proponents", t, t)] for s in SEEDS]
        assert (row["s_plus"], row["s_plus_sd"]) == pytest.approx(mean_sd(per_seed))


def test_influence_mass(store):
    con, truth = store
    for row in run(con, "influence_mass", run_id=1):
        v, t_lang, s_lang = row["variant"], row["test_language"], row["train_language"]
        positive, negative = [], []
        for s in SEEDS:
            scores = tracin_cp(truth, s, v)
            pairs = [(t, z) for t, lang in truth["test"].items() if lang == t_lang for z in truth["train"]]
            pos = sum(max(scores[p], 0) for p in pairs)
            neg = sum(max(-scores[p], 0) for p in pairs)
            from_s = [p for p in pairs if truth["train"][p[1]] == s_lang]
            positive.append(sum(max(scores[p], 0) for p in from_s) / pos)
            negative.append(sum(max(-scores[p], 0) for p in from_s) / neg)
        assert (row["positive_share"], row["positive_share_sd"]) == pytest.approx(mean_sd(positive))
        assert (row["negative_share"], row["negative_share_sd"]) == pytest.approx(mean_sd(negative))


def test_a_hand_computed_case():
    """One ka test example, four training examples, scores chosen by hand."""
    con = duckdb.connect()
    con.execute(schema_sql())
    con.execute("INSERT INTO runs (run_id, status) VALUES (1, 'completed')")
    add_task(con, 1, "tr", "tracin", {}, {"data": "data"})
    con.executemany("INSERT INTO examples (task_key, example_id, language, split) VALUES ('data', ?, ?, ?)",
                    [["t", "ka", "test"], ["ka-0", "ka", "train"], ["ka-1", "ka", "train"], ["la-0", "la", "train"],
                     ["la-1", "la", "train"]])
    scores = {("ka-0", 1): 2.5, ("ka-0", 2): 0.5, ("ka-1", 1): -2.0, ("la-0", 1): -1.0, ("la-1", 1): 3.0}
    add_scores(con, "tr", 0, "full", [(c, "t", z, s) for (z, c), s in scores.items()])
    rows = {(r["side"], r["train_language"]): r["share"] for r in run(con, "cross_language", run_id=1, k=2)}
    # TracInCP: ka-0 3.0, la-1 3.0 (tie: by id, ka-0 then la-1), la-0 -1, ka-1 -2.
    assert rows == {("proponents", "ka"): 0.5, ("proponents", "la"): 0.5, ("opponents", "ka"): 0.5, ("opponents", "la"): 0.5}
    top1 = {(r["side"], r["train_language"]): r["share"] for r in run(con, "cross_language", run_id=1, k=1)}
    assert top1 == {("proponents", "ka"): 1.0, ("proponents", "la"): 0.0, ("opponents", "ka"): 1.0, ("opponents", "la"): 0.0}
    # Checkpoint 2 alone: ka-0 0.5 is the only non-zero score; the rest score nothing (no row = not scored).
    dynamics = {r["epoch"]: r["s_plus"] for r in run(con, "dynamics", run_id=1, k=1)}
    assert dynamics == {1: 0.0, 2: 1.0}  # epoch 1: la-1 (3.0) leads; epoch 2: ka-0 is the only one scored


def test_gradient_norms_by_language(store):
    """Each training language's mean gradient norm, over the mean of all languages' means, beside
    the share of proponents it supplies at that checkpoint: per seed by loops, then their mean."""
    con, truth = store
    rows = run_all(con, "gradient_norms", run_id=1, k=K)
    assert len(rows) == len(VARIANTS) * len(CHECKPOINTS) * len(LANGUAGES) * (len(SEEDS) + 1)
    for row in rows:
        seeds = SEEDS if row["seed"] == "mean" else [int(row["seed"])]
        mean, relative, drawn = [], [], []
        for seed in seeds:
            by_language = {lang: statistics.mean(truth["norms"][(seed, row["variant"], row["epoch"], z)]
                                                 for z, l in truth["train"].items() if l == lang) for lang in LANGUAGES}
            mean.append(by_language[row["language"]])
            relative.append(by_language[row["language"]] / statistics.mean(by_language.values()))
            m = shares(truth, seed, row["variant"], row["epoch"])
            drawn.append(statistics.mean(m[("proponents", t, row["language"])] for t in LANGUAGES))
        assert row["mean_norm"] == pytest.approx(statistics.mean(mean))
        assert row["relative_norm"] == pytest.approx(statistics.mean(relative))
        assert row["drawn"] == pytest.approx(statistics.mean(drawn))
        assert row["chance"] == pytest.approx(1 / len(LANGUAGES)) and row["examples"] == TRAIN


def test_planted_recovery_compares_each_pruned_mask_with_its_planted_set(store):
    con, truth = store
    rows = [r for r in run_all(con, "planted_recovery", run_id=1) if r["seed"] != "mean"]
    assert len(rows) == len(SEEDS) * len(LANGUAGES)
    for row in rows:
        key = (int(row["seed"]), row["language"])
        planted = {h for h, kept in truth["planted"][key].items() if kept}
        pruned = {h for h, kept in truth["masks"][key].items() if kept}
        assert (row["planted"], row["kept"], row["both_sets"], row["either_set"], row["heads"]) == (
            len(planted), len(pruned), len(planted & pruned), len(planted | pruned), LAYERS * HEADS)
        assert row["jaccard"] == pytest.approx(len(planted & pruned) / len(planted | pruned))
        assert row["family"] == row["language"][0]


ANALYSES = {"accuracy": {"run_id": 1}, "in_language_share": {"run_id": 1, "k": K}, "specialization": {"run_id": 1, "k": K},
            "cross_language": {"run_id": 1, "k": K}, "subnetwork_similarity": {"run_id": 1},
            "similarity_vs_influence": {"run_id": 1, "k": K}, "dynamics": {"run_id": 1, "k": K},
            "influence_mass": {"run_id": 1}, "gradient_norms": {"run_id": 1, "k": K},
            "planted_recovery": {"run_id": 1}}


@pytest.mark.parametrize("name", list(ANALYSES))
def test_each_mean_row_summarises_its_seed_rows(store, name):
    """Every analysis gives one row per seed and one 'mean' row whose values are the mean (and
    *_sd the standard deviation) of those seed rows."""
    con, _ = store
    rows = run_all(con, name, **ANALYSES[name])
    numbers = [c for c, v in rows[0].items() if isinstance(v, float) and not c.endswith("_sd")]
    keys = [c for c, v in rows[0].items() if isinstance(v, str) and c != "seed"] + (["epoch"] if "epoch" in rows[0] else [])
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    for group in groups.values():
        [mean] = [r for r in group if r["seed"] == "mean"]
        seeds = [r for r in group if r["seed"] != "mean"]
        assert sorted(r["seed"] for r in seeds) == [str(s) for s in SEEDS] and mean["seeds"] == len(SEEDS)
        for column in numbers:
            values = [r[column] for r in seeds]
            if any(v is None for v in values):
                continue
            assert mean[column] == pytest.approx(statistics.mean(values)), column
            if f"{column}_sd" in mean:
                assert mean[f"{column}_sd"] == pytest.approx(statistics.stdev(values)), column


def test_per_seed_rows_are_that_seeds_numbers(store):
    con, truth = store
    for row in run_all(con, "in_language_share", run_id=1, k=K):
        if row["seed"] != "mean":
            t = row["language"]
            assert row["s_plus"] == pytest.approx(shares(truth, int(row["seed"]), row["variant"])[("proponents", t, t)])


def test_a_k_beyond_the_proponents_table_ranks_the_raw_scores(store):
    """For k > proponents_max_k() the shares come from ranking the raw scores (as version 2 did),
    with the same answers as the table's ranks."""
    con, truth = store
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE OR REPLACE MACRO proponents_max_k() AS 1")
        con.execute("UPDATE proponents_numbered SET train_no = 0")  # wrong ranks: this path must not read them
        rows = run(con, "cross_language", run_id=1, k=K)
        dynamics = run(con, "dynamics", run_id=1, k=K)
    finally:
        con.execute("ROLLBACK")
    expected = {(s, v): shares(truth, s, v) for s in SEEDS for v in VARIANTS}
    assert len(rows) == len(VARIANTS) * 2 * len(LANGUAGES) ** 2
    for row in rows:
        key = (row["side"], row["test_language"], row["train_language"])
        assert (row["share"], row["share_sd"]) == pytest.approx(mean_sd(expected[(s, row["variant"])][key] for s in SEEDS))
    check_dynamics(dynamics, truth)


def test_the_proponents_table_ranks_by_score_then_id(store):
    """Every (task, checkpoint, test example, side) lists its training examples in the order of
    the definition: score (TracInCP, or the checkpoint's term) descending for proponents, ascending
    for opponents, ties by train_id."""
    con, truth = store
    rows = con.sql("""
        SELECT p.task_key, p.checkpoint, te.example_id AS test_id, p.side, list(tr.example_id ORDER BY p.rank) AS ranked
        FROM proponents AS p
        JOIN influence_examples AS te ON te.task_key = p.task_key AND te.role = 'test' AND te.example_no = p.test_no
        JOIN influence_examples AS tr ON tr.task_key = p.task_key AND tr.role = 'train' AND tr.example_no = p.train_no
        WHERE p.task_key LIKE 'tracin0%' OR p.task_key LIKE 'tracin1%'
        GROUP BY ALL""").to_arrow_table().to_pylist()
    assert len(rows) == len(SEEDS) * len(VARIANTS) * (len(CHECKPOINTS) + 1) * len(truth["test"]) * 2
    for row in rows:
        seed, variant = int(row["task_key"][6]), row["task_key"][7:]
        scores = tracin_cp(truth, seed, variant, row["checkpoint"])
        sign = -1 if row["side"] == "proponents" else 1
        assert row["ranked"] == sorted(truth["train"], key=lambda z: (sign * scores[(row["test_id"], z)], z))


def test_run_macros_keep_to_one_run(store):
    """Copy-pasted SQL over run_*(run) answers for that run only; last_run() is the last completed one."""
    con, _ = store
    assert con.sql("SELECT last_run()").fetchall() == [(1,)]
    keys = {run: {r[0] for r in con.sql("SELECT DISTINCT task_key FROM run_scores($r)", params={"r": run}).fetchall()}
            for run in (1, 2)}
    assert keys[2] == {"tracin-other"}
    assert keys[1] == {f"tracin{s}{v}" for s in SEEDS for v in VARIANTS} | {"tracin-swept"}
    assert con.sql("SELECT test_id, train_id, train_language, score FROM run_tracin_cp(2)").fetchall() == [
        ("ka-test-0", "la-train-0", "la", 1000.0)]
    assert con.sql("SELECT count(*) FROM run_metrics(2)").fetchall() == [(0,)]
    assert (con.sql("SELECT count(*) FROM run_metrics(1)").fetchall()
            == con.sql("SELECT count(*) FROM metrics").fetchall())
