"""The chatterbot-corpus package as a data source: topic-labelled chatbot utterances in 28 languages
(en, it, ja, ko and uk largely translate one another), aligned into translation groups and split so
that no translation crosses splits.

The package holds <folder>/<category>.yml, each {categories: [...], conversations: [[utterance, ...],
...]}. An example is one utterance; its label is its file's category. Per category:

1. Align. The translations drift against one another (a conversation added, dropped or moved here
   and there: japanese/psychology.yml conversation 40 translates the English 37), so each language's
   conversations are aligned to the pivot's (the language with the most conversations; on a tie,
   the first code in sorted order) by a monotone dynamic programme over what survives
   translation: the number of utterances, a question repeated from the neighbouring conversation,
   the digits, and the utterances' lengths against the two files' length ratio. A row holds at
   most one conversation per language; a conversation aligned to none of the pivot's gets a row
   of its own after its predecessor's.
2. Group. In a row, the conversations of the size that most of its languages share (two at least;
   on a tie, the pivot's size, else the smallest) are aligned: their utterance u is one translation
   group. The alignment follows structure, not meaning: a group is where the files agree, not a
   checked translation. The other utterances are not aligned (with one language, none is).
3. Deduplicate. Within a language, an utterance whose normalised text (NFKC, case-folded, letters
   and digits only) came earlier, in category, row and position order, is dropped: the first one
   is kept, with its own label and in its own block's split.
4. Split. The rows are cut into blocks of BLOCK rows (fewer in a category of under 3 * BLOCK rows,
   so that it has 3 blocks or more), and a block goes to one split in every language: a group and a
   conversation never straddle splits, and a conversation the alignment put a row or two off
   stays with its translation except at a block's edge. In a seeded order, a category's blocks go
   to test, then to validation, while that brings the split's utterances of that category (over
   all languages) closer to test_per_language (validation_per_language) times the number of
   languages times the category's share of all utterances; a category of 3 blocks or more gets at
   least one block in every split. The rest is train, subsampled per language to train_per_language.

example_id is f"{language}-{category}-c{row:03d}-u{position:02d}": without the language prefix it
names the translation group. An utterance that is not aligned ends in f"-{language}", a group of
its own; Corpus.unaligned counts them per language and split.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import random
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runners.errors import DataSourceError

VERSION = 1  # of the reading, alignment and split rules; part of the data task's key through `fingerprint`
PACKAGE = "chatterbot_corpus"
INSTALL = "pip install 'chatterbot-corpus==1.3.3'"
SPLITS = ("train", "validation", "test")

# Language code -> the package's folder (ISO 639-1; BCP 47 where the folder is a script or a mix).
FOLDERS = {
    "bn": "bengali", "de": "german", "en": "english", "es": "spanish", "fa": "persian", "fr": "french",
    "he": "hebrew", "hi": "hindi", "hi-latn": "hinglish", "id": "indonesian", "it": "italian", "ja": "japanese",
    "ko": "korean", "mr": "marathi", "nl": "dutch", "or": "oriya", "pt": "portuguese", "ru": "russian",
    "sv": "swedish", "ta": "tamil", "te": "telugu", "th": "thai", "tr": "turkish", "uk": "ukrainian", "ur": "urdu",
    "yo": "yoruba", "zh": "chinese", "zh-hant": "traditionalchinese",
}

# Consecutive aligned rows that go to one split together. The alignment leaves a drifted
# conversation a row or two off, and a question often recurs in the next conversations with another
# answer; a block of 8 keeps both inside one split except at its edges and still gives each of the
# 10 categories that en, it, ja, ko and uk share most (ai, emotion, ...) 3 to 14 blocks to stratify.
BLOCK = 8
# The alignment's costs: a conversation left without a partner, and a mismatch of each feature.
GAP_COST = 2.0
LENGTH_COST, REPEAT_COST, DIGITS_COST, FIRST_LENGTH_COST, SECOND_LENGTH_COST = 1.5, 1.0, 1.5, 0.8, 0.4


@dataclass
class Corpus:
    """The examples in the common schema, and what became of the utterances left out of a group."""

    rows: list[dict]
    duplicates: dict[str, int]  # language -> utterances dropped as a repeat of an earlier one
    unaligned: dict[str, int] = field(default_factory=dict)  # "language/split" -> examples not in a group

    def summary(self) -> dict:
        return {"unaligned": self.unaligned, "duplicates": self.duplicates}


# --- the package on disk --------------------------------------------------------------------------


def data_root() -> Path:
    """The installed package's data folder, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataSourceError(f"source: chatterbot needs the chatterbot-corpus package; install it: {INSTALL}")
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not root.is_dir():
        raise DataSourceError(f"the chatterbot-corpus package at {root.parent} has no data/ folder; reinstall it: {INSTALL}")
    return root


