"""Tokenizers, models, devices and batches: what every training and scoring stage shares."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Stages report progress through langspec's own display; transformers' bars would interleave with it.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from runners.errors import ModelSourceError  # noqa: E402
from runners.methods.sections import ModelSpec  # noqa: E402

# XLM-R's special tokens and ids, so a tiny model is laid out like the real one (pad id 1 is
# also the position embeddings' padding_idx).
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on `texts` (the toy languages are whitespace-separated)."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in ("<s>", "</s>")],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def build_tokenizer(spec: ModelSpec, train_texts: list[str]) -> PreTrainedTokenizerBase:
    if spec.tiny is not None:
        return train_tokenizer(train_texts, spec.tiny.vocab_size)
    source = pretrained_source(spec)
    with _hub(source, packaged=spec.packaged is not None):
        return AutoTokenizer.from_pretrained(source)


def pretrained_source(spec: ModelSpec) -> str:
    """What from_pretrained loads: a hub id or directory, or a packaged model's converted directory
    (converted on first use)."""
    if spec.packaged is not None:
        from runners.methods import packaged

        return str(packaged.converted(spec.packaged))
    if os.path.isabs(spec.pretrained) and not Path(spec.pretrained).is_dir():  # the driver saw a directory there
        import socket

        raise ModelSourceError(f"model.pretrained {spec.pretrained} is not a directory on this node ({socket.gethostname()}); "
                               "every node needs the model at the same path: put it on a filesystem every node mounts")
    return spec.pretrained


@contextmanager
def _hub(model_id: str, packaged: bool = False) -> Iterator[None]:
    """Turn a failed from_pretrained into what to do about it (offline machines are common)."""
    try:
        yield
    except OSError as error:
        fix = (f"The converted directory is damaged: delete {model_id} and run again to convert it anew" if packaged else
               "Without internet, save it where there is (AutoModel.from_pretrained(ID).save_pretrained(DIR) and the "
               "same for AutoTokenizer), copy DIR here and set model.pretrained: DIR")
        raise ModelSourceError(f"could not load model {model_id!r}: {' '.join(str(error).split())} {fix}") from None


def build_model(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase, label_names: Sequence[str], max_length: int, seed: int):
    """A freshly initialised classifier of len(label_names) classes, whose config names them (so
    Hugging Face pipelines print `entailment`, not `LABEL_0`); the seed fixes every random weight
    (all of them for a tiny model, the classification head for a pretrained one)."""
    torch.manual_seed(seed)
    labels = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
              "label2id": {name: i for i, name in enumerate(label_names)}}
    if spec.tiny is None:
        source = pretrained_source(spec)
        with _hub(source, packaged=spec.packaged is not None):
            return AutoModelForSequenceClassification.from_pretrained(
                source,
                **labels,
                attn_implementation=spec.attention,
                hidden_dropout_prob=spec.dropout,
                attention_probs_dropout_prob=spec.dropout,
            )
    tiny = spec.tiny
    assert tokenizer.pad_token_id == 1, "tiny models use XLM-R's pad id 1"
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden,
        num_hidden_layers=tiny.layers,
        num_attention_heads=tiny.heads,
        intermediate_size=tiny.intermediate,
        max_position_embeddings=max_length + 2,  # positions start after padding_idx (1)
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        **labels,
        hidden_dropout_prob=spec.dropout,
        attention_probs_dropout_prob=spec.dropout,
        attn_implementation=spec.attention,
    )
    return XLMRobertaForSequenceClassification(config)


def load_checkpoint(path: Path, attention: str = "sdpa"):
    """A saved checkpoint (model and tokenizer) for pruning, evaluation or scoring."""
    model = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation=attention)
    return model, AutoTokenizer.from_pretrained(path)


# --- batches ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """Tokenised examples, unpadded; batches are padded only to their own longest example."""

    example_ids: list[str]
    languages: list[str]
    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


def encode(tokenizer: PreTrainedTokenizerBase, rows: list[dict], max_length: int) -> Encoded:
    text_a = [r["text_a"] for r in rows]
    text_b = [r["text_b"] for r in rows]
    pairs = any(t is not None for t in text_b)
    out = tokenizer(text_a, text_b if pairs else None, truncation=True, max_length=max_length)
    return Encoded(
        example_ids=[r["example_id"] for r in rows],
        languages=[r["language"] for r in rows],
        input_ids=out["input_ids"],
        labels=[int(r["label"]) for r in rows],
    )


def collate(encoded: Encoded, indices: list[int], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch padded to its longest example: input_ids and attention_mask (B, T), labels (B,)."""
    longest = max(len(encoded.input_ids[i]) for i in indices)
    input_ids = torch.full((len(indices), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(indices), longest), dtype=torch.long)
    for row, i in enumerate(indices):
        ids = encoded.input_ids[i]
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    labels = torch.tensor([encoded.labels[i] for i in indices])
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), "labels": labels.to(device)}


def batches(encoded: Encoded, batch_size: int, pad_id: int, device: torch.device, order: list[int] | None = None) -> Iterator[dict]:
    order = list(range(len(encoded))) if order is None else order
    for start in range(0, len(order), batch_size):
        yield collate(encoded, order[start : start + batch_size], pad_id, device)


@torch.no_grad()
def predict(model, encoded: Encoded, batch_size: int, pad_id: int, device: torch.device) -> list[int]:
    """Predicted labels in the order of `encoded`; length-sorted batches keep padding small."""
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.input_ids[i]))
    predictions = [0] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate(encoded, chunk, pad_id, device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for i, label in zip(chunk, logits.argmax(-1).tolist()):
            predictions[i] = label
    return predictions


def accuracy_by_language(model, encoded: Encoded, batch_size: int, pad_id: int, device: torch.device) -> dict[str, float]:
    return accuracy_of(encoded, predict(model, encoded, batch_size, pad_id, device))


def accuracy_of(encoded: Encoded, predictions: list[int]) -> dict[str, float]:
    """Accuracy per language of predicted labels in the order of `encoded`."""
    correct: dict[str, list[int]] = {}
    for language, predicted, label in zip(encoded.languages, predictions, encoded.labels):
        correct.setdefault(language, []).append(int(predicted == label))
    return {language: sum(hits) / len(hits) for language, hits in correct.items()}


@torch.no_grad()
def example_losses(model, encoded: Encoded, batch_size: int, pad_id: int, device: torch.device) -> tuple[list[float], list[bool]]:
    """Each example's cross-entropy loss and whether its prediction is right, in the order of `encoded`."""
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.input_ids[i]))
    losses, correct = [0.0] * len(encoded), [False] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate(encoded, chunk, pad_id, device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()  # (B, C)
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")  # (B,)
        hits = logits.argmax(-1) == batch["labels"]  # (B,)
        for i, value, hit in zip(chunk, loss.tolist(), hits.tolist()):
            losses[i], correct[i] = value, hit
    return losses, correct


def predicted_label_counts(encoded: Encoded, predictions: list[int], labels: int) -> dict[str, list[int]]:
    """Per language, how many examples were predicted as each label 0 .. labels - 1 (a collapsed
    model predicts one label for all)."""
    counts: dict[str, list[int]] = {}
    for language, predicted in zip(encoded.languages, predictions):
        counts.setdefault(language, [0] * labels)[predicted] += 1
    return counts
