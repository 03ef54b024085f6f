"""The DuckDB store: idempotent ingest, one writer, read-only readers, schema versions."""

from __future__ import annotations

import json
import multiprocessing
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store.artifacts import seal, task_dir
from store.connections import DB_FILE, connect_read_only
from store.db import COMPACTING_FILE, StoreWriter
from store.migrations import SCHEMA_VERSION
from store.errors import StoreError

KEY = "a" * 64  # a task key: 64 hexadecimal digits


def write_task_tables(root, key=KEY, n=5):
    tables = task_dir(root, key) / "tables"
    tables.mkdir(parents=True)
    metrics = pa.table({
        "seed": pa.array([0] * n, pa.int32()), "variant": ["full"] * n, "language": [f"l{i}" for i in range(n)],
        "split": ["test"] * n, "metric": ["accuracy"] * n, "value": [i / n for i in range(n)],
        "epoch": pa.array([1] * n, pa.int32()),
    })
    pq.write_table(metrics, tables / "metrics.parquet")
    checkpoints = pa.table({"seed": [0], "variant": ["full"], "epoch": [1], "step": [10], "learning_rate": [1e-3],
                            "path": ["checkpoints/epoch-1"]})
    pq.write_table(checkpoints, tables / "checkpoints.parquet")
    seal(task_dir(root, key), {})


def rows(root, sql):
    with connect_read_only(root) as con:
        return con.sql(sql).fetchall()


def test_ingest_twice_gives_the_same_rows(tmp_path):
    write_task_tables(tmp_path)
    with StoreWriter(tmp_path) as writer:
        counts = writer.ingest(KEY, "finetune", "finetune[seed=0]")
        first = rows(tmp_path, "SELECT * FROM metrics ORDER BY language")  # readable between the writer's transactions
        writer.ingest(KEY, "finetune", "finetune[seed=0]")
        assert rows(tmp_path, "SELECT * FROM metrics ORDER BY language") == first
        assert writer.is_ingested(KEY)
    assert counts == {"metrics": 5, "checkpoints": 1}
    assert rows(tmp_path, "SELECT count(*), min(task_key), max(task_key) FROM metrics") == [(5, KEY, KEY)]
    # paths are rebased from the task directory to the store root
    assert rows(tmp_path, "SELECT path FROM checkpoints") == [(f"tasks/{KEY}/checkpoints/epoch-1",)]


def test_ingest_replaces_only_that_tasks_rows(tmp_path):
    other = "b" * 64
    write_task_tables(tmp_path, KEY, n=5)
    write_task_tables(tmp_path, other, n=3)
    with StoreWriter(tmp_path) as writer:
        writer.ingest(KEY, "finetune", "a")
        writer.ingest(other, "finetune", "b")
        writer.ingest(KEY, "finetune", "a")
    assert rows(tmp_path, "SELECT task_key, count(*) FROM metrics GROUP BY ALL ORDER BY 1") == [(KEY, 5), (other, 3)]


def test_failed_ingest_leaves_no_rows(tmp_path):
    write_task_tables(tmp_path)
    pq.write_table(pa.table({"nonsense_column": [1]}), task_dir(tmp_path, KEY) / "tables" / "prune_steps.parquet")
    seal(task_dir(tmp_path, KEY), {})
    with StoreWriter(tmp_path) as writer:
        with pytest.raises(duckdb.Error):
            writer.ingest(KEY, "finetune", "a")
        assert rows(tmp_path, "SELECT count(*) FROM metrics") == [(0,)]
        assert not writer.is_ingested(KEY)


def test_unknown_table_is_refused(tmp_path):
    write_task_tables(tmp_path)
    pq.write_table(pa.table({"x": [1]}), task_dir(tmp_path, KEY) / "tables" / "runs.parquet")
    seal(task_dir(tmp_path, KEY), {})
    with StoreWriter(tmp_path) as writer, pytest.raises(StoreError, match="tables the store does not know: runs"):
        writer.ingest(KEY, "finetune", "a")


def test_read_only_connection_cannot_write(tmp_path):
    StoreWriter(tmp_path).close()
    with connect_read_only(tmp_path) as con, pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DELETE FROM metrics")