def available_categories(language: str, root: Path) -> set[str]:
    """The categories (file names) of one language's folder."""
    return {path.stem for path in (root / FOLDERS[language]).glob("*.yml")}


def categories(languages: list[str], chosen: list[str] | None, root: Path | None = None) -> list[str]:
    """The categories to study, sorted (label i is the i-th): `chosen`, or every one that all
    `languages` have. Refuses an unknown language code, a category that a language lacks, or no
    shared category."""
    unknown = [lang for lang in languages if lang not in FOLDERS]
    if unknown:
        raise DataSourceError(
            f"chatterbot-corpus has no language {', '.join(unknown)}; choose from {', '.join(sorted(FOLDERS))}"
        )
    root = root or data_root()
    have = {lang: available_categories(lang, root) for lang in languages}
    if chosen is None:
        shared = set.intersection(*have.values())
        if not shared:
            raise DataSourceError(f"chatterbot-corpus has no category that {', '.join(languages)} all have; choose other languages")
        return sorted(shared)
    for lang in languages:
        lacking = sorted(set(chosen) - have[lang])
        if lacking:
            raise DataSourceError(
                f"chatterbot-corpus {lang} ({FOLDERS[lang]}) has no category {', '.join(lacking)}; "
                f"it has {', '.join(sorted(have[lang]))}"
            )
    return sorted(set(chosen))


def files(languages: list[str], chosen: list[str] | None, root: Path | None = None) -> list[Path]:
    """The category files that a load reads, in a fixed order."""
    root = root or data_root()
    names = categories(languages, chosen, root)
    return [root / FOLDERS[lang] / f"{category}.yml" for lang in sorted(languages) for category in names]


