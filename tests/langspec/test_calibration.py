"""The calibration benchmark's core at a small size: synthetic studies with seed effects and test
examples shared by every seed, run through the real findings code. Its intervals keep their rate;
an interval that took the test examples for independent replications would not (checked on the
same studies, so the test would fail if findings used that unit)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

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
