"""Do the findings keep their nominal rates? Synthetic studies whose truth is planted, run through the
real findings code (`langspec.science.findings.findings` on a `StudyData`, the same function the report calls),
at 2, 3 and 5 seeds.

Each study has the structure the toy study shows: per-seed effects (each seed's training moves every
statistic a little), per-test-example effects crossed with the seeds (the same test examples are
scored in every seed), and per-test-language row effects (some languages lean on their own data
more than others); TracIn's top-k proponents are drawn as counts, so shares are discrete as in a
real run. Worlds:
    null   no question's claim holds (every statistic's truth is 0)
    power  each question's claim holds by a planted effect of a size the toy study could have

Per question and seed count it prints the interval's coverage of the truth (in the null world), the
rate of `supported` and of `contradicted` under the null, and the rate of `supported` at the planted
effect (power). Targets: coverage >= 0.93 at 3 and 5 seeds; false `supported` <= 0.05 at every count.

Run (from the repository root; about 10 minutes on 2 cores at the default 1,000 studies per cell):
    .venv/bin/python benchmarks/calibration.py [--studies 1000] [--json calibration.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langspec.science import findings, tracin_vs_ablation  # noqa: E402
from runners.methods.toy import FAMILIES  # noqa: E402

LANGUAGES = ("ka", "kb", "la", "lb", "mi")
QUESTIONS = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "P1")
SEED_COUNTS = (2, 3, 5)
HEADS = 16
K = 20  # proponents per test example
TEST_PER_LANGUAGE = 12
CHECKPOINTS = (1, 2, 3)


@dataclass(frozen=True)
class World:
    """The sizes of a synthetic study's effects (standard deviations, on the scale of S+ and accuracy)."""

    seed_sd: float = 0.03  # a seed's shift of each variant's S+ (and of Q1's accuracy difference)
    example_sd: float = 0.05  # a test example's own S+ per variant, the same in every seed
    language_sd: float = 0.05  # a test language's own S+ level (row effect), shared by every variant
    effect: float = 0.0  # the planted size of every question's claim: 0 is the null world


NULL = World()
POWER = World(effect=0.1)


def study(world: World, seeds: int, rng: np.random.Generator) -> findings.StudyData:
    """One synthetic study's data, as findings.load would read it from a store."""
    test = [(f"{t}-test-{i}", t) for t in LANGUAGES for i in range(TEST_PER_LANGUAGE)]
    row = {t: rng.normal(0, world.language_sd) for t in LANGUAGES}
    example = {v: {z: rng.normal(0, world.example_sd) for z, _ in test} for v in ("full", "subnetwork", "sft")}
    masks = {s: _masks(rng, world.effect > 0) for s in range(seeds)}
    excess = {s: _jaccard_excess(masks[s]) for s in range(seeds)}
    proponents: dict = {}
    for s in range(seeds):
        shift = {v: rng.normal(0, world.seed_sd) for v in ("full", "subnetwork", "sft")}
        slope = {v: rng.normal(0, world.seed_sd / 2) for v in ("full", "sft")}
        for variant in ("full", "subnetwork", "sft"):
            lift = {"full": 0.0, "subnetwork": world.effect, "sft": 2 * world.effect}[variant]  # Q2 and Q3
            for checkpoint in (None, *CHECKPOINTS):
                rise = 0.0 if checkpoint is None or variant == "subnetwork" else \
                    (checkpoint - 2) * (slope[variant] + (world.effect / 2 if variant == "sft" else 0.0))  # Q5
                by_test = proponents.setdefault((variant, checkpoint), {}).setdefault(s, {})
                for z, t in test:
                    own = 0.3 + row[t] + shift[variant] + example[variant][z] + lift + rise
                    by_test[z] = (t, _counts(t, own, excess[s], world.effect, rng))
    full_model = [{"seed": s, "language": t, "accuracy": 0.9, "examples": 100, "majority_rate": 0.34, "labels": 3,
                   "labels_predicted": 3} for s in range(seeds) for t in LANGUAGES]
    accuracy = [{"seed": str(s), "language": t, "full": 0.9, "subnetwork": 0.85, "sft": 0.88, "retention": 0.85 / 0.9}
                for s in range(seeds) for t in LANGUAGES]
    return findings.StudyData(
        run_id=1, point="", k=K, full_model=full_model, accuracy=accuracy,
        mask_transfer=_mask_transfer(world, seeds, rng), pairs=_pairs(masks), proponents=proponents,
        train_examples={(s, v): {t: 200 for t in LANGUAGES} for s in range(seeds) for v in ("full", "subnetwork", "sft")},
        validity=[_validity(world, seeds, rng)],
    )


def _counts(t: str, own: float, excess: dict, effect: float, rng: np.random.Generator) -> dict[str, int]:
    """A test example's top-K proponents by training language: its own language's share `own`, the
    rest spread over the others, more to its related language (P1) and to languages whose
    subnetwork overlaps t's more than chance (Q4), each by `effect`."""
    others = [s for s in LANGUAGES if s != t]
    weights = np.array([1 + 8 * effect * (FAMILIES[s] == FAMILIES[t]) + 20 * effect * excess[(t, s)] for s in others])
    drawn = rng.binomial(K, min(max(own, 0.02), 0.98))
    counts = dict(zip(others, rng.multinomial(K - drawn, np.clip(weights, 0.05, None) / np.clip(weights, 0.05, None).sum())))
    return {t: int(drawn), **{s: int(c) for s, c in counts.items() if c}}


