"""langspec's cache on disk (cache_root): the packaged models' converted directories, and the sha256
of model files, memoized there so that compiling a spec (each `langspec status`, `plan` and `run`)
reads no weights it has read before."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

# A file modified less than this long ago is hashed without its memo: a write within one timestamp
# tick (up to milliseconds on common filesystems) leaves size and mtime as they were.
SETTLED_S = 2.0
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def cache_root() -> Path:
    """$LANGSPEC_CACHE, else $XDG_CACHE_HOME/langspec, else ~/.cache/langspec."""
    if os.environ.get("LANGSPEC_CACHE"):
        return Path(os.environ["LANGSPEC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "langspec"


def directory_sha256(root: Path) -> str:
    """A model directory's content wherever it lies: sha256 over its files' names inside it (POSIX,
    sorted), each followed by the file's sha256. Hidden files and directories (a name starting with
    ".": .git/, the .cache/ a hub download leaves, .gitattributes) are left out: from_pretrained reads
    none of them, and tools rewrite them without changing the model. Links are followed, as
    from_pretrained follows them (a hub cache's snapshot directory is links into its blobs)."""
    root = Path(root)
    digest = hashlib.sha256()
    for name in sorted(_model_files(root)):
        digest.update(name.encode() + b"\0")
        digest.update(bytes.fromhex(file_sha256(root / name)))
    return digest.hexdigest()


def _model_files(root: Path) -> list[str]:
    names, seen = [], set()
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        seen.add(os.path.realpath(directory))  # a link back up the tree is walked once, not forever
        subdirectories[:] = [d for d in subdirectories
                             if not d.startswith(".") and os.path.realpath(os.path.join(directory, d)) not in seen]
        names += [Path(directory, f).relative_to(root).as_posix() for f in files if not f.startswith(".")]
    return names


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, read once per version of the file: memoized in this process and
    under cache_root()/sha256/, by the file's absolute path, size and mtime."""
    path = Path(path).absolute()
    found = path.stat()
    if time.time() - found.st_mtime < SETTLED_S:
        return _read_sha256(path)
    return _memoized_sha256(str(path), found.st_size, found.st_mtime_ns)


@functools.cache
def _memoized_sha256(path: str, size: int, mtime_ns: int) -> str:
    memo = cache_root() / "sha256" / hashlib.sha256(f"{path}\0{size}\0{mtime_ns}".encode()).hexdigest()
    try:
        known = memo.read_text()
        if SHA256_HEX.fullmatch(known):
            return known
    except OSError:
        pass
    digest = _read_sha256(Path(path))
    _write_atomically(memo, digest)
    return digest


def _read_sha256(path: Path) -> str:
    """~2 s for a 1 GB weight file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    """Written whole or not at all (temporary file, then os.replace), so that processes hashing at once
    never read half a memo. A cache that cannot be written costs a re-read next time, nothing more."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(scratch, path)
    except OSError:
        Path(scratch).unlink(missing_ok=True)
