"""The store's schema and its versions: the tables, views and macros (store/schema/*.sql), run on
every writer open, and the migrations that bring an older store up to this version."""

from __future__ import annotations

from pathlib import Path

import duckdb

SCHEMA_VERSION = 7
# The schema, run in this order on every run: tables (CREATE IF NOT EXISTS), then the migrations of
# an older store, then the views and macros (CREATE OR REPLACE), which DuckDB binds to the tables.
SCHEMA_DIR = Path(__file__).with_name("schema")
SCHEMA_FILES = tuple(SCHEMA_DIR / f"{part}.sql" for part in ("tables", "views", "macros"))


def schema_sql() -> str:
    """The whole schema as one script, for a new database."""
    return "\n".join(path.read_text() for path in SCHEMA_FILES)


def _influence_to_v3(con: duckdb.DuckDBPyConnection) -> None:
    """Version 2's `influence` (text ids, every query summing and ranking) becomes version 3's:
    each task's scores go through the same ingest as a new task's (numbered ids, `tracin_cp`,
    `proponents`)."""
    con.execute("DROP VIEW IF EXISTS influence_by_language")  # version 2's, on the old columns
    con.execute("ALTER TABLE influence RENAME TO influence_v2")
    for path in SCHEMA_FILES:  # the new `influence`, and the views and macros that ingest uses
        con.execute(path.read_text())
    from store.influence import insert_influence

    keys = [row[0] for row in con.sql("SELECT DISTINCT task_key FROM influence_v2 ORDER BY 1").fetchall()]
    for key in keys:
        scores = con.sql("SELECT seed, variant, checkpoint, test_id, train_id, score FROM influence_v2 WHERE task_key = $key",
                         params={"key": key}).to_arrow_table()
        insert_influence(con, key, scores)
    con.execute("DROP TABLE influence_v2")


def _scores_to_v5(con: duckdb.DuckDBPyConnection) -> None:
    """Version 4's score tables, each row with its task's key, seed and variant, become version 5's,
    which name the task by number (`influence_tasks`); rows keep their order. A version-2 store has
    none: its migration ingested its scores into version 5's tables already."""
    if not con.sql("SELECT 1 FROM duckdb_tables() WHERE table_name = 'proponents'").fetchall():
        return
    for view in ("influence_by_language", "tracin_cp_by_language"):  # version 4's, on the old tables
        con.execute(f"DROP VIEW IF EXISTS {view}")
    # Numbered in the order the tasks were ingested (their example numbers'), so the rows keep their order.
    con.execute("INSERT INTO influence_tasks SELECT row_number() OVER (ORDER BY first_example) - 1, task_key, seed, variant "
                "FROM (SELECT DISTINCT task_key, seed, variant FROM proponents) "
                "JOIN (SELECT task_key, min(example_no) AS first_example FROM influence_examples GROUP BY task_key) USING (task_key)")
    tasks = con.sql("SELECT task_no, task_key FROM influence_tasks ORDER BY task_no").fetchall()
    for old, columns in (("influence", "checkpoint, test_no, train_no, score"), ("tracin_cp", "test_no, train_no, score"),
                         ("proponents", "checkpoint, test_no, side, rank, train_no")):
        for task_no, key in tasks:
            con.execute(f"INSERT INTO {old}_numbered SELECT $no, {columns} FROM {old} WHERE task_key = $key", {"no": task_no, "key": key})
        con.execute(f"DROP TABLE {old}")


# How a store of an older version becomes the current one, run after tables.sql has created what is
# new (an SQL statement, or a function of the connection). 1 -> 2: the `points` table. A version-1
# run without a sweep is its one point ''; a swept one gets no points (which of its tasks formed
# which point was not recorded), and the analyses ask for a new run of its spec (cached, seconds).
# The version-1 macros, renamed since, go. 2 -> 3: integer example ids in `influence`, TracInCP and
# the ranked `proponents` stored at ingest. 3 -> 4: the tables `mask_transfer` and `ablation_examples`
# (tables.sql creates them) and the views that read them (`subnetwork_masks` gained `model`), which
# every writer open replaces anyway: nothing more to do. 4 -> 5: the score tables name their task by
# number; `influence`, `tracin_cp` and `proponents` become views with the same columns. 5 -> 6: the
# tables `gradient_norms` (TracIn) and `planted_heads` (fine-tuning with planted modules), which
# tables.sql creates: nothing more to do. 6 -> 7: the table `head_effects`, which tables.sql creates; the
# version moves because an analysis reads it (planted_recovery_by_effects), and a query on a store whose
# writer never created the table would fail to bind: a read-only open asks for a run to upgrade it instead.
MIGRATIONS = {
    1: [
        "INSERT INTO points SELECT DISTINCT t.run_id, '', t.task_key FROM tasks AS t JOIN runs AS r USING (run_id) "
        "WHERE coalesce(CAST(r.spec -> 'sweep' AS VARCHAR), '{}') IN ('{}', 'null')",
        "DROP MACRO TABLE IF EXISTS language_shares",
        "DROP MACRO TABLE IF EXISTS run_influence",
    ],
    2: [_influence_to_v3],
    3: [],
    4: [_scores_to_v5],
    5: [],
    6: [],
}


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The store's schema version; None for a new, empty database."""
    if not con.sql("SELECT 1 FROM duckdb_tables() WHERE table_name = 'meta'").fetchall():
        return None
    found = con.sql("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    return int(found[0][0]) if found else None


def migratable(version: int) -> bool:
    return version < SCHEMA_VERSION and all(v in MIGRATIONS for v in range(version, SCHEMA_VERSION))
