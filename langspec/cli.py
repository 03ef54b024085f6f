"""The `langspec` command: validate, plan, run, query and inspect a study."""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import typer.core
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from langspec.errors import ERROR_ROOTS, UsageError
from store.errors import QueryError

# The rest is imported where it is used, so that --version, --help and status answer at once: the
# spec's models import every stage (pydantic, pyarrow, numpy), a run imports torch and Ray.
if TYPE_CHECKING:
    from rich.table import Table

    from langspec.load import LoadedSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
UNWRAPPED = 100_000  # the width of a pipe or a file: wide enough that no line is ever wrapped or cut


class _Console(Console):
    """Rich's console, except that output to a pipe or a file is never wrapped or cut at 80
    columns: scripts and `| less -S` get whole table rows and whole commands."""

    @property
    def size(self) -> ConsoleDimensions:
        return super().size if self.is_terminal else ConsoleDimensions(UNWRAPPED, 25)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


out = _Console()
err = _Console(stderr=True)


# Typer's help shows a value type after every option (`<bool>` for flags, `<list[str]>`) and
# `{spec}` for a required argument; langspec's options name their values with a metavar instead.
def _option_type(self, ctx) -> str | None:
    return self.metavar if self.metavar is not None or self.is_flag else self.display_type(ctx)


typer.core.TyperOption.display_type_rich = _option_type
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None
typer.core.TyperArgument._usage_display_name = lambda self: self.display_name_raw if self.required else f"[{self.display_name_raw}]"

SpecArg = Annotated[Path, typer.Argument(help="The YAML spec, e.g. specs/demo.yaml.", metavar="SPEC", show_default=False)]
YesOpt = Annotated[bool, typer.Option("--yes", help="Accept a sweep of more than 1,000 points (it is refused without).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", metavar="FIELD=VALUE", help="Override a field: --set finetune.epochs=2 (repeatable).")]
StoreOpt = Annotated[Path, typer.Option("--store", metavar="DIR", help="Store directory: langspec.duckdb and tasks/.")]
FormatOpt = Annotated[str, typer.Option("--format", metavar="FORMAT", help="table, csv or json.")]
OutOpt = Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write the result to FILE instead of printing it: "
                                             "CSV, Parquet or JSON by its suffix (.csv, .parquet, .json); outside the store.")]
DEFAULT_STORE = Path("results")
VERSIONS_OF = ("langspec", "torch", "transformers", "ray", "duckdb")


def _print_versions(show: bool) -> None:
    if show:
        from importlib import metadata  # here, not at the top: --help need not load it

        for package in VERSIONS_OF:
            print(f"{package} {metadata.version(package)}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_versions,
                                          help="Print the versions of langspec, torch, transformers, ray and duckdb.")] = False,
) -> None:
    pass


def main() -> None:
    app()


