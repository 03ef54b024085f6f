"""Vocabulary trimming (Ushio et al., 2023): a multilingual model keeps only the tokens that a run's
texts use, which shrinks XLM-R's 250,002-row embedding (most of its parameters) to a few thousand rows
and leaves every output on those texts unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterable

import torch
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from runners.errors import ModelSourceError


def trim_vocabulary(model, tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> tuple[object, PreTrainedTokenizerFast]:
    """The model and tokenizer restricted to the tokens of `texts` and the special tokens, in their
    original order; the ids up to the pad token's keep their ids (XLM-R's positions count from pad).

    The trimmed tokenizer segments every one of `texts` as the original did: the best segmentation
    of a text uses only kept pieces, and a subset that still holds the best path keeps it best. One
    catch: a character whose one-character piece is gone becomes an unknown, scored the lowest piece
    score minus 10; were that score to rise with trimming, such an unknown could outscore the best
    path, so the lowest-scored piece is kept too (one row). The model is changed in place: its input
    embedding is replaced.
    """
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend["model"]["type"] != "Unigram":
        raise ModelSourceError(
            f"model.trim_vocabulary: the tokenizer is a {backend['model']['type']} model; trimming keeps the "
            "segmentation only for sentencepiece Unigram tokenizers (the XLM-R family). Set trim_vocabulary: false"
        )
    vocabulary = backend["model"]["vocab"]  # [[piece, score], ...] in id order
    texts, used = list(texts), set()
    for start in range(0, len(texts), 10_000):  # a big corpus's ids need not all be held at once
        used.update(i for ids in tokenizer(texts[start : start + 10_000])["input_ids"] for i in ids)
    lowest = min(range(len(vocabulary)), key=lambda i: (vocabulary[i][1], i))
    below_pad = set(range(tokenizer.pad_token_id + 1)) if tokenizer.pad_token_id is not None else set()
    kept = sorted(used | set(tokenizer.all_special_ids) | below_pad | {lowest})
    new_id = {old: new for new, old in enumerate(kept)}
    return _trim_model(model, kept, new_id), _trim_tokenizer(tokenizer, backend, kept, new_id)


def _trim_model(model, kept: list[int], new_id: dict[int, int]):
    if model.get_output_embeddings() is not None:
        raise ModelSourceError("model.trim_vocabulary: the model has an output embedding (a language-modelling "
                               "head); trimming handles classifiers only")
    embedding = model.get_input_embeddings()
    rows = embedding.weight.detach()[torch.tensor(kept, device=embedding.weight.device)].clone()  # (V', H)
    # from_pretrained draws no random numbers: the seeded initialisation of everything else stays as it was.
    trimmed = torch.nn.Embedding.from_pretrained(rows, freeze=False, padding_idx=new_id.get(embedding.padding_idx))
    model.set_input_embeddings(trimmed)
    config = model.config
    config.vocab_size = len(kept)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(config, name, None) is not None:
            setattr(config, name, new_id[getattr(config, name)])
    return model


def _trim_tokenizer(tokenizer: PreTrainedTokenizerBase, backend: dict, kept: list[int], new_id: dict[int, int]) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer

    model = backend["model"]
    model["vocab"] = [model["vocab"][old] for old in kept]
    model["unk_id"] = new_id[model["unk_id"]] if model.get("unk_id") is not None else None
    for token in backend.get("added_tokens") or []:
        token["id"] = new_id[token["id"]]
    _remap_post_processor(backend.get("post_processor"), new_id)
    special = {name: value for name, value in tokenizer.special_tokens_map.items() if name != "additional_special_tokens"}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(backend)),
        model_max_length=tokenizer.model_max_length,
        padding_side=tokenizer.padding_side,
        truncation_side=tokenizer.truncation_side,
        **special,
    )


def _remap_post_processor(processor: dict | None, new_id: dict[int, int]) -> None:
    """The special tokens' ids that a post-processor inserts (<s> and </s>), in place."""
    if processor is None:
        return
    kind = processor["type"]
    if kind == "Sequence":
        for inner in processor["processors"]:
            _remap_post_processor(inner, new_id)
    elif kind == "TemplateProcessing":
        for token in processor["special_tokens"].values():
            token["ids"] = [new_id[i] for i in token["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for name in ("sep", "cls"):
            processor[name] = [processor[name][0], new_id[processor[name][1]]]
    elif kind != "ByteLevel":
        raise ModelSourceError(f"model.trim_vocabulary: the tokenizer's post-processor {kind} is not one trimming "
                               "knows how to remap; set trim_vocabulary: false")
