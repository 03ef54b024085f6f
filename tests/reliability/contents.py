"""What a store holds, as plain rows: two stores with equal contents hold the same study."""

from __future__ import annotations

import duckdb

TABLES = {
    "metrics": "seed, variant, language, split, metric, epoch, value",
    "checkpoints": "seed, variant, epoch, step, learning_rate",
    "subnetworks": "seed, language, layer, head, kept, importance",
    "prune_steps": "seed, language, step, heads_kept, metric_value",
    "mask_transfer": "seed, language, mask_language, split, epoch, heads_kept, examples, correct, accuracy",
    "influence_by_language": "seed, variant, checkpoint, test_id, train_id, score",  # influence with its examples' ids
    "tracin_cp_by_language": "seed, variant, test_id, train_id, score",
}


def store_contents(store) -> dict[str, list[tuple]]:
    """Every result row of every table (without task keys), sorted."""
    with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as con:
        return {table: con.sql(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall() for table, columns in TABLES.items()}


def duplicate_rows(store) -> dict[str, int]:
    """Rows that appear more than once within one task, per table (0 everywhere in a sound store)."""
    with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as con:
        return {table: con.sql(f"SELECT count(*) - count(DISTINCT (task_key, {columns})) FROM {table}").fetchall()[0][0]
                for table, columns in TABLES.items()}
