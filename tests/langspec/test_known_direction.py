"""A known direction through the whole pipeline (#38): P1's TracIn part, the share of a test example's
top-k proponents from its related language minus that from an unrelated one, on a small world that
plants the relation, and on the same world with its language labels permuted.

What the world plants. ka and kb are one toy family (runners.methods.toy): the same word order and half
of their words (`data.lexicon_overlap: 0.5`; the tiny model's tokenizer is word-level, so those words
are the same token ids and embedding rows). la is another family: its own syllables (no word in common
with ka or kb) and word order. The model plants language modules on top (`planted.overlap: 0`): with
2 x 2 heads, family k's examples train through two heads and family l's through the other two, and
each family's examples ask the other family's heads to write nothing on them (`planted.silence`).

Why the direction follows. TracIn (`normalize: cosine`) scores a training example for a test example by
the cosine of their loss gradients, summed over the checkpoints. A ka test example and a kb training
example have half their embedding rows in common, and their gradients load mostly on the same two heads,
the heads that did their family's work in training; a ka and an la example have no embedding row in
common, load mostly on different heads, and meet only in the parameters every example uses
(feed-forward layers, norms, positions, the classifier). So kb's training examples score higher for ka's
test examples than la's do, and take more of their top-k: P1's statistic is above 0.

The null. `data.shuffle_languages: true` permutes the language labels within each split; the modules
follow the labels, so they too are dealt out at random over the texts. Nothing about the labelled
families is then in the texts or in which heads a text trained, and P1's statistic centres on 0.

How robust (benchmarks/known_direction.py: this test's run with data.seed = i and training seeds
[2i, 2i + 1], i = 0..9, and the same run at `planted.overlap: 1`, on the busy 2-core machine on
2026-12-06; replicate 0 is this test, +0.265 planted and -0.026 permuted):

| | P1 median [quartiles] | range | above 0 | above MARGIN (0.1) | below the planted point |
|---|---|---|---|---|---|
| planted (this world) | +0.235 [+0.214, +0.283] | +0.184 to +0.328 | 10/10 | 10/10 | - |
| labels permuted (this test's null) | +0.011 [-0.025, +0.042] | -0.071 to +0.149 | 6/10 | 1/10 | 10/10 |
| data families only (`planted.overlap: 1`) | +0.122 [+0.072, +0.170] | +0.020 to +0.203 | 10/10 | 7/10 | 10/10 |
| labels permuted, no modules | -0.009 [-0.025, +0.001] | -0.052 to +0.062 | 3/10 | 0/10 | 10/10 |

The test asserts the planted statistic above MARGIN (its smallest was 0.184) and the null's below the
planted one (the smallest gap in a replicate was 0.165). The first assertion fails on 9 of the 10 nulls.
The verdicts are not asserted: with 2 seeds and 20 test examples per language, a seed's model is at the
chance gate in 8 of the 10 planted replicates, and a crossed interval over 2 seeds is wide. The shared
words and word order alone (overlap 1) give half the planted statistic, as on the full-size controls
(docs/known-answers.md: +0.14 against +0.31), but too little to assert at this size. The test takes
about 26 s on the idle 2-core machine, two tasks at a time on the suite's Ray (34 s one at a time).

    nice -n 5 .venv/bin/python benchmarks/known_direction.py --replicates 10
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from langspec.cli import app

MARGIN = 0.1  # P1 above it in 10 of 10 planted replicates, in 1 of 10 null ones (the docstring's table)
LABELS = "sweep={data.shuffle_languages: [false, true]}"  # the world as planted, then its null, in one run
PLANTED, NULL = "data.shuffle_languages=false", "data.shuffle_languages=true"  # spelled as in the spec
WORLD = """\
name: known_direction
data: {source: toy, languages: [ka, kb, la], train_per_language: 300, validation_per_language: 20,
       test_per_language: 20, seed: 0}
model: {tiny: {layers: 2, heads: 2, hidden: 32, intermediate: 64, vocab_size: 400}}
seeds: [0, 1]
finetune: {epochs: 8, lr: 3.0e-3, batch_size: 16, max_length: 32}
planted: {overlap: 0.0}
prune: {enabled: false}
sparse_finetune: {enabled: false}
tracin: {enabled: true, variants: [full], train_per_language: 100, test_per_language: 20, normalize: cosine}
analysis: {top_k: 15}
resources: {default: {num_cpus: 1}}
"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def p1(store, point, out) -> dict:
    """P1's finding at a sweep point, from the findings.json of `langspec report`."""
    reported = invoke("report", "--store", store, "--point", point, "--out", out)
    assert reported.exit_code == 0, reported.output
    return next(f for f in json.loads((out / "findings.json").read_text()) if f["question"] == "P1")


def test_tracin_sends_related_languages_more_proponents_where_families_are_planted(tmp_path, ray_session):
    (tmp_path / "world.yaml").write_text(WORLD)
    store = tmp_path / "results"
    ran = invoke("run", tmp_path / "world.yaml", "--store", store, "--set", LABELS)  # the suite's Ray: two tasks at a time
    assert ran.exit_code == 0, ran.output
    unnamed = invoke("report", "--store", store)  # two points: the report asks which, as its own option spells it
    assert unnamed.exit_code == 2 and "`langspec report` needs --point ..." in unnamed.output and PLANTED in unnamed.output
    planted, null = p1(store, PLANTED, tmp_path / "planted"), p1(store, NULL, tmp_path / "null")
    assert planted["claimed"] == "greater" and planted["details"]["related"] == {"ka": ["kb"], "kb": ["ka"]}
    assert planted["n"] == null["n"] == {"seeds": 2, "test_examples": 40, "related_pairs": 1, "k": 15}  # ka's and kb's 20 each
    assert planted["statistic"] > MARGIN, planted["sentence"]
    assert null["statistic"] < planted["statistic"], null["sentence"]
