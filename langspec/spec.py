"""The experiment spec: one Pydantic model per YAML section, the single home of every default.

Only pydantic is imported here, so `langspec validate` stays fast and the runners can share these
types without pulling in the compiler.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STAGES = ("data", "finetune", "prune", "sparse_finetune", "tracin")
TOY_LANGUAGES = ("ka", "kb", "la", "lb", "mi", "na", "nb")


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- data -------------------------------------------------------------------------------------


class DataSpec(Section):
    source: Literal["toy", "hub", "files"] = Field(
        "toy",
        description="toy: the built-in synthetic languages (offline); hub: a Hugging Face dataset by id; "
        "files: JSONL/Parquet per language and split under `path`.",
    )
    languages: list[str] = Field(
        default=["ka", "kb", "la", "lb", "mi"],
        min_length=1,
        description="Language codes to study. For toy data: ka, kb (family k), la, lb (family l), mi, na, nb (family n).",
    )
    train_per_language: int = Field(2000, ge=1, description="Training examples per language (a subsample for hub/files).")
    validation_per_language: int = Field(200, ge=1, description="Validation examples per language.")
    test_per_language: int = Field(200, ge=1, description="Test examples per language.")
    parallel: bool = Field(
        True,
        description="Toy data only: the same underlying items in every language (like XNLI, PAWS-X) "
        "rather than independent items per language (like MARC).",
    )
    lexicon_overlap: float = Field(
        0.5, ge=0.0, le=1.0, description="Toy data only: share of the lexicon that related languages have in common."
    )
    seed: int = Field(0, ge=0, description="Seed of data generation and subsampling (independent of the training seeds).")
    dataset: str | None = Field(
        None,
        description="hub only: a Hugging Face dataset id with one config per language (facebook/xnli, "
        "google-research-datasets/paws-x, mteb/amazon_reviews_multi), or a local directory holding "
        "<language>/ saved with datasets' save_to_disk.",
    )
    path: str | None = Field(None, description="files only: directory holding <language>/<split>.jsonl or .parquet.")
    label_names: list[str] | None = Field(
        None,
        min_length=1,
        description="Names of the labels 0, 1, ... in order, for the checkpoints' id2label. None: the source's own "
        "(toy, XNLI: entailment, neutral, contradiction; PAWS-X: not_paraphrase, paraphrase; MARC: 1 star ... "
        "5 stars; a hub dataset's ClassLabel names where it has them; files: the label ids).",
    )

    @field_validator("languages")
    @classmethod
    def check_languages_unique(cls, languages: list[str]) -> list[str]:
        repeated = sorted({lang for lang in languages if languages.count(lang) > 1})
        if repeated:
            raise ValueError(f"languages are listed twice: {', '.join(repeated)}; list each once")
        return languages

    @model_validator(mode="after")
    def check_source_fields(self) -> DataSpec:
        if self.source == "toy":
            unknown = [lang for lang in self.languages if lang not in TOY_LANGUAGES]
            if unknown:
                raise ValueError(
                    f"toy data has no language {', '.join(unknown)}; choose from {', '.join(TOY_LANGUAGES)}"
                )
        if self.source == "hub" and not self.dataset:
            raise ValueError("source: hub needs `dataset` (a Hugging Face dataset id, e.g. facebook/xnli)")
        if self.source == "files" and not self.path:
            raise ValueError("source: files needs `path` (a directory with <language>/<split>.jsonl)")
        return self


# --- model ------------------------------------------------------------------------------------


class TinyModelSpec(Section):
    layers: int = Field(4, ge=1, le=48, description="Transformer layers.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads per layer.")
    hidden: int = Field(64, ge=8, description="Hidden size; must be divisible by heads.")
    intermediate: int = Field(128, ge=8, description="Feed-forward inner size.")
    vocab_size: int = Field(2000, ge=64, description="Upper bound of the tokenizer's vocabulary trained on the data.")

    @model_validator(mode="after")
    def check_hidden_divisible(self) -> TinyModelSpec:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


class ModelSpec(Section):
    pretrained: str | None = Field(
        None, description="A Hugging Face model id or local directory (e.g. xlm-roberta-base); exclusive with `tiny`."
    )
    tiny: TinyModelSpec | None = Field(
        None, description="A small random-init XLM-R with a tokenizer trained on the data (the demo, the tests)."
    )
    attention: Literal["sdpa", "eager"] = Field("sdpa", description="Attention kernel; both give the same results.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Hidden and attention dropout during training.")

    @model_validator(mode="after")
    def check_one_model(self) -> ModelSpec:
        if (self.pretrained is None) == (self.tiny is None):
            raise ValueError("give exactly one of `pretrained` (a model id) or `tiny` (a small config)")
        return self


# --- stages -----------------------------------------------------------------------------------


class FinetuneSpec(Section):
    epochs: int = Field(3, ge=1, description="Epochs; a checkpoint is saved after each.")
    lr: float = Field(2e-5, gt=0.0, description="Peak learning rate of AdamW (linear warm-up and decay).")
    batch_size: int = Field(32, ge=1, description="Training batch size.")
    eval_batch_size: int = Field(128, ge=1, description="Evaluation batch size (no effect on results).")
    max_length: int = Field(128, ge=8, description="Maximum tokens per example pair; longer ones are truncated.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Share of steps with linear warm-up.")

    @field_validator("lr")
    @classmethod
    def check_lr_finite(cls, lr: float) -> float:
        if not math.isfinite(lr):
            raise ValueError("lr must be a finite number, e.g. 2.0e-5")
        return lr


class PruneSpec(Section):
    enabled: bool = Field(True, description="Find one subnetwork per language by attention-head pruning.")
    threshold: float = Field(
        0.95, gt=0.0, le=1.0, description="Keep pruning while the metric stays >= threshold x the full model's."
    )
    step: float = Field(0.1, gt=0.0, lt=1.0, description="Share of all heads masked per pruning step (at least one).")
    split: Literal["validation", "train", "test"] = Field(
        "validation", description="Split used for head importance and the stopping rule."
    )
    normalize_per_layer: bool = Field(True, description="L2-normalise importance within each layer.")
    normalize_global: bool = Field(True, description="Min-max rescale importance over all heads.")
    max_examples: int | None = Field(
        None, ge=1, description="Use only the first N examples per language of the split (None: all)."
    )
    batch_size: int = Field(
        32, ge=1, description="Examples per batch for importance; importance sums per-batch gradients, so it matters."
    )
    keep_one_head_per_layer: bool = Field(
        False, description="Never mask a layer's last head (off as in Michel et al.; a fully masked layer passes only the residual stream)."
    )


class SparseFinetuneSpec(Section):
    enabled: bool = Field(True, description="Fine-tune again, each language updating only its own subnetwork.")
    language_sampling: Literal["proportional", "round_robin"] = Field(
        "proportional", description="Order of the language-pure batches."
    )
    epochs: int | None = Field(None, ge=1, description="Epochs (None: finetune.epochs).")
    lr: float | None = Field(None, gt=0.0, description="Peak learning rate (None: finetune.lr).")
    batch_size: int | None = Field(None, ge=1, description="Batch size (None: finetune.batch_size).")


class TracinSpec(Section):
    enabled: bool = Field(True, description="TracIn influence of training examples on test examples.")
    variants: list[Literal["full", "subnetwork", "sft"]] = Field(
        default=["full", "subnetwork", "sft"], min_length=1, description="Which models to score."
    )
    train_per_language: int = Field(200, ge=1, description="Training examples scored per language: the first N of its train split.")
    test_per_language: int = Field(20, ge=1, description="Influence-test examples per language: the first N of its test split.")
    params: list[Literal["embeddings", "encoder", "classifier"]] = Field(
        default=["embeddings", "encoder", "classifier"], min_length=1, description="Parameter groups of the gradients."
    )
    batch_size: int = Field(32, ge=1, description="Examples per gradient batch (bounds memory; no effect on scores).")
    test_block_mb: float | None = Field(
        4096, gt=0, description="Memory (MB) for the test examples' gradients kept while the training examples stream "
        "past; more test examples are scored in blocks, the training gradients computed once per block (slower, same "
        "scores). None: no limit.",
    )
    projection_dim: int | None = Field(
        None,
        ge=1,
        description="None: exact scores. An integer d: approximate scores, for models too large for exact ones: each "
        "parameter tensor's per-example gradient with more than d entries becomes a seeded random projection to at "
        "most d numbers (Kronecker-factored for matrices, never forming the per-example gradient), the same for train, "
        "test and every checkpoint; each score is an unbiased estimate whose error shrinks as d grows "
        "(runners/influence.py documents the construction).",
    )
    projection_seed: int = Field(
        0,
        ge=0,
        description="Seed of the random projection (with each parameter's name); only used with projection_dim. "
        "Independent of the training seeds, so every seed and variant is scored with the same P; change it to see "
        "how much the scores owe to the draw of P.",
    )


class AnalysisSpec(Section):
    top_k: int = Field(50, ge=1, description="Proponents and opponents per test example.")


class StageResources(Section):
    num_cpus: float = Field(1, gt=0, description="CPU cores per task (also torch's thread count).")
    num_gpus: float = Field(0, ge=0, description="GPUs per task.")
    max_retries: int = Field(1, ge=0, description="Retries after a worker crash (not after an error in the task).")


class ResourcesSpec(Section):
    default: StageResources = Field(default_factory=StageResources, description="Resources of every stage.")
    finetune: StageResources | None = Field(None, description="Overrides for finetune tasks.")
    prune: StageResources | None = Field(None, description="Overrides for prune tasks.")
    sparse_finetune: StageResources | None = Field(None, description="Overrides for sparse fine-tuning tasks.")
    tracin: StageResources | None = Field(None, description="Overrides for TracIn tasks.")

    def for_stage(self, stage: str) -> StageResources:
        return getattr(self, stage, None) or self.default


# --- the whole spec ---------------------------------------------------------------------------

SweepValues = Annotated[list[Any], Field(min_length=1)]


class Spec(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name of the study, used in run records.")
    data: DataSpec = Field(default_factory=DataSpec, description="Where the examples come from.")
    model: ModelSpec = Field(description="The model to fine-tune.")
    seeds: list[int] = Field(default=[0], min_length=1, description="Training seeds; each gets its own study.")
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec, description="Full fine-tuning.")
    prune: PruneSpec = Field(default_factory=PruneSpec, description="Language subnetworks by head pruning.")
    sparse_finetune: SparseFinetuneSpec = Field(
        default_factory=SparseFinetuneSpec, description="Sparse fine-tuning within each language's subnetwork."
    )
    tracin: TracinSpec = Field(default_factory=TracinSpec, description="TracIn influence scores.")
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="Analysis settings.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Resources per stage.")
    sweep: dict[str, SweepValues] = Field(
        default_factory=dict,
        description="Dotted field paths mapped to lists of values, e.g. {prune.threshold: [0.9, 0.95]}; "
        "every combination becomes its own set of tasks.",
    )

    @field_validator("seeds")
    @classmethod
    def check_seeds_unique(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds are listed twice; list each seed once")
        return seeds

    @model_validator(mode="after")
    def check_stage_dependencies(self) -> Spec:
        if self.sparse_finetune.enabled and not self.prune.enabled:
            raise ValueError("sparse_finetune needs the subnetworks: enable prune or disable sparse_finetune")
        needs_masks = {"subnetwork", "sft"} & set(self.tracin.variants)
        if self.tracin.enabled and needs_masks and not self.prune.enabled:
            raise ValueError(f"tracin variants {sorted(needs_masks)} need prune enabled")
        if self.tracin.enabled and "sft" in self.tracin.variants and not self.sparse_finetune.enabled:
            raise ValueError("tracin variant sft needs sparse_finetune enabled")
        scored = min(self.tracin.train_per_language, self.data.train_per_language) * len(self.data.languages)
        if self.tracin.enabled and self.analysis.top_k >= scored:
            raise ValueError(
                f"analysis.top_k ({self.analysis.top_k}) must be smaller than the {scored} training examples TracIn "
                "scores, or every one of them is a proponent; lower analysis.top_k or raise tracin.train_per_language"
            )
        return self


def json_schema() -> dict:
    """The JSON Schema of a spec file, for editors and check-jsonschema: the Spec model plus
    `extends:`. A file with `name:` and no `extends:` is a whole spec and needs every required
    field; a spec that extends a base, and a base file (no `name:`, e.g. specs/base/paper.yaml),
    may leave them out. The schema checks each file's own keys; `langspec validate` checks the merge."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **Spec.model_json_schema()}
    schema["properties"] = {
        "extends": {"type": "string", "title": "Extends",
                    "description": "Path of a base YAML file (relative to this one) whose fields this spec starts from."},
        **schema["properties"],
    }
    schema["if"] = {"required": ["name"], "not": {"required": ["extends"]}}
    schema["then"] = {"required": schema.pop("required")}
    return schema
