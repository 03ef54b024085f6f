"""Promise 8: the same spec and seed give the same metrics, masks and influence scores, bit for bit,
on the same machine (CPU): two stores, every stage, compared row by row."""

from __future__ import annotations

from contents import TABLES, store_contents
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

def test_two_runs_of_one_spec_agree_bit_for_bit(spec_file, tmp_path):
    loaded = load_spec(spec_file(SPEC))
    graph = compile_spec(loaded)
    stores = [tmp_path / "a", tmp_path / "b"]
    for store in stores:
        assert execute(graph, loaded, store, executor="local").status == "completed"
    a, b = (store_contents(store) for store in stores)
    assert all(a[t] for t in TABLES)  # every stage wrote rows
    for table in TABLES:
        assert a[table] == b[table], table
