"""A TracIn task's scores as the store keeps them: the example ids numbered, TracInCP summed once, and
each test example's top-k proponents and opponents ranked once, so that the analyses never sort or
re-sum the raw scores (schema version 3); the score tables name their task by number (version 5).

Each task's examples are numbered (`influence_examples`): its test examples, then its training
examples, each in text order of their ids, and in the store after the numbers of the tasks already
there. So one integer names an example of a task, and within a task `train_no` order is `train_id`
order: ties rank exactly as `ORDER BY score DESC, train_id` does. TracInCP is summed in float64
(exact for a few float32 terms, so in any order) and ranked at that precision; the `tracin_cp`
table keeps it as REAL like the terms.

The TracIn task computes these tables itself (`influence_tables`, where it holds the scores
already) and the driver only copies them in (`insert_tables`). A task directory written before
that holds `influence` with text ids; `insert_influence` computes the same tables from it at ingest.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from store.artifacts import INFLUENCE_TABLES
from store.errors import StoreError

SIDES = ("proponents", "opponents")


# Each test example's proponents and opponents are ranked up to this k (the schema's proponents_max_k()).
PROPONENTS_MAX_K = 100
NUMBERED_COLUMNS = {"influence_examples": ("example_no",), "influence": ("test_no", "train_no"),
                    "tracin_cp": ("test_no", "train_no"), "proponents": ("test_no", "train_no")}


def influence_tables(seed: int, variant: str, test_ids: list[str], train_ids: list[str], terms, k: int = PROPONENTS_MAX_K) -> dict[str, pa.Table]:
    """The tables of `INFLUENCE_TABLES` for one TracIn task, numbered within the task: its test examples
    from 0, then its training examples, each in text order of their ids (so ties rank as by train_id).

    terms: (checkpoint, (n_test, n_train) float32 scores) pairs, rows and columns in the order of
    `test_ids` and `train_ids`; NaN marks a pair not scored at that checkpoint."""
    test_order, train_order = _text_order(test_ids), _text_order(train_ids)
    blocks = ((c, np.asarray(block, dtype=np.float32)[test_order][:, train_order]) for c, block in terms)
    return _numbered(seed, variant, pa.array(test_ids, pa.string()).take(test_order),
                     pa.array(train_ids, pa.string()).take(train_order), blocks, k)


def _text_order(ids: list[str]) -> np.ndarray:
    order = pc.array_sort_indices(pa.array(ids, pa.string())).to_numpy()
    if len(set(ids)) != len(ids):
        raise StoreError("the TracIn task scores an example twice")
    return order


def _numbered(seed: int, variant: str, test_ids: pa.Array, train_ids: pa.Array, blocks, k: int) -> dict[str, pa.Table]:
    """The tables from the blocks of each checkpoint, ids already in text order."""
    n_test, n_train = len(test_ids), len(train_ids)
    examples = pa.table({
        "role": ["test"] * n_test + ["train"] * n_train,
        "example_no": np.arange(n_test + n_train, dtype=np.int32),
        "example_id": pa.concat_arrays([test_ids, train_ids]),
    })
    summed = np.zeros((n_test, n_train))  # (n_test, n_train) float64: TracInCP
    scored = np.zeros((n_test, n_train), dtype=bool)  # pairs scored at some checkpoint
    raw, ranked = [], []
    every_pair = np.repeat(np.arange(n_test, dtype=np.int32), n_train), np.tile(np.arange(n_train, dtype=np.int32), n_test)
    for c, term in blocks:  # term: (n_test, n_train) float32, NaN: not scored at c
        raw.append(scored_pairs(term, int(c), every_pair))
        summed += np.nan_to_num(term)
        scored |= ~np.isnan(term)
        ranked += ranked_rows(term, k, int(c))
    summed[~scored] = np.nan
    ranked += ranked_rows(summed, k, None)

    def numbered(table: pa.Table, *columns: str) -> pa.Table:  # training examples come after the test examples
        for name in columns:
            table = table.set_column(table.schema.get_field_index(name), name, pc.add(table[name], np.int32(n_test)))
        ids = {"seed": pa.repeat(pa.scalar(seed, pa.int32()), table.num_rows), "variant": pa.repeat(pa.scalar(variant), table.num_rows)}
        return pa.table({**ids, **{name: table[name] for name in table.column_names}})

    return {
        "influence_examples": examples,
        # Rows in (checkpoint, test_no, train_no) order: train_no then compresses to almost nothing.
        # One chunk per column: DuckDB rewrites at its next checkpoint the row groups of an insert
        # that came in many Arrow chunks (measured: a third of the file left as free blocks).
        "influence": numbered(pa.concat_tables(raw).combine_chunks(), "train_no"),
        "tracin_cp": numbered(scored_pairs(summed, None, every_pair).drop_columns("checkpoint"), "train_no"),
        "proponents": numbered(pa.concat_tables(ranked), "train_no"),
    }


def insert_influence(con, key: str, scores: pa.Table) -> int:
    """Insert one task's scores as TracIn tasks wrote them before #13 (columns seed, variant, checkpoint,
    test_id, train_id, score) into the tables of `INFLUENCE_TABLES`; returns the number of scores. The
    caller holds the transaction and has deleted the task's rows (`delete_task`)."""
    if scores.num_rows == 0:
        return 0
    test_ids, test_no = number_ids(scores["test_id"])
    train_ids, train_no = number_ids(scores["train_id"])
    checkpoint = scores["checkpoint"].to_numpy()
    score = scores["score"].to_numpy().astype(np.float32, copy=False)
    seed, variant = scores["seed"][0].as_py(), scores["variant"][0].as_py()
    n_test, n_train = len(test_ids), len(train_ids)
    blocks = ((c, score_block(rows, test_no, train_no, score, n_test, n_train)) for c, rows in checkpoint_rows(checkpoint))
    tables = _numbered(seed, variant, test_ids, train_ids, blocks, PROPONENTS_MAX_K)
    insert_tables(con, key, {name: ("arrow", table) for name, table in tables.items()})
    return scores.num_rows


