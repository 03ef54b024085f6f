"""Ingest of a TracIn task's scores: the example ids numbered, TracInCP summed once, and each test
example's top-k proponents and opponents ranked once, so that the analyses never sort or re-sum
the raw scores (schema version 3).

The task writes `influence` with text ids (test_id, train_id). The store numbers each task's ids
(`influence_examples`): its test examples, then its training examples, each in text order, after
the numbers of the tasks already there. So one integer names an example of a task, and within a
task `train_no` order is `train_id` order: ties rank exactly as `ORDER BY score DESC, train_id` does. TracInCP is summed in float64 (exact for a few float32 terms,
so in any order) and ranked at that precision; the `tracin_cp` table keeps it as REAL like the terms.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from store.errors import StoreError

SIDES = ("proponents", "opponents")


def insert_influence(con, key: str, scores: pa.Table) -> int:
    """Insert one task's scores (columns seed, variant, checkpoint, test_id, train_id, score) into
    `influence_examples`, `influence`, `tracin_cp` and `proponents`; returns the number of scores.
    The caller holds the transaction and has deleted the task's `influence` rows."""
    for table in ("influence_examples", "tracin_cp", "proponents"):
        con.execute(f"DELETE FROM {table} WHERE task_key = ?", [key])
    if scores.num_rows == 0:
        return 0
    test_ids, test_no = number_ids(scores["test_id"])
    train_ids, train_no = number_ids(scores["train_id"])
    checkpoint = scores["checkpoint"].to_numpy()
    score = scores["score"].to_numpy().astype(np.float32, copy=False)
    seed, variant = scores["seed"][0].as_py(), scores["variant"][0].as_py()
    k = con.sql("SELECT proponents_max_k()").fetchall()[0][0]

    examples = pa.table({
        "role": ["test"] * len(test_ids) + ["train"] * len(train_ids),
        "example_no": np.concatenate([np.arange(len(test_ids)), np.arange(len(train_ids)) + len(test_ids)]).astype(np.int32),
        "example_id": pa.concat_arrays([test_ids, train_ids]),
    })
    # The task's numbers follow those of the tasks already in the store: one integer identifies an
    # example of a task, so the analyses join and group on integers alone.
    first = con.sql("SELECT coalesce(max(example_no) + 1, 0) FROM influence_examples").fetchall()[0][0]
    offsets = {"key": key, "seed": seed, "variant": variant, "test": first, "train": first + len(test_ids)}
    n_test, n_train = len(test_ids), len(train_ids)
    summed = np.zeros((n_test, n_train))  # (n_test, n_train) float64: TracInCP
    scored = np.zeros((n_test, n_train), dtype=bool)  # pairs scored at some checkpoint
    raw, ranked = [], []
    every_pair = np.repeat(np.arange(n_test, dtype=np.int32), n_train), np.tile(np.arange(n_train, dtype=np.int32), n_test)
    for c, rows in checkpoint_rows(checkpoint):
        term = score_block(rows, test_no, train_no, score, n_test, n_train)  # NaN: not scored at c
        raw.append(scored_pairs(term, int(c), every_pair))
        summed += np.nan_to_num(term)
        scored |= ~np.isnan(term)
        ranked += ranked_rows(term, k, int(c))
    summed[~scored] = np.nan
    ranked += ranked_rows(summed, k, None)
    numbered = "$seed AS seed, $variant AS variant, * REPLACE (test_no + $test AS test_no, train_no + $train AS train_no)"
    for name, table, select in (
        ("influence_examples", examples, "* REPLACE (example_no + $test AS example_no)"),
        # Rows in (checkpoint, test_no, train_no) order: train_no then compresses to almost nothing.
        # One chunk per column: DuckDB rewrites at its next checkpoint the row groups of an insert
        # that came in many Arrow chunks (measured: a third of the file left as free blocks).
        ("influence", pa.concat_tables(raw).combine_chunks(), numbered),
        ("tracin_cp", scored_pairs(summed, None, every_pair).drop_columns("checkpoint"), numbered),
        ("proponents", pa.concat_tables(ranked), numbered),
    ):
        con.register("_ingested", table)
        try:
            used = {param: value for param, value in offsets.items() if f"${param}" in f"$key {select}"}
            con.execute(f"INSERT INTO {name} BY NAME SELECT $key AS task_key, {select} FROM _ingested", used)
        finally:
            con.unregister("_ingested")
    return scores.num_rows


def checkpoint_rows(checkpoint: np.ndarray) -> list[tuple[int, slice | np.ndarray]]:
    """Each checkpoint's rows: a slice where the table comes checkpoint by checkpoint (as a TracIn
    task writes it), else a mask."""
    values = np.unique(checkpoint)
    if (np.diff(checkpoint) >= 0).all():
        starts, ends = np.searchsorted(checkpoint, values, "left"), np.searchsorted(checkpoint, values, "right")
        return [(c, slice(start, end)) for c, start, end in zip(values, starts, ends)]
    return [(c, checkpoint == c) for c in values]


