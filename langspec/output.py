"""What the `langspec` command prints and writes: its consoles, messages and errors, result tables
as a table, CSV or JSON, result files, and the accuracy summary of a run. Every value from a store
or a dataset passes through `printable`: terminal controls are shown, never obeyed."""

from __future__ import annotations

import json
import math
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
    writer.writerows([printable(v) if shown and isinstance(v, str) else stable(v) for v in row.values()] for row in rows)


# DuckDB sums in parallel, in an order that changes from one execution to the next, so the last digits
# of a sum or a mean do too (0.29800000000000004, then 0.29799999999999993). CSV and JSON give every
# float to 10 significant digits: far more than a study's numbers carry (shares of 20 proponents, 100
# test examples), far fewer than the 15-17 a double holds, so the same store prints the same bytes.
# The float noise is near 1e-16 of a value, so a value prints differently only when it lies that close
# to a 10th-digit rounding boundary: about one value in a million. Parquet keeps the doubles as they are.
SIGNIFICANT_DIGITS = 10


def stable(value):
    """`value` with every float in it rounded to SIGNIFICANT_DIGITS significant digits."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, list):
        return [stable(item) for item in value]
    if isinstance(value, dict):
        return {key: stable(item) for key, item in value.items()}
    return value


def print_rows(columns: list[str], rows: list[dict], format: str) -> None:
    if format == "json":
        print(json.dumps(stable(rows), default=str, indent=1))  # ensure_ascii: controls, in keys as in values, are written \u001b
    elif format == "csv":
        write_csv(sys.stdout, columns, rows, shown=True)
    elif format == "table":
        view, left_out = fitted_table(columns, [[cell(v) for v in row.values()] for row in rows], out.width)
        out.print(view)
        footer = f"{len(rows)} row{'s' if len(rows) != 1 else ''}"
        if left_out:
            footer += f"; {left_out} more column{'s' if left_out != 1 else ''} than the terminal fits: --format csv, or a pipe, shows every one"
        out.print(footer, style="dim", soft_wrap=True)
    else:
        fail(UsageError(f"--format must be table, csv or json, not {format!r}"))


def cell(value) -> str:
    """A value as a table shows it: shown, never obeyed (printable), 4 significant digits for a float."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "NULL" if value is None else printable(str(value))


# Each column of a table costs its cells' width and 3 more (a space either side, a rule), the table 1 more.
COLUMN_FRAME, TABLE_FRAME = 3, 1
NARROWEST_CUT = 4  # a cut column shows at least three characters and the `…`


def fitted_table(columns: list[str], rows: list[list[str]], width: int) -> tuple[Table, int]:
    """A table of `rows` (cells as they are shown) no wider than `width`, and how many of the last
    columns it leaves out. Every cell stays on one line: a column too wide is cut with `…` (the widest
    first, all to one width), never wrapped, so no word is broken across lines; columns that do not
    fit even cut to NARROWEST_CUT are left out. A pipe's width is UNWRAPPED: nothing is cut."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    headers = [printable(column) for column in columns]  # a PIVOT's columns are the store's values
    natural = [max([cell_len(header), *(cell_len(row[i]) for row in rows)]) for i, header in enumerate(headers)]
    shown = len(columns)
    widths = cut_widths(natural, width - COLUMN_FRAME * shown - TABLE_FRAME)
    while widths is None and shown > 1:
        shown -= 1
        widths = cut_widths(natural[:shown], width - COLUMN_FRAME * shown - TABLE_FRAME)
    widths = widths or [max(1, width - COLUMN_FRAME - TABLE_FRAME)]  # one column, cut to whatever the terminal has
    view = Table()
    for header, column_width in zip(headers, widths):
        view.add_column(Text(header), width=column_width, no_wrap=True, overflow="ellipsis")
    for row in rows:
        view.add_row(*[Text(value) for value in row[:shown]])
    return view, len(columns) - shown


def cut_widths(natural: list[int], room: int) -> list[int] | None:
    """Column widths that sum to at most `room`: each column's own, except that the widest are cut to
    one common width, never below NARROWEST_CUT; None when even that is too wide."""
    for cap in range(max(natural, default=0), NARROWEST_CUT - 1, -1):
        widths = [min(natural_width, cap) for natural_width in natural]
        if sum(widths) <= room:
            return widths
    return None


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
        replace_file(path, lambda handle: handle.write(json.dumps(stable(table.to_pylist()), default=str, indent=1) + "\n"))


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