def _try_second_writer(root, queue):
    try:
        StoreWriter(root).close()
        queue.put("opened")
    except StoreError as error:
        queue.put(str(error))


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    import os

    with StoreWriter(tmp_path):
        queue = multiprocessing.get_context("spawn").Queue()
        process = multiprocessing.get_context("spawn").Process(target=_try_second_writer, args=(tmp_path, queue))
        process.start()
        process.join(60)
        message = queue.get(timeout=5)
        assert f"in use by another langspec run (pid {os.getpid()})" in message
        with connect_read_only(tmp_path) as con:  # between the writer's transactions the store is readable
            assert con.sql("SELECT count(*) FROM runs").fetchall() == [(0,)]
    StoreWriter(tmp_path).close()  # released on exit


def _hold_the_database(root, read_only, seconds, queue):
    """Another process with the database open (a run's transaction, or a reader's query) for a while."""
    import time

    with duckdb.connect(str(root / DB_FILE), read_only=read_only):
        queue.put("open")
        time.sleep(seconds)


def _holding(root, read_only, seconds):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_hold_the_database, args=(root, read_only, seconds, queue))
    process.start()
    assert queue.get(timeout=60) == "open"
    return process


def test_readers_and_the_writer_wait_for_each_other(tmp_path, monkeypatch):
    """DuckDB locks its file per process: a reader waits out a writer's transaction, the writer
    waits out a reader's query (saying for whom after a while), and only a hold far longer than
    that is an error that names the holder."""
    import time

    import store.db

    StoreWriter(tmp_path).close()
    writing = _holding(tmp_path, read_only=False, seconds=1.5)
    started = time.monotonic()
    with connect_read_only(tmp_path) as con:  # waits for the "transaction" to end, then reads
        assert time.monotonic() - started > 0.5 and con.sql("SELECT count(*) FROM runs").fetchall() == [(0,)]
    writing.join(30)

    writing = _holding(tmp_path, read_only=False, seconds=30)
    with pytest.raises(StoreError, match=f"is busy: process {writing.pid} .* for over 1 s"):
        connect_read_only(tmp_path, wait_s=1)
    writing.kill(), writing.join(30)

    notes = []
    monkeypatch.setattr(store.db, "WRITE_NOTE_S", 0.3)
    with StoreWriter(tmp_path, notify=notes.append) as writer:
        reading = _holding(tmp_path, read_only=True, seconds=1.5)
        run_id = writer.begin_run(spec_name="s", spec_path="s.yaml", spec_text="", overrides=[], spec_json="{}", spec_hash="h",
                                  git_commit=None, versions={}, host="h", executor="local")
        assert notes and f"waiting for process {reading.pid}" in notes[0]
        reading.join(30)
        monkeypatch.setattr(store.db, "WRITE_WAIT_S", 1)
        reading = _holding(tmp_path, read_only=True, seconds=30)
        with pytest.raises(StoreError, match=f"held open by process {reading.pid} .* close that connection"):
            writer.finish_run(run_id, "completed")
        reading.kill(), reading.join(30)
    assert rows(tmp_path, "SELECT run_id, status FROM runs") == [(run_id, "running")]


def test_store_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot write the store"):
        StoreWriter(blocker / "store")


def test_other_schema_version_is_refused(tmp_path):
    StoreWriter(tmp_path).close()
    con = duckdb.connect(str(tmp_path / DB_FILE))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    con = duckdb.connect(str(tmp_path / DB_FILE))
    con.execute("DROP VIEW final_metrics")  # to see whether the refusal ran schema.sql on the store
    con.close()
    with pytest.raises(StoreError, match=f"schema version 99, this langspec reads version {SCHEMA_VERSION}"):
        StoreWriter(tmp_path)
    with pytest.raises(StoreError, match="schema version 99.*the langspec version that wrote it"):
        connect_read_only(tmp_path)
    with duckdb.connect(str(tmp_path / DB_FILE), read_only=True) as con:  # untouched
        assert con.sql("SELECT count(*) FROM duckdb_views() WHERE view_name = 'final_metrics'").fetchall() == [(0,)]