def scored_pairs(block: np.ndarray, checkpoint: int | None, every_pair: tuple[np.ndarray, np.ndarray]) -> pa.Table:
    """The scored (not NaN) pairs of a (n_test, n_train) block as rows, test by test, train_no
    ascending; `every_pair`: the (test_no, train_no) columns of a block that scores every pair."""
    scored = ~np.isnan(block)
    if scored.all():  # what a TracIn task writes
        tests, trains = every_pair
        score = block.ravel()
    else:
        tests, trains = (index.astype(np.int32) for index in np.nonzero(scored))
        score = block[tests, trains]
    return pa.table({"checkpoint": pa.array(np.full(len(tests), checkpoint or 0, np.int32), mask=np.full(len(tests), checkpoint is None)),
                     "test_no": tests, "train_no": trains, "score": score.astype(np.float32, copy=False)})


def number_ids(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The column's distinct ids in text (byte) order, and each row's position among them (int32)."""
    if pa.types.is_dictionary(column.type):
        # Parquet hands back each row group's dictionary: map the small dictionaries, then the indices.
        chunks = [chunk for chunk in column.chunks if len(chunk)]
        used = [chunk.dictionary.take(pc.unique(chunk.indices)) for chunk in chunks]
        ids = _sorted_unique(pa.chunked_array(used, pa.string()))
        numbers = [pc.index_in(chunk.dictionary, value_set=ids).to_numpy(zero_copy_only=False)[chunk.indices.to_numpy()]
                   for chunk in chunks]
        return ids, np.concatenate(numbers).astype(np.int32)
    ids = _sorted_unique(column)
    return ids, pc.index_in(column, value_set=ids).to_numpy().astype(np.int32)


def _sorted_unique(column: pa.ChunkedArray) -> pa.Array:
    unique = pc.unique(column)
    if unique.null_count:
        raise StoreError("the TracIn table has rows without an example id")
    return unique.take(pc.array_sort_indices(unique))


def score_block(rows: np.ndarray, test_no, train_no, score, n_test: int, n_train: int) -> np.ndarray:
    """The scores of the selected rows (one checkpoint) as a (n_test, n_train) float32 matrix, NaN
    where a pair has no score. A pair scored twice at one checkpoint is an error."""
    block = np.full((n_test, n_train), np.nan, dtype=np.float32)
    block[test_no[rows], train_no[rows]] = score[rows]
    if np.count_nonzero(~np.isnan(block)) != len(score[rows]):
        raise StoreError("the TracIn table scores a (test, train) pair twice at one checkpoint")
    return block


def ranked_rows(scores: np.ndarray, k: int, checkpoint: int | None) -> list[pa.Table]:
    """The proponents (highest scores) and opponents (lowest) of every test example (row), ranked 1..k."""
    tables = []
    for side, oriented in zip(SIDES, (scores, -scores)):
        tests, trains, rank = highest(oriented, k)
        tables.append(pa.table({
            "checkpoint": pa.array(np.full(len(tests), checkpoint or 0, np.int32), mask=np.full(len(tests), checkpoint is None)),
            "test_no": tests.astype(np.int32),
            "side": pa.array(np.full(len(tests), side, dtype=object), pa.string()),
            "rank": rank.astype(np.int32),
            "train_no": trains.astype(np.int32),
        }))
    return tables


def highest(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's k highest scores (NaN: not scored, never chosen) as (row, column, rank 1..k) arrays;
    among equal scores the lower column comes first, as ORDER BY score DESC, train_no ranks them."""
    n_test, n_train = scores.shape
    filled = np.where(np.isnan(scores), -np.inf, scores)
    if k >= n_train:
        cols = np.tile(np.arange(n_train), (n_test, 1))
    else:
        cols = np.argpartition(filled, n_train - k, axis=1)[:, n_train - k :]  # (n_test, k): ties at the k-th value arbitrary
        values = np.take_along_axis(filled, cols, axis=1)
        kth = values.min(axis=1, keepdims=True)  # (n_test, 1): each row's k-th highest
        left_out = np.nonzero((filled == kth).sum(axis=1) != (values == kth).sum(axis=1))[0]
        for row in left_out:  # the k-th value is tied with a column left out: the lowest columns of that value
            above = np.nonzero(filled[row] > kth[row])[0]
            cols[row] = np.concatenate([above, np.nonzero(filled[row] == kth[row])[0][: k - len(above)]])
    values = np.take_along_axis(filled, cols, axis=1)
    order = np.lexsort((cols, -values), axis=1)  # each row: score descending, then column
    cols, values = np.take_along_axis(cols, order, axis=1), np.take_along_axis(values, order, axis=1)
    rows, rank = np.indices(cols.shape)
    kept = values > -np.inf  # drop the unscored
    return rows[kept], cols[kept], rank[kept] + 1
