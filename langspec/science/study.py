"""What the findings of one run's sweep point read, loaded once from the store (`load`), and the
sanity gates of each model they rest on (`gates`): a model at chance, one that collapsed to fewer
labels, a k that does not fit the scored training examples."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import duckdb

from langspec.science import stats, tracin_vs_ablation
from store.errors import StoreError
from store.points import point_label, primary_assignments
from store.queries import VARIANTS, internal, k_fits, run_named

MULTILINGUAL = "multilingual"  # the masks pruned on the model fine-tuned on every language (not `only`'s)


@dataclass
class StudyData:
    """What the findings of one run's sweep point read, loaded once."""

    run_id: int
    point: str
    k: int
    full_model: list[dict]  # findings_full_model rows
    accuracy: list[dict]  # the accuracy analysis, per seed
    mask_transfer: list[dict]  # the mask_transfer analysis, per seed
    pairs: list[dict]  # subnetwork_similarity of the multilingual model's masks, per seed
    proponents: dict  # (variant, checkpoint) -> seed -> test_id -> (test_language, {train_language: count})
    train_examples: dict  # (seed, variant) -> {language: training examples scored}
    threshold: float | None = None
    validity: list = field(default_factory=list)  # langspec.science.tracin_vs_ablation.Validity of the point's ablation, if any
    validity_data: dict = field(default_factory=dict)  # variant -> [tracin_vs_ablation.SeedData], one per seed: Q6's grids
    ablation_models: list = field(default_factory=list)  # findings_ablation_models rows
    primary_point: str | None = None  # the run's primary sweep point (analysis.primary_point); None: this one

    @property
    def seeds(self) -> list[int]:
        return sorted({r["seed"] for r in self.full_model})

    @cached_property  # read by every resample: at the paper's size the set below takes 8 ms
    def languages(self) -> list[str]:
        """Every language the point has results of: fine-tuned, pruned or scored by TracIn."""
        scored = {name for by_seed in self.proponents.values() for examples in by_seed.values()
                  for test_language, counts in examples.values() for name in (test_language, *counts)}
        return sorted({r["language"] for r in self.full_model} | {r[side] for r in self.pairs for side in ("language_a", "language_b")}
                      | scored)

    @property
    def variants(self) -> list[str]:
        return [v for v in VARIANTS if (v, None) in self.proponents]

    def scored_training_examples(self) -> int | None:
        counts = [sum(by_language.values()) for by_language in self.train_examples.values()]
        return min(counts) if counts else None

    def in_language(self, variant: str, checkpoint: int | None = None) -> dict[int, dict[str, float]]:
        """seed -> test_id -> S+ of that test example: the share of its top-k proponents from its own language."""
        return {
            seed: {test_id: counts.get(language, 0) / self.k for test_id, (language, counts) in examples.items()}
            for seed, examples in self.proponents.get((variant, checkpoint), {}).items()
        }

    def checkpoints(self, variant: str) -> list[int]:
        return sorted(c for v, c in self.proponents if v == variant and c is not None)

    @cached_property  # read by Q1 and by each seed of Q4
    def jaccard_excess(self) -> dict[int, dict[tuple[str, str], float]]:
        """seed -> (a, b) -> J(a, b) minus its expectation for two random masks of the same sizes: raw
        Jaccard rises with mask size (random masks of 16 heads reach 0.34)."""
        kept = {(int(r["seed"]), r["language_a"]): r["heads_kept_a"] for r in self.pairs}
        excess: dict = {}
        for r in self.pairs:  # a pair with a mask that keeps no heads has no J: left out, never scored 0
            if r["language_a"] == r["language_b"] or r["sparsity_a"] >= 1 or round(r["heads_kept_a"]) == 0 \
                    or round(kept[(int(r["seed"]), r["language_b"])]) == 0:
                continue
            heads = round(r["heads_kept_a"] / (1 - r["sparsity_a"]))
            expected = stats.random_mask_jaccard(heads, round(r["heads_kept_a"]), round(kept[(int(r["seed"]), r["language_b"])]))
            excess.setdefault(int(r["seed"]), {})[(r["language_a"], r["language_b"])] = r["jaccard"] - expected
        return excess


