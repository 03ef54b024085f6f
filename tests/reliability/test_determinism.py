"""Promise 8: the same spec and seed give the same metrics, masks and influence scores, bit for bit,
on the same machine (CPU): two stores, every stage, compared row by row."""

from __future__ import annotations

import duckdb

from langspec.compile import compile_spec
from langspec.execute import execute
from langspec.load import load_spec

SPEC = """\
    name: same
    data: {source: toy, languages: [ka, la], train_per_language: 80, validation_per_language: 20, test_per_language: 10}
    model: {tiny: {layers: 2, heads: 2, hidden: 16, intermediate: 32, vocab_size: 200}}
    seeds: [0]
    finetune: {epochs: 2, lr: 1.0e-3, batch_size: 16, max_length: 32}
    prune: {enabled: true, threshold: 0.9}
    sparse_finetune: {enabled: true}
    tracin: {enabled: true, train_per_language: 10, test_per_language: 3}
    analysis: {top_k: 5}
    resources: {default: {num_cpus: 1}}
"""

TABLES = {
    "metrics": "seed, variant, language, split, metric, epoch, value",
    "checkpoints": "seed, variant, epoch, step, learning_rate",
    "subnetworks": "seed, language, layer, head, kept, importance",
    "prune_steps": "seed, language, step, heads_kept, metric_value",
    "influence_by_language": "seed, variant, checkpoint, test_id, train_id, score",  # influence with its examples' ids
    "tracin_cp_by_language": "seed, variant, test_id, train_id, score",
}


def test_two_runs_of_one_spec_agree_bit_for_bit(spec_file, tmp_path):
    loaded = load_spec(spec_file(SPEC))
    graph = compile_spec(loaded)
    stores = [tmp_path / "a", tmp_path / "b"]
    for store in stores:
        assert execute(graph, loaded, store, executor="local").status == "completed"
    contents = []
    for store in stores:
        with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as con:
            contents.append({t: con.sql(f"SELECT {cols} FROM {t} ORDER BY ALL").fetchall() for t, cols in TABLES.items()})
    a, b = contents
    assert all(a[t] for t in TABLES)  # every stage wrote rows
    for table in TABLES:
        assert a[table] == b[table], table