def test_a_tracin_task_that_scored_no_pair_is_ingested_without_scores(tmp_path):
    """A TracIn task without test examples, or whose every score is NaN, has its examples and no
    scores; it owns no task number, and the tasks after it are numbered as usual."""
    import numpy as np

    from runners.tables import write_arrow
    from store.influence import influence_tables

    train_ids = ["ka-train-0", "ka-train-1"]
    tasks = {  # key: test ids, the scores (n_test, n_train), the rows ingested per table
        "e" * 64: ([], np.zeros((0, 2), np.float32), (2, 0, 0, 0)),
        "d" * 64: (["ka-test-0"], np.full((1, 2), np.nan, np.float32), (3, 0, 0, 0)),
        "f" * 64: (["ka-test-0"], np.array([[0.5, -0.25]], np.float32), (3, 2, 2, 2 * 2 * 2)),  # 2 sides x 2 ranks x (checkpoint, TracInCP)
    }
    with StoreWriter(tmp_path) as writer:
        for key, (test_ids, block, expected) in tasks.items():
            for name, table in influence_tables(0, "full", test_ids, train_ids, [(1, block)]).items():
                write_arrow(task_dir(tmp_path, key), name, table)
            seal(task_dir(tmp_path, key), {})
            assert writer.ingest(key, "tracin", key, ("influence",)) == dict(zip(("influence_examples", "influence", "tracin_cp", "proponents"), expected))
    assert rows(tmp_path, "SELECT task_key, seed, variant FROM influence_tasks") == [("f" * 64, 0, "full")]
    assert rows(tmp_path, "SELECT left(task_key, 1), min(example_no), max(example_no) FROM influence_examples GROUP BY 1 ORDER BY 2") == [
        ("e", 0, 1), ("d", 2, 4), ("f", 5, 7)]
    assert rows(tmp_path, "SELECT left(task_key, 1), test_no, train_no, score FROM influence ORDER BY train_no") == [("f", 5, 6, 0.5), ("f", 5, 7, -0.25)]


# The schema of older versions as they shipped, verbatim: version 2's store/schema.sql, version 4's
# store/schema/{tables,views,macros}.sql.
OLD_SCHEMAS = {2: Path(__file__).with_name("schema_v2.sql"), 4: Path(__file__).with_name("schema_v4.sql")}


def old_store(root, version: int) -> duckdb.DuckDBPyConnection:
    """A store as langspec's schema `version` created it (its schema and its meta rows)."""
    root.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(root / DB_FILE))
    con.execute(OLD_SCHEMAS[version].read_text())
    con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('langspec_version', '0.1.0'), ('duckdb_version', '2.0.0')", [str(version)])
    return con


def test_a_version_1_store_is_migrated_by_the_next_run(tmp_path):
    """Version 1 had no `points`: an unswept run's tasks become its one point ''; a swept run gets
    none (the analyses then ask for a new run); version 1's macros go. Until a run migrates the
    store, readers are told how to upgrade it instead of getting empty analyses."""
    con = old_store(tmp_path, 2)
    for run_id, spec, keys in ((1, '{"sweep": {}}', ("a", "b")), (2, '{"sweep": {"prune.threshold": [0.9, 0.95]}}', ("c",))):
        con.execute("INSERT INTO runs (run_id, spec, status) VALUES (?, ?, 'completed')", [run_id, spec])
        for key in keys:
            con.execute("INSERT INTO tasks (run_id, task_key, name, stage, outcome) VALUES (?, ?, ?, 'finetune', 'ran')", [run_id, key, key])
    con.execute("DROP TABLE points")
    con.execute("CREATE MACRO language_shares(run, per_checkpoint) AS TABLE SELECT task_key FROM tasks WHERE run_id = run")
    con.execute("CREATE MACRO run_influence(run, per_checkpoint) AS TABLE SELECT task_key FROM tasks WHERE run_id = run")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="schema version 1.*langspec run SPEC --store .* upgrades it"):
        connect_read_only(tmp_path)
    StoreWriter(tmp_path).close()
    assert rows(tmp_path, "SELECT run_id, point, task_key FROM points ORDER BY task_key") == [(1, "", "a"), (1, "", "b")]
    assert rows(tmp_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert rows(tmp_path, "SELECT count(*) FROM duckdb_functions() WHERE function_name IN ('language_shares', 'run_influence')") == [(0,)]


def test_a_version_without_a_migration_is_refused_with_the_way_out(tmp_path):
    StoreWriter(tmp_path).close()
    con = duckdb.connect(str(tmp_path / DB_FILE))
    con.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="schema version 0.*use a new --store DIR"):
        connect_read_only(tmp_path)


