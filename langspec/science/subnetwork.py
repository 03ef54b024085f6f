"""A language's subnetwork outside langspec: `langspec export` writes one subnetwork.json per seed and
language (its head mask and the checkpoints it goes with), and `apply_head_mask` makes a plain
Hugging Face model run as that subnetwork.

Masking a head h of layer l means zeroing its slice of the input of that layer's attention output
projection (runners/heads.py); zeroing the projection's weight columns of that slice instead is
the same computation, and leaves an ordinary model that `save_pretrained` and `pipeline` take as it is.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shlex
import stat
from pathlib import Path

import duckdb

from langspec.errors import UsageError
from store.errors import StoreError
from store.queries import internal_rows

# The spec's language codes (runners.data.LANGUAGE_CODE, a stage's, which the science does not import).
# A language read back from the store becomes a directory name only if it is one: a store's values are
# data, and a tampered store's `../../x` names no place outside `out`.
LANGUAGE_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def export_subnetworks(con: duckdb.DuckDBPyConnection, store_root: Path, out: Path, run_id: int, point: str) -> list[Path]:
    """Write out/seed-<seed>/<language>/subnetwork.json for every subnetwork of one run and point; nothing
    when a seed or language of the store could not be a directory name."""
    rows = internal_rows(con, "export_subnetworks", run_id=run_id, point=point)
    places = [subnetwork_directories(row, store_root) for row in rows]  # all checked before any is written
    written = []
    for row, directories in zip(rows, places):
        heads = row["heads"]
        document = {
            "language": row["language"],
            "seed": row["seed"],
            "head_mask": [row["kept"][layer * heads:(layer + 1) * heads] for layer in range(row["layers"])],  # [layer][head]: 1 kept
            "checkpoints": {  # the mask goes with the fine-tuned model (subnetwork) and with the SFT model (sft)
                "subnetwork": str((store_root / row["subnetwork_checkpoint"]).resolve()),
                "sft": str((store_root / row["sft_checkpoint"]).resolve()) if row["sft_checkpoint"] else None,
            },
            "test_accuracy": {"subnetwork": row["subnetwork_accuracy"], "sft": row["sft_accuracy"]},
            "run_id": run_id,
            "point": point,
            "prune_task": row["prune_task"],
        }
        written.append(write_new_file(out, directories, "subnetwork.json", json.dumps(document, indent=1)))
    return written


def subnetwork_directories(row: dict, store_root: Path) -> tuple[str, str]:
    """(seed-<seed>, <language>) of one subnetwork, refused unless the seed is an integer and the
    language a language code."""
    seed, language = row["seed"], row["language"]
    if type(seed) is not int or not isinstance(language, str) or not LANGUAGE_CODE.fullmatch(language):
        raise StoreError(
            f"the store's subnetwork of prune task {row['prune_task']} has seed {seed!r} and language {language!r}, "
            f"which make no directory name (a seed is an integer, a language code matches {LANGUAGE_CODE.pattern}): "
            f"the store was changed outside langspec, and nothing was exported; see its rows with "
            f"`langspec query 'SELECT DISTINCT task_key, seed, language FROM subnetworks' --store {shlex.quote(str(store_root))}`"
        )
    return f"seed-{seed}", language


def write_new_file(out: Path, directories: tuple[str, ...], name: str, text: str) -> Path:
    """out/<directories>/<name> holding `text`, written as a new file beside it and renamed into its place.
    Every step below `out` is opened without following a link, so a link that someone else planted among
    them is refused rather than followed, even one planted after a check."""
    path = out.joinpath(*directories, name)
    try:
        out.mkdir(parents=True, exist_ok=True)
        here = os.open(out, os.O_RDONLY | os.O_DIRECTORY)  # the directory the user named, link or not
        try:
            for directory in directories:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(directory, dir_fd=here)
                inner = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=here)  # a link: ENOTDIR
                os.close(here)
                here = inner
            _replace(here, name, text)
        finally:
            os.close(here)
    except OSError as error:
        steps = [out.joinpath(*directories[:depth]) for depth in range(1, len(directories) + 1)] + [path]
        link = next((step for step in steps if step.is_symlink()), None)
        if link is not None:
            raise UsageError(f"export {out}: {link} is a symbolic link, and langspec writes no file through a link, which "
                             f"may lead anywhere (someone else can plant one): remove it or export elsewhere") from None
        raise UsageError(f"export {out}: cannot write {path} ({error.strerror}); name a directory you can write") from None
    return path


def _replace(directory: int, name: str, text: str) -> None:
    """`name` in the open `directory` holding `text`: a new file, renamed over what is there, a link refused."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(os.lstat(name, dir_fd=directory).st_mode):
            raise OSError(errno.ELOOP, "a symbolic link", name)
    new = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=directory)
    try:
        with open(fd, "w") as handle:
            handle.write(text)
        os.replace(new, name, src_dir_fd=directory, dst_dir_fd=directory)  # replaces a link there, never follows it
    except BaseException:
        os.unlink(new, dir_fd=directory)  # ours alone: O_EXCL made it
        raise


def apply_head_mask(model, head_mask):
    """Make `model` (a Hugging Face XLM-R/BERT-style classifier) run as the subnetwork `head_mask`
    ([layer][head], 1 kept, 0 masked: subnetwork.json's head_mask): the masked heads' columns of
    each layer's attention output projection become zero. In place; returns the model."""
    import torch

    from runners.methods.heads import attention_output_projections, head_grid

    mask = torch.as_tensor(head_mask, dtype=torch.bool)  # (L, H)
    layers, heads = head_grid(model)
    if tuple(mask.shape) != (layers, heads):
        raise ValueError(f"head mask has shape {tuple(mask.shape)}, the model has {layers} layers x {heads} heads")
    with torch.no_grad():
        for layer, projection in enumerate(attention_output_projections(model)):
            weight = projection.weight.view(projection.out_features, heads, -1)  # (hidden, H, head_dim)
            weight[:, ~mask[layer], :] = 0
    return model