def _masks(rng: np.random.Generator, families: bool) -> dict[str, set[int]]:
    """Each language's kept heads, 6 to 12 of 16 at random; with `families`, a language's related
    language keeps the same heads but two (P1's masks show the families)."""
    masks = {t: set(rng.choice(HEADS, int(rng.integers(6, 13)), replace=False)) for t in LANGUAGES}
    if families:
        for a, b in (("ka", "kb"), ("la", "lb")):
            dropped = set(rng.choice(sorted(masks[a]), 2, replace=False))
            masks[b] = (masks[a] - dropped) | set(rng.choice(sorted(set(range(HEADS)) - masks[a]), 2, replace=False))
    return masks


def _jaccard_excess(masks: dict[str, set[int]]) -> dict[tuple[str, str], float]:
    from langspec.science import stats

    return {(a, b): len(masks[a] & masks[b]) / len(masks[a] | masks[b]) - stats.random_mask_jaccard(HEADS, len(masks[a]), len(masks[b]))
            for a in LANGUAGES for b in LANGUAGES if a != b}


def _pairs(masks: dict[int, dict[str, set[int]]]) -> list[dict]:
    return [{"model": findings.MULTILINGUAL, "seed": str(s), "language_a": a, "language_b": b,
             "jaccard": len(m[a] & m[b]) / len(m[a] | m[b]), "heads_kept_a": len(m[a]), "sparsity_a": 1 - len(m[a]) / HEADS}
            for s, m in masks.items() for a in LANGUAGES for b in LANGUAGES]


def _mask_transfer(world: World, seeds: int, rng: np.random.Generator) -> list[dict]:
    """Q1: own mask minus another's, per (language, mask language): the planted effect, a seed
    effect, a pair's own effect (the same test set in every seed) and noise."""
    pair = {(a, b): rng.normal(0, world.example_sd) for a in LANGUAGES for b in LANGUAGES}
    rows = []
    for s in range(seeds):
        shift = rng.normal(0, world.seed_sd)
        for a in LANGUAGES:
            for b in LANGUAGES:
                value = 0.0 if a == b else world.effect + shift + pair[(a, b)] + rng.normal(0, 0.02)
                rows.append({"seed": str(s), "language": a, "mask_language": b, "own_minus_this": value, "examples": 100})
    return rows


def _validity(world: World, seeds: int, rng: np.random.Generator) -> tracin_vs_ablation.Validity:
    """Q6: per seed, TracIn's P[t, s] and the measured E[t, s] per test example, each with its own
    per-test-language level (row effects), E's example noise shared by every seed; P follows E by
    `effect`."""
    examples = 6
    truth = rng.normal(0, 1, (len(LANGUAGES), len(LANGUAGES)))  # what removing s does to t
    shared = rng.normal(0, 1, (len(LANGUAGES), examples, len(LANGUAGES)))
    data = []
    for _ in range(seeds):
        effects, predicted = {}, {}
        e_rows, p_rows = rng.normal(0, 1, len(LANGUAGES)), rng.normal(0, 1, len(LANGUAGES))
        for i, t in enumerate(LANGUAGES):
            effects[t] = truth[i] + e_rows[i] + shared[i] + rng.normal(0, 0.5, (examples, len(LANGUAGES)))
            predicted[t] = 10 * world.effect * truth[i] + p_rows[i] + rng.normal(0, 1, (examples, len(LANGUAGES)))
        data.append(tracin_vs_ablation.SeedData(list(LANGUAGES), list(LANGUAGES), effects, {"tracin": predicted, "share": predicted}, None))
    return tracin_vs_ablation._validity("full", "tracin", "pearson", "all", data, 19, 0)


def calibrate(studies: int, seed: int = 0) -> dict:
    """{question: {seeds: {coverage, false_supported, false_contradicted, power}}} over `studies` studies per cell."""
    rng = np.random.default_rng(seed)
    result: dict = {q: {} for q in QUESTIONS}
    for seeds in SEED_COUNTS:
        counts = {q: {"covered": 0, "intervals": 0, "false_supported": 0, "false_contradicted": 0, "supported": 0} for q in QUESTIONS}
        for world, key in ((NULL, "null"), (POWER, "power")):
            for _ in range(studies):
                for finding in findings.findings(study(world, seeds, rng)):
                    c = counts[finding.question]
                    if key == "power":
                        c["supported"] += finding.verdict == findings.SUPPORTED
                        continue
                    c["false_supported"] += finding.verdict == findings.SUPPORTED
                    c["false_contradicted"] += finding.verdict == findings.CONTRADICTED
                    if finding.interval is not None:
                        c["intervals"] += 1
                        c["covered"] += finding.interval[0] <= 0 <= finding.interval[1]
        for q, c in counts.items():
            result[q][str(seeds)] = {
                "coverage": c["covered"] / c["intervals"] if c["intervals"] else None,
                "false_supported": c["false_supported"] / studies, "false_contradicted": c["false_contradicted"] / studies,
                "power": c["supported"] / studies, "studies": studies,
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="synthetic studies per world and seed count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    args = parser.parse_args()
    started = time.perf_counter()
    result = calibrate(args.studies, args.seed)
    print(f"{args.studies} synthetic studies per world and seed count; {time.perf_counter() - started:.0f} s")
    print(f"{'question':9}{'seeds':>6}{'coverage':>10}{'false supported':>17}{'false contradicted':>20}{'power':>8}")
    for q, by_seeds in result.items():
        for seeds, r in by_seeds.items():
            coverage = f"{r['coverage']:.3f}" if r["coverage"] is not None else "-"
            print(f"{q:9}{seeds:>6}{coverage:>10}{r['false_supported']:>17.3f}{r['false_contradicted']:>20.3f}{r['power']:>8.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