def load(con: duckdb.DuckDBPyConnection, run_id: int, point: str, k: int) -> StudyData:
    params = {"run_id": run_id, "point": point}
    per_seed = lambda name, **extra: [r for r in run_named(con, name, **params, **extra).to_pylist() if r["seed"] != "mean"]  # noqa: E731
    proponents: dict = {}
    for per_checkpoint in (False, True):
        for seed, variant, checkpoint, test_id, test_language, train_language, count in internal(
                con, "findings_test_examples", **params, k=k, per_checkpoint=per_checkpoint):
            by_seed = proponents.setdefault((variant, checkpoint), {}).setdefault(seed, {})
            by_seed.setdefault(test_id, (test_language, {}))[1][train_language] = count
    train_examples: dict = {}
    for seed, variant, role, language, count in internal(con, "findings_tracin_sizes", **params):
        if role == "train":
            train_examples.setdefault((seed, variant), {})[language] = count
    columns = ("seed", "language", "accuracy", "examples", "majority_rate", "labels", "labels_predicted")
    thresholds = {row[0] for row in internal(con, "findings_thresholds", **params)}
    has_ablation = internal(con, "point_has_ablation", **params)[0][0]
    validity_data = tracin_vs_ablation.by_variant(tracin_vs_ablation.read_seed_data(con, run_id, point, k)) if has_ablation else {}
    return StudyData(
        run_id=run_id, point=point, k=k, primary_point=primary_point(con, run_id),
        full_model=[dict(zip(columns, row)) for row in internal(con, "findings_full_model", **params)],
        accuracy=per_seed("accuracy"), mask_transfer=per_seed("mask_transfer"),
        pairs=[r for r in per_seed("subnetwork_similarity") if r["model"] == MULTILINGUAL],  # `only`'s masks answer no question here
        proponents=proponents, train_examples=train_examples,
        threshold=next(iter(thresholds)) if len(thresholds) == 1 else None,
        validity=tracin_vs_ablation.validity_of(validity_data), validity_data=validity_data,
        ablation_models=[dict(zip(("seed", "ablated", "language", "accuracy", "examples"), row))
                         for row in internal(con, "findings_ablation_models", **params)] if has_ablation else [],
    )


# The models a question's answer rests on; a failed gate of any of them makes it `inconclusive`.
FULL, SUBNETWORK, SFT, ABLATION = "full", "subnetwork", "sft", "ablation"


@dataclass(frozen=True)
class Gates:
    """The failed sanity gates of each model of a point, each naming its gate."""

    failed: dict[str, list[str]]

    def of(self, *models: str) -> list[str]:
        return [reason for model in (FULL, *models) for reason in self.failed.get(model, [])]


def gates(data: StudyData) -> Gates:
    if not data.full_model:
        return Gates({FULL: ["no full-model test accuracy: the run has no fine-tuning results at this point"]})
    majority = {(r["seed"], r["language"]): r for r in data.full_model}
    failed = {FULL: [], SUBNETWORK: [], SFT: [], ABLATION: []}
    for r in data.full_model:
        failed[FULL] += _chance(f"the full model of seed {r['seed']} on {r['language']}", r["accuracy"], r["examples"], r["majority_rate"])
    for r in data.full_model:
        if r["labels"] == 0:
            failed[FULL].append(f"collapsed: the full model of seed {r['seed']} has no predicted-label counts (fine-tuned before "
                                "langspec stored them): run the spec again to recompute them")
            break
        if r["labels_predicted"] < r["labels"]:
            failed[FULL].append(f"collapsed: the full model of seed {r['seed']} predicts only {r['labels_predicted']} of the "
                                f"{r['labels']} labels on {r['language']}'s {r['examples']} test examples")
    for r in data.accuracy:  # each language's own subnetwork, and the SFT model under it, on that language's test set
        base = majority.get((int(r["seed"]), r["language"]))
        for model, what in ((SUBNETWORK, "subnetwork"), (SFT, "SFT model")):
            if base is not None and r[model] is not None:
                failed[model] += _chance(f"the {what} of seed {r['seed']} on {r['language']}", r[model], base["examples"],
                                         base["majority_rate"])
    for r in data.ablation_models:
        base = majority.get((r["seed"], r["language"]))
        if base is not None:
            failed[ABLATION] += _chance(f"the model of seed {r['seed']} fine-tuned without {r['ablated']}, on {r['language']}",
                                        r["accuracy"], r["examples"], base["majority_rate"])
    scored = data.scored_training_examples()
    if scored is not None and not k_fits(data.k, scored):
        failed[FULL].append(f"k: k = {data.k} must be between 1 and {scored - 1} (TracIn scored {scored} training examples)")
    return Gates(failed)


def _chance(what: str, accuracy: float, examples: int, majority_rate: float) -> list[str]:
    low, high = stats.wilson_interval(round(accuracy * examples), examples)
    if low > majority_rate:
        return []
    return [f"chance: {what} has test accuracy {accuracy:.3f} (95% interval [{low:.3f}, {high:.3f}], n = {examples}), "
            f"not above the majority-class rate {majority_rate:.3f}"]


def primary_point(con: duckdb.DuckDBPyConnection, run_id: int) -> str:
    """The name of the run's primary sweep point, from the spec it ran ("" without a sweep)."""
    sweep, chosen = internal(con, "run_primary_point", run_id=run_id)[0]
    try:
        return point_label(primary_assignments(json.loads(sweep or "{}"), json.loads(chosen) if chosen else None))
    except ValueError as error:  # a validated spec names a point of its sweep: the store's record is not what langspec wrote
        raise StoreError(f"run {run_id}'s spec in the store names no point of its sweep ({error}); "
                         "re-run the spec to record it again") from error
