"""The report's summary states the numbers it is given, and says so when a question cannot be answered."""

from __future__ import annotations

from langspec.report import summary


def test_summary_answers_from_the_numbers():
    data = {
        "accuracy": [{"retention": 0.97}, {"retention": 1.02}],
        "subnetwork_similarity": [
            {"language_a": "ka", "language_b": "ka", "jaccard": 1.0, "heads_kept_a": 6, "sparsity_a": 0.625},
            {"language_a": "ka", "language_b": "la", "jaccard": 0.2, "heads_kept_a": 6, "sparsity_a": 0.625},
            {"language_a": "la", "language_b": "ka", "jaccard": 0.2, "heads_kept_a": 10, "sparsity_a": 0.375},
        ],
        "specialization": [
            {"subnetwork_minus_full": 0.05, "sft_minus_subnetwork": -0.01},
            {"subnetwork_minus_full": 0.03, "sft_minus_subnetwork": 0.02},
        ],
        "similarity_vs_influence": [{"variant": "full", "pearson": 0.8, "spearman": 0.7}],
    }
    subnetworks, specialisation, similarity = summary(data)
    assert "with 6 to 10 of 16 heads" in subnetworks and "97% or more" in subnetworks and "0.20" in subnetworks
    assert specialisation.startswith("Subnetworks rely more") and "+0.040" in specialisation and "2 of 2 languages up" in specialisation
    assert "+0.005" in specialisation and "1 of 2 up" in specialisation
    assert similarity.startswith("Similar subnetworks go together with") and "Pearson 0.80, Spearman 0.70" in similarity


def test_summary_of_a_run_without_the_later_stages():
    empty = {"accuracy": [{"retention": None}], "subnetwork_similarity": [], "specialization": [], "similarity_vs_influence": []}
    sentences = summary(empty)
    assert sentences[0] == "Subnetworks: this run has no prune results (prune.enabled: false)."
    assert "lacks" in sentences[1] and "lacks" in sentences[2]
