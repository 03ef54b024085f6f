"""The report's figures draw what their questions test: the accuracy bars zoomed to the data with
their values and the chance line, and Q4's figure its own statistic (size-adjusted Jaccard against
the full model's M+), on a hand-built store (tests/langspec/test_findings.py)."""

from __future__ import annotations

import numpy as np
import pytest

from langspec.science import figures, findings
from store.queries import run_named
from tests.langspec.test_findings import K, build


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The matplotlib figures the functions save, kept open to be read."""
    kept: list = []
    monkeypatch.setattr(figures, "_save", lambda fig, out, file, title, caption, layout=True: kept.append(fig) or
                        figures.Figure(file, title, caption))
    return kept


def test_the_accuracy_bars_are_zoomed_to_the_data_and_carry_their_values_and_chance(drawn, tmp_path):
    rows = [{"language": "ka", "full": 0.92, "full_sd": 0.01, "subnetwork": 0.85, "subnetwork_sd": 0.02, "sft": None, "sft_sd": None},
            {"language": "la", "full": 0.90, "full_sd": 0.01, "subnetwork": 0.88, "subnetwork_sd": 0.01, "sft": None, "sft_sd": None}]
    figures.accuracy(rows, 3, tmp_path)
    ax = drawn[0].axes[0]
    low, high = ax.get_ylim()
    assert 0.2 < low < 1 / 3 and 0.93 <= high <= 1.0  # from just below chance to just above the best bar, not 0 to 1
    assert {"0.920", "0.850", "0.900", "0.880"} <= {text.get_text() for text in ax.texts}
    chance = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(1 / 3)
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1  # the legend lies beside the bars


def test_the_similarity_figure_plots_what_q4_correlates_and_its_r(drawn, tmp_path):
    con = build()
    study = findings.load(con, 1, "", K)
    q4 = next(f for f in findings.findings(study) if f.question == "Q4")
    cross = [r for r in run_named(con, "cross_language", run_id=1, point="", k=K).to_pylist() if r["seed"] == "mean"]
    figures.similarity_vs_influence(study, cross, q4, tmp_path)
    ax = drawn[0].axes[0]
    share = {(r["test_language"], r["train_language"]): r["share"] for r in cross if r["variant"] == "full" and r["side"] == "proponents"}
    pairs = sorted(study.jaccard_excess[0])
    expected = [(np.mean([study.jaccard_excess[seed][pair] for seed in study.seeds]), share[pair]) for pair in pairs]
    assert np.ravel(ax.collections[0].get_offsets()).tolist() == pytest.approx(np.ravel(expected).tolist())  # adjusted J; full model's M+
    interval = f" [{q4.interval[0]:+.2f}, {q4.interval[1]:+.2f}]" if q4.interval else ""  # none below 4 languages
    assert f"r = {q4.statistic:+.2f}{interval}" in ax.get_title() and "full model" in ax.get_title()