# Where each table of a TracIn task goes in the store (schema version 5): its scores under the task's
# number (`influence_tasks`), its examples under its key; example numbers follow the tasks already there.
STORE_TABLES = {"influence_examples": "influence_examples", "influence": "influence_numbered",
                "tracin_cp": "tracin_cp_numbered", "proponents": "proponents_numbered"}


def insert_tables(con, key: str, sources: dict[str, tuple[str, object]]) -> dict[str, int]:
    """Copy a task's tables of `INFLUENCE_TABLES`, numbered within the task, into the store: the scores
    under a new task number, the example numbers after those of the tasks already there (so the
    analyses join and group on integers alone). sources: table -> ("parquet", path) or ("arrow", table).
    Returns the rows per table; the caller holds the transaction and has deleted the task's rows
    (`delete_task`), as the store's ingest does for every table of a task."""
    first = con.sql("SELECT coalesce(max(example_no) + 1, 0) FROM influence_examples").fetchall()[0][0]
    task_no = con.sql("SELECT coalesce(max(task_no) + 1, 0) FROM influence_tasks").fetchall()[0][0]
    with _readable(con, *sources["proponents"]) as (rows, params):  # every score row carries the task's seed and variant
        owners = con.execute(f"SELECT DISTINCT seed, variant FROM {rows}", params).fetchall()
    if len(owners) > 1:
        raise StoreError(f"the TracIn task's scores name more than one seed and variant: {owners}")
    if owners:  # none: the task scored no pair (no test examples, or every score NaN)
        con.execute("INSERT INTO influence_tasks VALUES (?, ?, ?, ?)", [task_no, key, *owners[0]])
    counts = {}
    for name in INFLUENCE_TABLES:
        with _readable(con, *sources[name]) as (rows, params):
            if name == "influence_examples":
                select, params = "$key AS task_key, *", {**params, "key": key}
            else:
                select, params = "$task_no AS task_no, * EXCLUDE (seed, variant)", {**params, "task_no": task_no}
            columns = ", ".join(f"{column} + $first AS {column}" for column in NUMBERED_COLUMNS[name])
            counts[name] = con.execute(f"INSERT INTO {STORE_TABLES[name]} BY NAME SELECT {select} REPLACE ({columns}) FROM {rows}",
                                       {**params, "first": first}).fetchall()[0][0]
    if not owners and (counts["influence"] or counts["tracin_cp"]):  # rows no task would own: refused, the transaction rolls back
        raise StoreError("the TracIn task has scores but no ranked proponents; `langspec verify --repair` sets it aside")
    return counts


@contextmanager
def _readable(con, kind: str, source):
    """What reads one of a task's tables in SQL, with its parameters: its Parquet file, or an Arrow table."""
    if kind == "parquet":
        yield "read_parquet($path)", {"path": str(source)}
        return
    con.register("_ingested", source)
    try:
        yield "_ingested", {}
    finally:
        con.unregister("_ingested")


def delete_task(con, key: str) -> None:
    """Delete a TracIn task's rows from the store's influence tables (none if it has none)."""
    for (task_no,) in con.sql("SELECT task_no FROM influence_tasks WHERE task_key = $key", params={"key": key}).fetchall():
        for table in ("influence_numbered", "tracin_cp_numbered", "proponents_numbered"):
            con.execute(f"DELETE FROM {table} WHERE task_no = ?", [task_no])
    con.execute("DELETE FROM influence_tasks WHERE task_key = ?", [key])
    con.execute("DELETE FROM influence_examples WHERE task_key = ?", [key])


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
