"""What the `langspec` command prints and writes: its consoles, messages and errors, result tables
as a table, CSV or JSON, result files, and the accuracy summary of a run. Every value from a store
or a dataset passes through `printable`: terminal controls are shown, never obeyed."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console as RichConsole, ConsoleDimensions
from rich.markup import escape

from langspec.errors import UsageError

if TYPE_CHECKING:
    from rich.table import Table

DEFAULT_STORE = Path("results")  # the store every command reads or writes unless --store says otherwise
UNWRAPPED = 100_000  # the width of a pipe or a file: wide enough that no line is ever wrapped or cut


class Console(RichConsole):
    """Rich's console, except that output to a pipe or a file is never wrapped or cut at 80
    columns: scripts and `| less -S` get whole table rows and whole commands."""

    @property
    def size(self) -> ConsoleDimensions:
        return super().size if self.is_terminal else ConsoleDimensions(UNWRAPPED, 25)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


out = Console()
err = Console(stderr=True)


def fail(error: Exception) -> None:
    """Print `error` (one of langspec.errors.ERROR_ROOTS) and exit with its code."""
    err.print(f"[bold red]error:[/] {escape(printable(str(error)))}", highlight=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


def say(text: str) -> None:
    """A message line: never broken by Rich, so a command in it copies whole even from a terminal."""
    out.print(escape(printable(text)), highlight=False, soft_wrap=True)


# What a terminal acts on rather than shows: C0 controls but tab and newline (ESC starts its control
# sequences), DEL and C1. Values come from datasets and files, which anyone may have written.
TERMINAL_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """`text` with each terminal control written out as `\\x1b`: shown, never obeyed."""
    return text.translate(TERMINAL_CONTROLS)


def literal(text: str) -> str:
    """`text` for Rich to print as it is: its terminal controls written out, its [markup] escaped."""
    return escape(printable(text))


def print_table(table, format: str) -> None:
    """An Arrow table (a query's result) as `format`."""
    print_rows(table.column_names, table.to_pylist(), format)


def write_csv(handle, columns: list[str], rows: list[dict], *, shown: bool) -> None:
    """CSV with `\n` line ends, as DuckDB's CLI and psql write (`n=$(... | tail -1)` then holds the
    number alone); `shown`: on a terminal or a pipe, so terminal controls are written out."""
    import csv

    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow([printable(c) for c in columns] if shown else columns)  # a PIVOT's columns are values
    writer.writerows([printable(v) if shown and isinstance(v, str) else v for v in row.values()] for row in rows)


def print_rows(columns: list[str], rows: list[dict], format: str) -> None:
    if format == "json":
        print(json.dumps(rows, default=str, indent=1))  # ensure_ascii: controls, in keys as in values, are written \u001b
    elif format == "csv":
        write_csv(sys.stdout, columns, rows, shown=True)
    elif format == "table":
        from rich.table import Table

        view = Table()
        for column in columns:
            view.add_column(literal(column), overflow="fold")  # a narrow terminal folds a cell, never cuts it
        for row in rows:
            view.add_row(*[cell(v) for v in row.values()])
        out.print(view)
        out.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim", soft_wrap=True)
    else:
        fail(UsageError(f"--format must be table, csv or json, not {format!r}"))


def cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "NULL" if value is None else literal(str(value))


OUT_FORMATS = (".csv", ".parquet", ".json")


def check_out_file(path: Path, store: Path) -> None:
    """Before the query runs: a suffix langspec writes, no link, and a place outside the store (whose files are langspec's)."""
    if path.suffix not in OUT_FORMATS:
        fail(UsageError(f"--out {path}: name a file ending in {', '.join(OUT_FORMATS)} (the format is taken from the suffix)"))
    if path.is_symlink():
        fail(UsageError(link_refused(path)))
    if path.resolve().is_relative_to(store.resolve()):
        fail(UsageError(f"--out {path} is inside the store {store}, whose files are langspec's; write it elsewhere"))


def write_table(table, path: Path) -> None:
    """A query's result as a file, its values as they are (nothing escaped: a file is not a terminal)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        replace_file(path, lambda handle: pq.write_table(table, handle), binary=True)
    elif path.suffix == ".csv":
        replace_file(path, lambda handle: write_csv(handle, table.column_names, table.to_pylist(), shown=False))
    else:
        replace_file(path, lambda handle: handle.write(json.dumps(table.to_pylist(), default=str, indent=1) + "\n"))


def replace_file(path: Path, write: Callable, binary: bool = False) -> None:
    """Write `path` as a new file beside it, then rename that into its place. The rename replaces a link
    planted at `path` after the check below rather than following it, and a reader never sees half a file."""
    if path.is_symlink():
        fail(UsageError(link_refused(path)))
    new = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)  # the umask applies, as to any new file
        try:
            with open(fd, "wb" if binary else "w", newline=None if binary else "") as handle:
                write(handle)
            os.replace(new, path)
        except BaseException:
            new.unlink(missing_ok=True)  # ours alone: O_EXCL made it
            raise
    except OSError as error:
        fail(UsageError(f"--out {path}: cannot write it ({error.strerror}); name a file in a directory you can write"))


def link_refused(path: Path) -> str:
    return (f"--out {path} is a symbolic link: langspec writes no file through a link, which may lead anywhere "
            f"(someone else can plant one); remove the link or name another file")


def accuracy_table(accuracy: list[dict]) -> Table:
    from rich.table import Table

    from store.queries import VARIANTS

    variants = sorted({row["variant"] for row in accuracy}, key=lambda v: (VARIANTS.index(v) if v in VARIANTS else len(VARIANTS), v))
    table = Table()
    table.add_column("language")
    for variant in variants:
        table.add_column(literal(variant), justify="right")  # variants and languages are the store's values
    cells = {(row["language"], row["variant"]): row for row in accuracy}
    for language in sorted({row["language"] for row in accuracy}):
        table.add_row(literal(language), *[accuracycell(cells.get((language, v))) for v in variants])
    return table


def accuracycell(row: dict | None) -> str:
    if row is None:
        return "-"
    spread = f" ± {row['sd']:.3f}" if row["sd"] is not None else ""
    return f"{row['accuracy']:.3f}{spread}"
