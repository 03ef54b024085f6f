"""The calibration benchmark's core at a small size: synthetic studies with seed effects and test
examples shared by every seed, run through the real findings code. Its intervals keep their rate;
an interval that took the test examples for independent replications would not (checked on the
same studies, so the test would fail if findings used that unit)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from langspec.science import findings

spec = importlib.util.spec_from_file_location("calibration", Path(__file__).parents[2] / "benchmarks" / "calibration.py")
calibration = importlib.util.module_from_spec(spec)
sys.modules["calibration"] = calibration  # its dataclasses look their module up there
spec.loader.exec_module(calibration)


def test_intervals_keep_their_rate_where_pooling_the_examples_would_not():
    rng = np.random.default_rng(5)
    world = calibration.World(seed_sd=0.06)  # strong seed effects: what pooling the examples ignores
    studies, covered, pooled, supported = 60, 0, 0, {q: 0 for q in calibration.QUESTIONS}
    for _ in range(studies):
        data = calibration.study(world, 3, rng)
        answers = {f.question: f for f in findings.findings(data)}
        q2 = answers["Q2"]
        covered += q2.interval[0] <= 0 <= q2.interval[1]
        differences = np.array([d for by_test in findings.paired(data, "subnetwork", "full").values() for d in by_test.values()])
        half = 1.96 * differences.std(ddof=1) / np.sqrt(len(differences))  # every (seed, example) as a replication
        pooled += differences.mean() - half <= 0 <= differences.mean() + half
        for q, f in answers.items():
            supported[q] += f.verdict == findings.SUPPORTED
    assert covered / studies >= 0.85, covered
    assert pooled / studies <= 0.6, pooled  # the world punishes the wrong unit
    assert all(count / studies <= 0.1 for count in supported.values()), supported


def test_the_fixed_language_worlds_name_their_estimand_and_keep_their_structure_across_seeds():
    """The scenario whose languages keep their structure from seed to seed: below 6 languages every
    verdict is about these languages; at 6, Q1, Q4, Q6 and P1 are about languages in general, and
    the seed-based interval beside them is counted against these languages' truth."""
    rows = calibration.calibrate_fixed(2, 0, (3, 6), None)
    estimands = {(r["languages"], r["question"], r["estimand"]) for r in rows}
    assert {(3, q, "these languages") for q in calibration.QUESTIONS} <= estimands
    for q in ("Q1", "Q4", "Q6", "P1"):
        assert {(6, q, "languages in general"), (6, q, "these (beside)")} <= estimands and (6, q, "these languages") not in estimands
    rng = np.random.default_rng(1)
    data, structure = calibration.fixed_study(calibration.FIXED, calibration.POOL[:4], 3, rng)
    # Q1's cells are the structure's own in every seed: the seeds' own-minus-other differ only by a shift and noise
    by_seed = {}
    for r in data.mask_transfer:
        if r["language"] != r["mask_language"]:
            by_seed.setdefault(r["seed"], []).append(r["own_minus_this"])
    first, second = np.array(by_seed["0"]), np.array(by_seed["1"])
    assert np.corrcoef(first, second)[0, 1] > 0.8
    truth = calibration.these_languages_truth(calibration.FIXED, structure, rng)
    accuracy = structure.cell + structure.mask_level[None, :]
    off = ~np.eye(4, dtype=bool)
    assert truth["Q1"] == pytest.approx((np.diag(accuracy)[:, None] - accuracy)[off].mean(), abs=1e-12)