def test_a_version_2_store_is_migrated_and_answers_as_before(tmp_path):
    """Version 3 numbers the example ids of `influence` and stores TracInCP and the ranked
    proponents. A version-2 store's scores go through the same ingest: its shares, from version 2's
    own macro before the migration, are the same after it, and its tables equal those of the same
    scores ingested by a version-3 store."""
    rng = random.Random(3)
    languages, train, test = ("ka", "la"), 6, 2
    con = old_store(tmp_path / "v2", 2)
    con.execute("INSERT INTO runs (run_id, spec, status) VALUES (1, '{}', 'completed')")
    examples = [(f"{lang}-{split}-{i}", lang, split) for lang in languages for split, n in (("train", train), ("test", test)) for i in range(n)]
    con.executemany("INSERT INTO examples (task_key, example_id, language, split) VALUES ('data', ?, ?, ?)", examples)
    scores = []
    for seed, variant in ((0, "full"), (0, "sft")):
        key = {"full": "a", "sft": "b"}[variant] * 64  # task keys, in the order of the variants
        con.execute("INSERT INTO tasks (run_id, task_key, name, stage, params, inputs, outcome) VALUES (1, ?, ?, 'tracin', '{}', ?, 'ran')",
                    [key, key, json.dumps({"data": "data"})])
        con.execute("INSERT INTO points VALUES (1, '', ?)", [key])
        for c in (1, 2, 3):
            for t, _, split in examples:
                for z, _, z_split in examples:
                    if split == "test" and z_split == "train":
                        scores.append((key, seed, variant, c, t, z, rng.randint(-20, 20) / 8))  # ties
    con.executemany("INSERT INTO influence VALUES (?, ?, ?, ?, ?, ?, ?)", scores)
    shares = "SELECT * FROM point_shares(1, '', $k, $per) ORDER BY ALL"
    before = {(k, per): con.sql(shares, params={"k": k, "per": per}).fetchall() for k in (1, 3, len(languages) * train) for per in (False, True)}
    con.close()

    StoreWriter(tmp_path / "v2").close()
    with connect_read_only(tmp_path / "v2") as con:
        assert con.sql("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
        assert {key: con.sql(shares, params={"k": key[0], "per": key[1]}).fetchall() for key in before} == before
        migrated = {table: con.sql(f"SELECT * EXCLUDE (task_key), task_key FROM {table} ORDER BY ALL").fetchall()
                    for table in ("influence_examples", "influence", "tracin_cp", "proponents")}
        assert con.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'influence_v2'").fetchall() == [(0,)]

    for key in sorted({row[0] for row in scores}):  # the same scores as a version-3 TracIn task writes them
        task = [row for row in scores if row[0] == key]
        tables = task_dir(tmp_path / "v3", key) / "tables"
        tables.mkdir(parents=True)
        pq.write_table(pa.table({
            "seed": pa.array([r[1] for r in task], pa.int32()), "variant": [r[2] for r in task],
            "checkpoint": pa.array([r[3] for r in task], pa.int32()), "test_id": [r[4] for r in task],
            "train_id": [r[5] for r in task], "score": pa.array([r[6] for r in task], pa.float32()),
        }), tables / "influence.parquet")
        seal(task_dir(tmp_path / "v3", key), {})
    with StoreWriter(tmp_path / "v3") as writer:
        for key in sorted({row[0] for row in scores}):
            assert writer.ingest(key, "tracin", key) == {"influence": len(scores) // 2}
        ingested = {table: rows(tmp_path / "v3", f"SELECT * EXCLUDE (task_key), task_key FROM {table} ORDER BY ALL")
                    for table in migrated}
    assert ingested == migrated
    n_test, n_train = len(languages) * test, len(languages) * train
    assert len(migrated["proponents"]) == 2 * 2 * n_test * 4 * n_train  # (task, side, test, checkpoint or TracInCP), all ranked


def dropped_blocks_and_pending_rewrite(root) -> None:
    """A version-5 store as a migration leaves it when it is killed before its rewrite: the blocks of
    a dropped table free in the file and the rewrite still marked in meta."""
    StoreWriter(root).close()
    with duckdb.connect(str(root / DB_FILE)) as con:
        con.execute("CREATE TABLE dropped AS SELECT range AS x FROM range(1000000)")
        con.execute("INSERT INTO metrics (task_key, value) SELECT 'k', range FROM range(1000000)")  # blocks after the dropped table's
        con.execute("CHECKPOINT")
        con.execute("DROP TABLE dropped")
        con.execute("CHECKPOINT")
        con.execute("INSERT INTO meta VALUES ('compact', 'after the migration from version 4')")
        assert con.sql("SELECT free_blocks FROM pragma_database_size()").fetchall()[0][0] > 0


def test_a_rewrite_that_did_not_happen_is_done_by_the_next_writer(tmp_path):
    """A rewrite of the database after a migration that was killed (here with half a copy left) is
    done by the next writer: no free blocks, no mark, no copy, the rows kept."""
    dropped_blocks_and_pending_rewrite(tmp_path)
    (tmp_path / COMPACTING_FILE).write_bytes(b"half of a copy")
    StoreWriter(tmp_path).close()
    assert rows(tmp_path, "SELECT free_blocks FROM pragma_database_size()") == [(0,)]
    assert rows(tmp_path, "SELECT count(*) FROM meta WHERE key = 'compact'") == [(0,)]
    assert rows(tmp_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert rows(tmp_path, "SELECT count(*), sum(value) FROM metrics") == [(1000000, 999999 * 1000000 / 2)]
    assert not (tmp_path / COMPACTING_FILE).exists()


def test_a_rewrite_that_fails_is_said_and_leaves_a_working_store(tmp_path):
    """A rewrite that fails (here: a directory where its new file goes) does not fail the writer: it
    says why, the store works as it was, and the next writer tries again."""
    dropped_blocks_and_pending_rewrite(tmp_path)
    (tmp_path / COMPACTING_FILE).mkdir()
    said = []
    with StoreWriter(tmp_path, notify=said.append) as writer:
        run_id = writer.begin_run(spec_name="s", spec_path="s.yaml", spec_text="", overrides=[], spec_json="{}", spec_hash="h",
                                  git_commit=None, versions={}, host="h", executor="local")
        writer.finish_run(run_id, "completed")
    assert len(said) == 1 and "could not rewrite the store's database" in said[0] and "the next run tries again" in said[0]
    assert rows(tmp_path, "SELECT status FROM runs") == [("completed",)]
    assert rows(tmp_path, "SELECT count(*) FROM meta WHERE key = 'compact'") == [(1,)]
    (tmp_path / COMPACTING_FILE).rmdir()
    StoreWriter(tmp_path).close()
    assert rows(tmp_path, "SELECT free_blocks FROM pragma_database_size()") == [(0,)]
    assert rows(tmp_path, "SELECT status FROM runs") == [("completed",)]


def test_meta_and_interrupted_runs(tmp_path):
    with StoreWriter(tmp_path) as writer:
        first = writer.begin_run(spec_name="s", spec_path="s.yaml", spec_text="", overrides=[], spec_json="{}", spec_hash="h",
                                 git_commit=None, versions={"duckdb": duckdb.__version__}, host="h", executor="local")
    # The first run never finished (its driver was killed); the next one marks it interrupted.
    with StoreWriter(tmp_path) as writer:
        second = writer.begin_run(spec_name="s", spec_path="s.yaml", spec_text="", overrides=[], spec_json="{}", spec_hash="h",
                                  git_commit=None, versions={}, host="h", executor="local")
        writer.finish_run(second, "completed")
    assert rows(tmp_path, "SELECT run_id, status FROM runs ORDER BY run_id") == [(first, "interrupted"), (second, "completed")]
    meta = dict(rows(tmp_path, "SELECT key, value FROM meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION) and meta["duckdb_version"] == duckdb.__version__
    assert json.loads(rows(tmp_path, "SELECT versions FROM runs WHERE run_id = 1")[0][0]) == {"duckdb": duckdb.__version__}


def test_an_attempt_of_a_fenced_out_run_cannot_commit(tmp_path):
    from store import artifacts, attempts

    old, new = artifacts.new_token(), artifacts.new_token()
    artifacts.set_fence(tmp_path, old)
    attempt, resumed = attempts.start_attempt(tmp_path, KEY, old, resumable=False)
    (attempt / "tables").mkdir()
    (attempt / "tables" / "metrics.parquet").write_bytes(b"x")
    artifacts.set_fence(tmp_path, new)  # a new run owns the store
    with pytest.raises(artifacts.FencedOut):
        artifacts.commit(attempt, tmp_path, KEY, old, {"tables": ["metrics"]})
    assert not artifacts.task_dir(tmp_path, KEY).exists() and not resumed
    artifacts.set_fence(tmp_path, old)
    assert artifacts.commit(attempt, tmp_path, KEY, old, {"tables": ["metrics"]})
    assert artifacts.is_complete(tmp_path, KEY, ("metrics",))


def test_a_commit_never_replaces_a_complete_result(tmp_path):
    from store import artifacts, attempts

    token = artifacts.new_token()
    artifacts.set_fence(tmp_path, token)
    results = []
    for content in (b"first", b"second"):
        attempt, _ = attempts.start_attempt(tmp_path, KEY, token, resumable=False)
        (attempt / "result.bin").write_bytes(content)
        results.append(artifacts.commit(attempt, tmp_path, KEY, token, {}))
    assert results == [True, False]
    assert (artifacts.task_dir(tmp_path, KEY) / "result.bin").read_bytes() == b"first"
    assert list(artifacts.attempts_dir(tmp_path).iterdir()) == []


def test_a_tracin_tasks_own_tables_equal_the_ingest_of_its_text_ids(tmp_path):
    """Since #13 the TracIn task numbers, sums and ranks its scores itself and the driver copies the
    tables; a task directory from before holds text ids, which the ingest numbers and ranks. Both give
    the same rows, ties (scores in steps of 1/8) and a pair left unscored at one checkpoint included,
    and a second task's numbers follow the first's."""
    import numpy as np

    from runners.tables import write_arrow
    from store.influence import INFLUENCE_TABLES, influence_tables

    rng = np.random.default_rng(5)
    test_ids, train_ids = ["la-test-1", "ka-test-0", "ka-test-1"], [f"{lang}-train-{i}" for i in (3, 1, 2, 0) for lang in ("la", "ka")]
    terms = [(c, rng.integers(-4, 5, (len(test_ids), len(train_ids))).astype(np.float32) / 8) for c in (1, 2)]
    terms[1][1][0, 2] = np.nan
    scores = [(c, t, z, float(block[i, j])) for c, block in terms for i, t in enumerate(test_ids) for j, z in enumerate(train_ids)
            if not np.isnan(block[i, j])]
    keys = ("c" * 64, "d" * 64)
    for key in keys:
        tables = task_dir(tmp_path / "text", key) / "tables"
        tables.mkdir(parents=True)
        pq.write_table(pa.table({"seed": pa.array([0] * len(scores), pa.int32()), "variant": ["sft"] * len(scores),
                                 "checkpoint": pa.array([r[0] for r in scores], pa.int32()), "test_id": [r[1] for r in scores],
                                 "train_id": [r[2] for r in scores], "score": pa.array([r[3] for r in scores], pa.float32())}),
                       tables / "influence.parquet")
        seal(task_dir(tmp_path / "text", key), {})
        for name, table in influence_tables(0, "sft", test_ids, train_ids, terms).items():
            write_arrow(task_dir(tmp_path / "task", key), name, table)
        seal(task_dir(tmp_path / "task", key), {})
    for root in (tmp_path / "text", tmp_path / "task"):
        with StoreWriter(root) as writer:
            for key in keys:
                assert writer.ingest(key, "tracin", "tracin", ("influence",))["influence"] == len(scores)
    text, task = ({table: rows(root, f"SELECT * EXCLUDE (task_key), task_key FROM {table} ORDER BY ALL") for table in INFLUENCE_TABLES}
                  for root in (tmp_path / "text", tmp_path / "task"))
    assert text == task
    assert len(text["proponents"]) == 2 * (2 * 3 * len(test_ids) * len(train_ids) - 2)  # every pair ranked, the unscored one not
    numbers = rows(tmp_path / "task", "SELECT task_key, min(example_no), max(example_no) FROM influence_examples GROUP BY 1 ORDER BY 1")
    n = len(test_ids) + len(train_ids)
    assert numbers == [(keys[0], 0, n - 1), (keys[1], n, 2 * n - 1)]


def test_a_version_3_store_is_upgraded_by_the_next_run(tmp_path):
    with old_store(tmp_path, 4) as con:  # less what version 4 added: as the langspec of version 3 left it
        con.execute("DROP VIEW ablation_effects")
        con.execute("DROP TABLE ablation_examples")
        con.execute("DROP TABLE mask_transfer")
        con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=f"schema version 3, this langspec reads version {SCHEMA_VERSION}: `langspec run SPEC --store"):
        connect_read_only(tmp_path)
    StoreWriter(tmp_path).close()  # what a (cached) run does first
    with connect_read_only(tmp_path) as con:
        assert con.sql("SELECT count(*) FROM ablation_effects").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM mask_transfer").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM proponents").fetchall() == [(0,)]


def test_a_version_4_store_is_migrated_and_answers_as_before(tmp_path):
    """Version 5's score tables name their task by number and `influence`, `tracin_cp` and
    `proponents` become views with the same columns. A version-4 store with two TracIn tasks (rows
    as version 4's ingest wrote them, ties included) gives the same shares and the same rows after
    the migration as before it, the same rows as the same tasks ingested into a new store, and its
    score rows keep their order (what their compression rests on). The database is then rewritten,
    so the blocks of the dropped tables do not stay in the file."""
    import numpy as np

    from runners.tables import write_arrow
    from store.influence import INFLUENCE_TABLES, influence_tables

    rng = np.random.default_rng(4)
    test_ids, train_ids = [f"{lang}-test-{i}" for lang in ("ka", "la") for i in range(2)], [f"{lang}-train-{i}" for lang in ("ka", "la") for i in range(5)]
    tasks = {{"sft": "e", "full": "a"}[variant] * 64: (0, variant, [(c, rng.integers(-4, 5, (4, 10)).astype(np.float32) / 8) for c in (1, 2, 3)])
             for variant in ("sft", "full")}  # ingested in an order other than their keys'
    con = old_store(tmp_path / "v4", 4)
    con.execute("INSERT INTO runs (run_id, spec, status) VALUES (1, '{}', 'completed')")
    con.executemany("INSERT INTO examples (task_key, example_id, language, split) VALUES ('data', ?, ?, ?)",
                    [(e, e[:2], e.split("-")[1]) for e in test_ids + train_ids])
    first = 0
    for key, (seed, variant, terms) in tasks.items():
        con.execute("INSERT INTO tasks (run_id, task_key, name, stage, params, inputs, outcome) VALUES (1, ?, ?, 'tracin', '{}', ?, 'ran')",
                    [key, key, json.dumps({"data": "data"})])
        con.execute("INSERT INTO points VALUES (1, '', ?)", [key])
        for name, table in influence_tables(seed, variant, test_ids, train_ids, terms).items():  # as version 4's insert_tables
            numbered = {"influence_examples": ["example_no"]}.get(name, ["test_no", "train_no"])
            con.register("task_table", table)
            con.execute(f"INSERT INTO {name} BY NAME SELECT $key AS task_key, * REPLACE ({', '.join(f'{c} + $first AS {c}' for c in numbered)}) "
                        "FROM task_table", {"key": key, "first": first})
            con.unregister("task_table")
        first += len(test_ids) + len(train_ids)
    shares = "SELECT * FROM point_shares(1, '', $k, $per) ORDER BY ALL"
    cases = [(k, per) for k in (1, 3, 20) for per in (False, True)]
    before = [con.sql(shares, params={"k": k, "per": per}).fetchall() for k, per in cases]
    read = {table: f"SELECT * EXCLUDE (task_key), task_key FROM {table} ORDER BY ALL" for table in INFLUENCE_TABLES}
    tables_before = {table: con.sql(sql).fetchall() for table, sql in read.items()}
    order_before = con.sql("SELECT test_no, train_no FROM influence").fetchall()
    con.close()

    StoreWriter(tmp_path / "v4").close()
    with connect_read_only(tmp_path / "v4") as con:
        assert con.sql("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
        assert [con.sql(shares, params={"k": k, "per": per}).fetchall() for k, per in cases] == before
        assert {table: con.sql(sql).fetchall() for table, sql in read.items()} == tables_before
        assert con.sql("SELECT test_no, train_no FROM influence_numbered").fetchall() == order_before
        assert con.sql("SELECT table_type, count(*) FROM information_schema.tables WHERE table_name IN ('influence', 'tracin_cp', 'proponents') "
                       "GROUP BY 1").fetchall() == [("VIEW", 3)]
        assert con.sql("SELECT free_blocks FROM pragma_database_size()").fetchall() == [(0,)]  # rewritten: the old tables' blocks are gone
    assert not (tmp_path / "v4" / f"{DB_FILE}.compacting").exists()

    with StoreWriter(tmp_path / "v5") as writer:
        for key, (seed, variant, terms) in tasks.items():
            for name, table in influence_tables(seed, variant, test_ids, train_ids, terms).items():
                write_arrow(task_dir(tmp_path / "v5", key), name, table)
            seal(task_dir(tmp_path / "v5", key), {})
            writer.ingest(key, "tracin", key, ("influence",))
    assert {table: rows(tmp_path / "v5", sql) for table, sql in read.items()} == tables_before