def _fail(error: Exception) -> None:  # one of ERROR_ROOTS
    err.print(f"[bold red]error:[/] {escape(printable(str(error)))}", highlight=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


def _say(text: str) -> None:
    """A message line: never broken by Rich, so a command in it copies whole even from a terminal."""
    out.print(escape(printable(text)), highlight=False, soft_wrap=True)


# What a terminal acts on rather than shows: C0 controls but tab and newline (ESC starts its control
# sequences), DEL and C1. Values come from datasets and files, which anyone may have written.
TERMINAL_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """`text` with each terminal control written out as `\\x1b`: shown, never obeyed."""
    return text.translate(TERMINAL_CONTROLS)


def _load(spec: Path, overrides: list[str] | None, yes: bool = False) -> LoadedSpec:
    from langspec.load import load_spec  # heavy: the models of every stage

    return load_spec(spec, overrides or [], allow_large_sweep=yes)


@app.command()
def validate(spec: SpecArg, set_: SetOpt = None, yes: YesOpt = False) -> None:
    """Check a spec (and overrides); print every problem with its file:line:col."""
    try:
        loaded = _load(spec, set_, yes)
    except ERROR_ROOTS as error:
        _fail(error)
    points = len(loaded.points)
    _say(f"{spec}: valid ({points} sweep point{'s' if points > 1 else ''}, seeds {list(loaded.spec.seeds)})")


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (for editors: # yaml-language-server: $schema=...)."""
    from langspec.spec import json_schema

    print(json.dumps(json_schema(), indent=2))


@app.command()
def plan(spec: SpecArg, set_: SetOpt = None, store: StoreOpt = DEFAULT_STORE, yes: YesOpt = False) -> None:
    """Show the task graph: each task, its key, and whether it is cached or why it will run."""
    from langspec.compile import compile_spec
    from langspec.plan import plan_tree

    try:
        graph = compile_spec(_load(spec, set_, yes))
        out.print(plan_tree(graph, store))
    except ERROR_ROOTS as error:
        _fail(error)


@app.command()
def run(
    spec: SpecArg,
    set_: SetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    executor: Annotated[str, typer.Option(metavar="NAME", help="ray (default) or local (in-process, for debugging).")] = "ray",
    address: Annotated[str | None, typer.Option(metavar="ADDRESS", help="Join a Ray cluster (auto, ray://host:10001); default: start a local Ray.")] = None,
    yes: YesOpt = False,
) -> None:
    """Run the study: every task not already in the store, results ingested into DuckDB."""
    from langspec.compile import compile_spec
    from langspec.execute import execute
    from langspec.progress import RunDisplay

    if executor not in ("ray", "local"):
        _fail(UsageError(f"--executor must be ray or local, not {executor!r}"))
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop ends the run as Ctrl-C does
    try:
        loaded = _load(spec, set_, yes)
        graph = compile_spec(loaded)
        result = execute(graph, loaded, store, executor=executor, address=address, display=RunDisplay(err))
    except ERROR_ROOTS as error:
        _fail(error)
    except KeyboardInterrupt:
        err.print(escape(f"interrupted: the run is marked interrupted and its workers are stopped; "
                         f"the same command resumes it ({store})"), highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    _print_run_summary(result, store)
    if result.status != "completed":
        raise typer.Exit(1)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_run_summary(result, store: Path) -> None:
    from store.db import connect_read_only
    from store.queries import internal, run_named, run_points

    counts: dict[str, int] = {}
    for record in result.records.values():
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    _say(f"run {result.run_id} {result.status}: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))
    for record in result.failed:
        first_line = (record.error or "").splitlines()[0] if record.error else "unknown error"
        out.print(f"[red]failed[/] {escape(record.name)}: {escape(first_line)}", highlight=False, soft_wrap=True)
        _say(f"  traceback: {traceback_command(result.run_id, record.name, store)}")
    with connect_read_only(store) as con:
        points = {point: run_named(con, "final_accuracy", run_id=result.run_id, point=point, split="test").to_pylist()
                  for point in run_points(con, result.run_id)}
        answers = _run_findings(con, result, points)
        seeds = internal(con, "run_seeds", run_id=result.run_id)[0][0]
    for point, accuracy in points.items():
        if accuracy:
            _say(f"test accuracy at the last epoch{', ' + point if point else ''} (mean over seeds):")
            out.print(_accuracy_table(accuracy))
    _say(f"results: {store / 'langspec.duckdb'}")
    where = _store_flag(store)
    _say(f"next: langspec analyze{where}  (the study's analyses)  ·  langspec report{where}  (findings and figures)")
    for point, findings in answers.items():
        _say(f"findings{' at ' + point if point else ''} (langspec report{where}{' --point ' + shlex.quote(point) if point else ''} for the numbers):")
        for finding in findings:
            why = f" ({finding.reasons[0]})" if finding.reasons and finding.verdict != "supported" else ""
            _say(f"  {finding.question} {finding.title}: {finding.verdict}{why}")
    if answers and seeds == 1:
        _say("  one seed gives no intervals, so no verdict can be `supported`: list two or more under `seeds:`")


def traceback_command(run_id: int, name: str, store: Path) -> str:
    """The command that prints a failed task's traceback, quoted for the shell and for SQL: a task's
    name holds sweep values, which may hold anything."""
    sql = f"SELECT error FROM tasks WHERE run_id = {run_id} AND name = {_sql_literal(name)}"
    return f"langspec query {shlex.quote(sql)}{_store_flag(store)}"


def _store_flag(store: Path) -> str:
    """` --store DIR` for a command the user is told to paste, quoted for the shell; none for the default."""
    return "" if store == DEFAULT_STORE else f" --store {shlex.quote(str(store))}"


def _run_findings(con, result, points: dict) -> dict:
    """Each sweep point's findings at the run's analysis.top_k (none for a run that did not complete)."""
    from langspec.findings import compute
    from store.queries import internal

    if result.status != "completed":
        return {}
    k = internal(con, "run_top_k", run_id=result.run_id)[0][0]
    return {point: compute(con, result.run_id, point, k) for point, accuracy in points.items() if accuracy}


def _accuracy_table(accuracy: list[dict]) -> Table:
    from rich.table import Table

    from store.queries import VARIANTS

    variants = sorted({row["variant"] for row in accuracy}, key=lambda v: (VARIANTS.index(v) if v in VARIANTS else len(VARIANTS), v))
    table = Table()
    table.add_column("language")
    for variant in variants:
        table.add_column(variant, justify="right")
    cells = {(row["language"], row["variant"]): row for row in accuracy}
    for language in sorted({row["language"] for row in accuracy}):
        table.add_row(language, *[_accuracy_cell(cells.get((language, v))) for v in variants])
    return table


def _accuracy_cell(row: dict | None) -> str:
    if row is None:
        return "-"
    spread = f" ± {row['sd']:.3f}" if row["sd"] is not None else ""
    return f"{row['accuracy']:.3f}{spread}"


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL over the store (read-only); the analyses without parameters are views.", metavar="SQL", show_default=False)],
    store: StoreOpt = DEFAULT_STORE,
    format: FormatOpt = "table",
    out_file: OutOpt = None,
) -> None:
    """Run SQL over the store, read-only, and print the result (or write it to a file with --out).

    The connection reads the database alone: no COPY, no read_csv or other files, no extensions."""
    _run_sql(store, format, lambda con: con.sql(sql), out_file)


@app.command()
def analyze(
    name: Annotated[str | None, typer.Argument(help="An analysis (store/sql/NAME.sql); none lists them.", metavar="NAME", show_default=False)] = None,
    store: StoreOpt = DEFAULT_STORE,
    format: FormatOpt = "table",
    param: Annotated[list[str] | None, typer.Option("--param", metavar="NAME=VALUE", help="Set a parameter: --param k=20 (repeatable).")] = None,
    sql: Annotated[bool, typer.Option("--sql", help="Print the analysis' SQL with its parameters bound instead of running it, for any DuckDB client.")] = False,
    out_file: OutOpt = None,
) -> None:
    """Run one of the study's analyses; without NAME, list them.

    run_id defaults to the last completed run, k to that run's analysis.top_k, point to its sweep
    point when it has one (a run with a `sweep:` needs --param point=..., e.g.
    point=prune.threshold=0.9). With --sql, paste the printed SQL into any client that opens the
    store, e.g. `duckdb -readonly results/langspec.duckdb`.
    """
    from rich.table import Table

    from store.queries import named_queries, resolve

    queries = named_queries()
    if name is None:
        view = Table("analysis", "parameters", "what it answers")
        for q in queries.values():
            view.add_row(q.name, ", ".join(q.params), escape(q.doc))
        out.print(view)
        return
    if name not in queries:
        from difflib import get_close_matches

        close = get_close_matches(name, list(queries), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        _fail(QueryError(f"no analysis named {name!r}; {hint}the analyses: {', '.join(queries)}"))
    chosen = queries[name]
    given = _query_params(param or [])
    unknown = sorted(set(given) - set(chosen.params))
    if unknown:
        takes = f"takes --param {', '.join(chosen.params)}" if chosen.params else "takes no --param"
        _fail(QueryError(f"the analysis {name} {takes}, not {', '.join(unknown)}"))

    def bound(con) -> dict[str, object]:
        _check_param_values(con, given)
        params = resolve(con, chosen, given)
        if "k" in given:
            check_k(con, params["run_id"], params["k"])
        return params

    if sql:
        from store.db import connect_read_only

        try:
            with connect_read_only(store) as con:
                print(bind_sql(chosen.sql, bound(con)))
        except ERROR_ROOTS as error:
            _fail(error)
        return
    from store.queries import why_empty

    def run(con):
        params = bound(con)
        return con.sql(chosen.sql, params=params or None), lambda: why_empty(con, chosen, params)

    _run_sql(store, format, run, out_file)


# Parameters whose values the store lists (store/sql/internal/param_values_NAME.sql): a value it
# lacks would give zero rows, not an error.
CHECKED_PARAMS = ("split", "language")


def _check_param_values(con, given: dict[str, object]) -> None:
    from store.queries import internal

    for name in CHECKED_PARAMS:
        if name in given:
            allowed = [row[0] for row in internal(con, f"param_values_{name}")]
            if given[name] not in allowed:
                raise QueryError(f"--param {name}={given[name]}: the store has no {name} {given[name]!r}; it has {', '.join(map(str, allowed))}")


def check_k(con, run_id: object, k: object) -> None:
    """A QueryError unless k fits the run (store.queries.k_fits)."""
    from store.queries import internal, k_fits

    scored = internal(con, "run_scored_training_examples", run_id=run_id)[0][0]
    upper = f" and below {scored}, the training examples run {run_id}'s TracIn scored" if scored is not None else ""
    if not k_fits(k, scored):
        raise QueryError(f"k = {k!r}: k (proponents per test example) must be a whole number of at least 1{upper}; e.g. k=20")


def bind_sql(sql: str, params: dict[str, object]) -> str:
    """`sql` with each `$name` replaced by its value as an SQL literal: for reading and pasting
    into another client, never for running here (langspec binds parameters by value)."""
    return re.sub(r"\$([A-Za-z_]\w*)", lambda match: _sql_literal(params[match[1]]), sql)


def _sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


@app.command()
def report(
    store: StoreOpt = DEFAULT_STORE,
    out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR", help="Directory of the page and figures (default: STORE/report/run-N, and /POINT for a swept run).")] = None,
    run_id: Annotated[int | None, typer.Option("--run", metavar="N", help="Which run (default: the last completed one).")] = None,
    k: Annotated[int | None, typer.Option(metavar="K", help="Proponents per test example (default: the run's analysis.top_k).")] = None,
    point: Annotated[str | None, typer.Option(metavar="POINT", help="Which sweep point of a run with a `sweep:`, e.g. prune.threshold=0.9.")] = None,
) -> None:
    """Write the study's findings (findings.json) and an HTML page with them and the figures."""
    from langspec.report import report_dir, resolve_run, write_report
    from store.db import connect_read_only

    try:
        with connect_read_only(store) as con:
            run_id, k, point = resolve_run(con, run_id, k, point)
            check_k(con, run_id, k)
            where = out_dir or report_dir(store, run_id, point)
            replaced = (where / "index.html").is_file()
            page = write_report(con, where, run_id, k, point)
    except ERROR_ROOTS as error:
        _fail(error)
    _say(f"report of run {run_id}{f' at {point}' if point else ''}{' (replacing the one there)' if replaced else ''}: {page}")
    _say(f"findings: {page.parent / 'findings.json'}")


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="Directory for seed-S/LANGUAGE/subnetwork.json.", metavar="DIR", show_default=False)],
    store: StoreOpt = DEFAULT_STORE,
    run_id: Annotated[int | None, typer.Option("--run", metavar="N", help="Which run (default: the last completed one).")] = None,
    point: Annotated[str | None, typer.Option(metavar="POINT", help="Which sweep point of a run with a `sweep:`, e.g. prune.threshold=0.9.")] = None,
) -> None:
    """Write each language's subnetwork (head mask and checkpoints) as JSON, for use outside langspec."""
    from langspec.report import resolve_run
    from langspec.subnetwork import export_subnetworks
    from store.db import connect_read_only

    try:
        with connect_read_only(store) as con:
            run_id, _, point = resolve_run(con, run_id, None, point)
            written = export_subnetworks(con, store, out_dir, run_id, point)
    except ERROR_ROOTS as error:
        _fail(error)
    if not written:
        _fail(QueryError(f"run {run_id} has no subnetworks (prune.enabled: false?)"))
    for path in written:
        _say(f"wrote {path}")
    _say("use one: README, section 'Checkpoints in Hugging Face tools'")


def _run_sql(store: Path, format: str, run, out_file: Path | None = None) -> None:
    """Open the store read-only (the parameterless analyses as views), run, print (or write `out_file`).
    `run(con)` gives a result, or a result and a function that says why it has no rows."""
    import duckdb

    from store.db import connect_read_only
    from store.queries import register_views

    if out_file is not None:
        _check_out_file(out_file, store)
    try:
        with connect_read_only(store) as con:
            register_views(con)
            result, why_empty = run(con), None
            if isinstance(result, tuple):
                result, why_empty = result
            table = result.to_arrow_table() if result is not None else None
            reason = why_empty() if why_empty is not None and table is not None and table.num_rows == 0 else None
    except ERROR_ROOTS as error:
        _fail(error)
    except duckdb.Error as error:
        from store.db import damaged_database, is_damage

        if is_damage(error):
            _fail(damaged_database(store, error))
        hint = ""
        if "read-only" in str(error):
            hint = " (the store is read-only here: queries cannot change it)"
        elif isinstance(error, duckdb.PermissionException) or "configuration has been locked" in str(error):
            hint = " (queries read the store's database alone: no other file, no extension, no settings; --out FILE writes a result)"
        _fail(QueryError(f"query failed: {error}{hint}"))
    if table is None:
        return
    if out_file is None:
        print_table(table, format)
    else:
        write_table(table, out_file)
        _say(f"wrote {table.num_rows} row{'s' if table.num_rows != 1 else ''} to {out_file}")
    if reason:  # on stderr: csv and json on stdout stay parseable
        err.print(escape(printable(reason)), highlight=False, soft_wrap=True)


OUT_FORMATS = (".csv", ".parquet", ".json")


def _check_out_file(path: Path, store: Path) -> None:
    """Before the query runs: a suffix langspec writes, and a place outside the store (whose files are langspec's)."""
    if path.suffix not in OUT_FORMATS:
        _fail(UsageError(f"--out {path}: name a file ending in {', '.join(OUT_FORMATS)} (the format is taken from the suffix)"))
    if path.resolve().is_relative_to(store.resolve()):
        _fail(UsageError(f"--out {path} is inside the store {store}, whose files are langspec's; write it elsewhere"))


def write_table(table, path: Path) -> None:
    """A query's result as a file, its values as they are (nothing escaped: a file is not a terminal)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif path.suffix == ".csv":
        with open(path, "w", newline="") as handle:
            _write_csv(handle, table.column_names, table.to_pylist(), shown=False)
    else:
        path.write_text(json.dumps(table.to_pylist(), default=str, indent=1) + "\n")


def _query_params(pairs: list[str]) -> dict[str, object]:
    """--param name=value pairs; values are read as YAML scalars (0 is a number, ka a string, an
    empty value the empty string: --param point= is a run's one unswept point)."""
    import yaml

    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise QueryError(f"--param {pair!r}: write it as name=value, e.g. --param language=ka")
        params[name.strip()] = yaml.safe_load(value) if value.strip() else ""
    return params


def print_table(table, format: str) -> None:
    """An Arrow table (a query's result) as `format`."""
    print_rows(table.column_names, table.to_pylist(), format)


def _write_csv(handle, columns: list[str], rows: list[dict], *, shown: bool) -> None:
    """CSV with `\n` line ends, as DuckDB's CLI and psql write (`n=$(... | tail -1)` then holds the
    number alone); `shown`: on a terminal or a pipe, so terminal controls are written out."""
    import csv

    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([printable(v) if shown and isinstance(v, str) else v for v in row.values()] for row in rows)


def print_rows(columns: list[str], rows: list[dict], format: str) -> None:
    if format == "json":
        print(json.dumps(rows, default=str, indent=1))
    elif format == "csv":
        _write_csv(sys.stdout, columns, rows, shown=True)
    elif format == "table":
        from rich.table import Table

        view = Table()
        for column in columns:
            view.add_column(column, overflow="fold")  # a narrow terminal folds a cell, never cuts it
        for row in rows:
            view.add_row(*[_cell(v) for v in row.values()])
        out.print(view)
        out.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim", soft_wrap=True)
    else:
        _fail(UsageError(f"--format must be table, csv or json, not {format!r}"))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "NULL" if value is None else escape(printable(str(value)))


@app.command()
def status(store: StoreOpt = DEFAULT_STORE, runs: Annotated[int, typer.Option(metavar="N", help="How many recent runs.")] = 5) -> None:
    """The last runs in the store and what happened to their tasks; for a run still going, what is done,
    running (with its progress), queued and failed. Safe to run while the run writes the store."""
    from langspec.progress import read_progress
    from store.artifacts import pid_alive
    from store.db import connect_read_only
    from store.queries import internal_columns_rows

    try:
        with connect_read_only(store) as con:  # held for a moment: the run waits while a reader has the store open
            run_columns, listed = internal_columns_rows(con, "recent_runs", n=runs)
            last = listed[0]["run_id"] if listed else None
            task_columns, tasks = internal_columns_rows(con, "run_task_outcomes", run=last)
    except ERROR_ROOTS as error:
        _fail(error)
    here = socket.gethostname()
    for row in listed:
        host, pid = row.pop("host"), row.pop("pid")
        if row["status"] == "running" and host == here and pid and not pid_alive(pid):  # killed: never marked
            row["status"] = "running (its driver is gone)"
    print_rows([c for c in run_columns if c not in ("pid", "host")], listed, "table")
    if last is None:
        return
    live = listed[0]["status"] == "running"
    rows = []
    for task in tasks:
        progress = read_progress(store, task["task_key"]) if live and task["outcome"] == "queued" else None
        outcome = f"running {progress}".strip() if progress is not None else task["outcome"]
        rows.append({"name": task["name"], "outcome": outcome, "seconds": task["seconds"], "device": task["device"],
                     "key": task["task_key"][:12], "error": task["error"]})
    if live:
        counts = {}
        for row in rows:
            word = row["outcome"].split()[0]
            counts[word] = counts.get(word, 0) + 1
        _say(f"run {last} is running: {counts.get('ran', 0) + counts.get('cached', 0)} of {len(rows)} tasks done "
             f"({counts.get('ran', 0)} ran, {counts.get('cached', 0)} cached), {counts.get('running', 0)} running, "
             f"{counts.get('queued', 0)} queued, {counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped")
    _say(f"tasks of run {last}:")
    print_rows(list(rows[0]) if rows else [c for c in task_columns if c != "task_key"], rows, "table")


@app.command()
def verify(
    store: StoreOpt = DEFAULT_STORE,
    repair: Annotated[bool, typer.Option("--repair", help="Set broken results aside for the next run and ingest complete ones.")] = False,
) -> None:
    """Check every task directory against its manifest (sizes, sha256) and the database; exit 1 if anything is wrong."""
    from langspec.verify import verify_store

    try:
        problems = verify_store(store, repair=repair)
    except ERROR_ROOTS as error:
        _fail(error)
    if not problems:
        _say(f"{store}: every task directory matches its manifest and the database")
        return
    for problem in problems:
        action = f" -> {problem.repair}" if repair else ""
        _say(f"{problem.kind}: {problem.what}: {problem.detail}{action}")
    if repair:
        _say(f"{len(problems)} problem(s) repaired; `langspec run SPEC --store {shlex.quote(str(store))}` computes what was set aside")
    else:
        _say(f"{len(problems)} problem(s); `langspec verify --repair --store {shlex.quote(str(store))}` repairs them")
    raise typer.Exit(1)
