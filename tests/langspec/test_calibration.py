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

from langspec.science import findings, stats

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
    data, structure, failed = calibration.fixed_study(calibration.FIXED, calibration.POOL[:4], 3, rng)
    assert failed == []  # no seed fails in this world
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


def test_a_failed_seed_world_states_its_truth_as_the_mixture_mean_and_counts_the_flagged_seed():
    """failed-seed: a seed fails with chance 0.15 and moves Q1 and Q3 by -0.2 in it; the truth is the
    mixture mean (-0.03 beside the fixed structure's own value), and the count says whether the
    seed the findings flag is the one that failed."""
    world = calibration.FAILED_SEED
    rng = np.random.default_rng(2)
    failures, seeds_drawn = 0, 0
    for _ in range(20):
        data, structure, failed = calibration.fixed_study(world, calibration.POOL[:3], 3, rng)
        failures, seeds_drawn = failures + len(failed), seeds_drawn + 3
    assert 2 <= failures <= 18  # 0.15 of 60 seeds: about 9, sd 2.8
    # a failed seed moves Q1's own-minus-other accuracy of every pair by failure_shift, as a seed shift does
    rng = np.random.default_rng(3)
    while True:
        data, structure, failed = calibration.fixed_study(world, calibration.POOL[:3], 5, rng)
        if failed:
            break
    by_seed = {}
    for r in data.mask_transfer:
        if r["language"] != r["mask_language"]:
            by_seed.setdefault(int(r["seed"]), []).append(r["own_minus_this"])
    sound = [s for s in range(5) if s not in failed]
    assert np.mean([np.mean(by_seed[s]) for s in failed]) < np.mean([np.mean(by_seed[s]) for s in sound]) - 0.1
    truth = calibration.these_languages_truth(world, structure, rng)
    off = ~np.eye(3, dtype=bool)
    assert truth["Q1"] == pytest.approx((np.diag(structure.cell)[:, None] - structure.cell)[off].mean() - 0.03, abs=1e-12)
    inter = structure.interaction  # S+ is cut at 0.02: a failed seed's sft share meets the cut, a little
    assert truth["Q3"] == pytest.approx((inter["sft"] - inter["subnetwork"]).mean() - 0.03, abs=0.005)
    # the counting: a flagged seed that failed is caught, one that did not is a false flag
    cell = calibration._new_cell()
    finding = findings.Finding("Q1", "t", "greater", findings.INCONCLUSIVE, 0.0, "d", [-1.0, 1.0], 0.5, None, True, None, {}, [], "",
                               details={"failed_seeds": {"flagged": [1, 4]}})
    calibration._count(cell, finding, 0.0, finding.interval, finding.verdict, [4])
    calibration._count(cell, finding, 2.0, finding.interval, finding.verdict, [])
    rates = calibration._rates(cell)
    assert (rates["with_failure"], rates["caught"], rates["flagged_sound"]) == (0.5, 1.0, 1.0)
    assert rates["coverage_diagnosed"] == 0.5 and rates["coverage_undiagnosed"] is None


def test_skewed_test_examples_have_mean_zero_and_a_long_right_tail():
    """skewed: each test example's lognormal lift, centred on its population mean (0) with sd lift_sd;
    the truth of Q2 and Q3 is its mixture mean, the cut of S+ to [0.02, 0.98] included."""
    world = calibration.SKEWED
    lift = calibration._lift(world, 1.0, (200_000,), np.random.default_rng(4))
    assert abs(lift.mean()) < 0.003 and lift.std() == pytest.approx(world.lift_sd, rel=0.05)
    assert stats.skewness(lift) > 3 and np.median(lift) < 0  # most test examples move little, a few much
    assert not calibration._lift(calibration.FIXED, 1.0, (3,), np.random.default_rng(4)).any()
    data, structure, failed = calibration.fixed_study(world, calibration.POOL[:3], 3, np.random.default_rng(5))
    assert failed == [] and 0.5 <= structure.lift_sigma <= 2.0
    # Q2's per-example difference (subnetwork minus full, mean over seeds) carries each example's lift once
    difference = findings.paired(data, "subnetwork", "full")
    examples = sorted(difference[0])
    mean = [np.mean([difference[s][z] for s in range(3)]) for z in examples]
    lift = [structure.lift[calibration.POOL.index(z.split("-")[0]), int(z.rsplit("-", 1)[1])] for z in examples]
    assert len(examples) == 36 and stats.correlation(mean, lift, "spearman") > 0.4  # without the lift: 0 ± 0.17