def fingerprint(languages: list[str], chosen: list[str] | None, root: Path | None = None) -> str:
    """sha256 over the files read (by their place in the package, so another install of the same
    version gives the same key) and VERSION: another package version makes another task key."""
    root = root or data_root()
    digest = hashlib.sha256(f"chatterbot-{VERSION}".encode())
    for path in files(languages, chosen, root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def read_conversations(path: Path) -> list[tuple[str, ...]]:
    """A category file's conversations, each its non-empty utterances. A few conversations in the
    package are one string where the YAML lost its list (ukrainian/ai.yml: "Хто ти? - Я просто
    штучний інтелект."); such a string is one utterance."""
    conversations = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("conversations") or []
    read = []
    for conversation in conversations:
        utterances = conversation if isinstance(conversation, list) else [conversation]
        read.append(tuple(str(u).strip() for u in utterances if u is not None and str(u).strip()))
    return [c for c in read if c]


def normalise(text: str) -> str:
    """What makes two utterances duplicates: NFKC, case-folded, letters and digits only."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = re.sub(r"[^\w]+|_", " ", folded).split()
    return " ".join(words) or folded.strip()


# --- alignment ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """What of a conversation survives translation."""

    size: int  # utterances
    repeats: bool  # its first utterance is the previous conversation's
    repeated: bool  # ... or the next one's
    digits: tuple[str, ...]
    lengths: tuple[float, ...]  # log(1 + characters) of its first two utterances


def _shapes(conversations: list[tuple[str, ...]]) -> list[_Shape]:
    firsts = [normalise(c[0]) for c in conversations]
    return [
        _Shape(
            size=len(c),
            repeats=i > 0 and firsts[i - 1] == firsts[i],
            repeated=i + 1 < len(firsts) and firsts[i + 1] == firsts[i],
            digits=tuple(re.findall(r"\d+", unicodedata.normalize("NFKC", " ".join(c)))),
            lengths=tuple(math.log1p(len(u)) for u in c[:2]),
        )
        for i, c in enumerate(conversations)
    ]


def _cost(a: _Shape, b: _Shape, log_ratio: float) -> float:
    cost = LENGTH_COST * (a.size != b.size) + REPEAT_COST * ((a.repeats != b.repeats) + (a.repeated != b.repeated))
    cost += DIGITS_COST * (a.digits != b.digits)
    cost += FIRST_LENGTH_COST * abs(a.lengths[0] + log_ratio - b.lengths[0])
    if len(a.lengths) > 1 and len(b.lengths) > 1:
        cost += SECOND_LENGTH_COST * abs(a.lengths[1] + log_ratio - b.lengths[1])
    return cost


def align_pair(pivot: list[tuple[str, ...]], other: list[tuple[str, ...]]) -> list[tuple[int | None, int | None]]:
    """The cheapest monotone alignment of two files' conversations: (pivot index, other index)
    pairs in order, None where a conversation has no partner."""
    a, b = _shapes(pivot), _shapes(other)
    chars = [sum(len(u) for conversation in file for u in conversation) for file in (pivot, other)]
    log_ratio = math.log(max(chars[1], 1) / max(chars[0], 1))  # e.g. Japanese needs fewer characters
    n, m = len(a), len(b)
    best = [[math.inf] * (m + 1) for _ in range(n + 1)]
    came = [[(0, 0)] * (m + 1) for _ in range(n + 1)]
    best[0][0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            here = best[i][j]
            steps = ((1, 1, _cost(a[i], b[j], log_ratio) if i < n and j < m else math.inf), (1, 0, GAP_COST), (0, 1, GAP_COST))
            for di, dj, cost in steps:  # ties go to the first step: a match
                if i + di <= n and j + dj <= m and here + cost < best[i + di][j + dj]:
                    best[i + di][j + dj], came[i + di][j + dj] = here + cost, (i, j)
    pairs, (i, j) = [], (n, m)
    while (i, j) != (0, 0):
        pi, pj = came[i][j]
        pairs.append((pi if pi < i else None, pj if pj < j else None))
        i, j = pi, pj
    return pairs[::-1]


def align(conversations: dict[str, list[tuple[str, ...]]]) -> list[dict[str, int]]:
    """One category's aligned rows, in order: {language: conversation index}. The pivot is the
    language with the most conversations (the first code in sorted order on a tie); a conversation
    of another language with no pivot partner gets its own row after its predecessor's."""
    languages = sorted(conversations)
    pivot = max(languages, key=lambda lang: len(conversations[lang]))
    rows = [{pivot: i} for i in range(len(conversations[pivot]))]
    extras: dict[int, list[dict[str, int]]] = defaultdict(list)  # pivot row -> rows after it (-1: before all)
    for language in languages:
        if language == pivot:
            continue
        previous = -1
        for p, q in align_pair(conversations[pivot], conversations[language]):
            if p is None:
                extras[previous].append({language: q})
                continue
            if q is not None:
                rows[p][language] = q
            previous = p
    return extras[-1] + [row for p, pivot_row in enumerate(rows) for row in [pivot_row, *extras[p]]]


# --- the examples ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Utterance:
    language: str
    category: str
    row: int
    position: int
    text: str
    aligned: bool

    @property
    def example_id(self) -> str:
        own = "" if self.aligned else f"-{self.language}"  # a group of its own
        return f"{self.language}-{self.category}-c{self.row:03d}-u{self.position:02d}{own}"


def _utterances(category: str, conversations: dict[str, list[tuple[str, ...]]]) -> list[_Utterance]:
    """Every utterance of one category with its aligned row, in row and position order (the
    module's docstring, steps 1 and 2)."""
    out = []
    pivot = max(sorted(conversations), key=lambda lang: len(conversations[lang]))
    for r, row in enumerate(align(conversations)):
        sizes = {lang: len(conversations[lang][q]) for lang, q in row.items()}
        votes = Counter(sizes.values())
        shared = min(votes, key=lambda size: (-votes[size], size != sizes.get(pivot), size))
        for lang, q in sorted(row.items()):
            aligned = sizes[lang] == shared and votes[shared] > 1
            out += [_Utterance(lang, category, r, u, text, aligned) for u, text in enumerate(conversations[lang][q])]
    return out


def load(languages: list[str], chosen: list[str] | None, sizes: dict[str, int], seed: int, root: Path | None = None) -> Corpus:
    """The examples of the chosen categories (all shared ones when None) in `languages`, aligned,
    deduplicated and split as the module's docstring says; `root` is the package's data folder
    (or a test's own corpus in its layout)."""
    root = root or data_root()
    names = categories(languages, chosen, root)
    kept: list[tuple[_Utterance, tuple[str, int]]] = []  # (utterance, its block)
    duplicates, seen = Counter({lang: 0 for lang in languages}), {lang: set() for lang in languages}
    for category in names:
        conversations = {lang: read_conversations(root / FOLDERS[lang] / f"{category}.yml") for lang in languages}
        present = {lang: c for lang, c in conversations.items() if c}
        utterances = _utterances(category, present) if present else []
        block = min(BLOCK, max(1, (1 + max((u.row for u in utterances), default=0)) // 3))
        for utterance in utterances:
            text = normalise(utterance.text)
            if text in seen[utterance.language]:
                duplicates[utterance.language] += 1
            else:
                seen[utterance.language].add(text)
                kept.append((utterance, (category, utterance.row // block)))
    split_of = _split_blocks(Counter(unit for _, unit in kept), names, len(languages), sizes, seed)
    rows = [
        {"example_id": u.example_id, "language": u.language, "split": split_of[unit], "text_a": u.text,
         "text_b": None, "label": names.index(u.category)}
        for u, unit in kept
    ]
    rows = _cap_train(rows, languages, sizes["train"], seed)
    counts = Counter(f"{row['language']}/{row['split']}" for row in rows)
    empty = [f"{lang}/{split}" for lang in languages for split in SPLITS if not counts[f"{lang}/{split}"]]
    if empty:
        raise DataSourceError(
            f"chatterbot-corpus leaves {', '.join(empty)} without examples: whole blocks of up to {BLOCK} aligned "
            "conversations go to a split, and a category needs 3 to reach every split; add categories to data.categories"
        )
    unaligned = {f"{lang}/{split}": 0 for lang in languages for split in SPLITS}
    for row in rows:
        if row["example_id"].endswith(f"-{row['language']}"):
            unaligned[f"{row['language']}/{row['split']}"] += 1
    return Corpus(rows, dict(duplicates), unaligned)


def _split_blocks(
    per_block: Counter, names: list[str], n_languages: int, sizes: dict[str, int], seed: int
) -> dict[tuple[str, int], str]:
    """(category, block) -> split, from each block's number of utterances (the module's docstring, step 4)."""
    total = sum(per_block.values())
    split_of = {}
    for category in names:
        blocks = sorted(b for c, b in per_block if c == category)
        random.Random(f"chatterbot-{seed}-{category}").shuffle(blocks)
        enough = len(blocks) >= 3  # for a block in every split
        share = sum(per_block[(category, b)] for b in blocks) / total
        for split, later_splits in (("test", 2), ("validation", 1)):
            target, count = sizes[split] * n_languages * share, 0
            while len(blocks) > later_splits:  # leave a block for each later split
                size = per_block[(category, blocks[0])]
                closer = abs(count + size - target) < abs(count - target)
                if not (closer or (enough and count == 0)):
                    break
                split_of[(category, blocks.pop(0))] = split
                count += size
        split_of.update({(category, b): "train" for b in blocks})
    return split_of


def _cap_train(rows: list[dict], languages: list[str], cap: int, seed: int) -> list[dict]:
    """The rows with each language's train split subsampled to `cap` (seeded; order kept)."""
    dropped = set()
    for lang in languages:
        train = [i for i, row in enumerate(rows) if row["language"] == lang and row["split"] == "train"]
        if len(train) > cap:
            dropped |= set(train) - set(random.Random(f"chatterbot-{seed}-{lang}-train").sample(train, cap))
    return [row for i, row in enumerate(rows) if i not in dropped]
