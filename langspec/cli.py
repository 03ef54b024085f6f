"""The `langspec` command: validate, plan, run, query and inspect a study."""

from __future__ import annotations

import json
import shlex
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import typer.core
from rich.markup import escape

from langspec.errors import ERROR_ROOTS, UsageError
from langspec.output import DEFAULT_STORE, check_out_file, err, fail, out, print_rows, print_table, printable, say, write_table
from langspec.run_summary import print_run_summary
from store.errors import QueryError

# The rest is imported where it is used, so that --version, --help and status answer at once: the
# spec's models import every stage (pydantic, pyarrow, numpy), a run imports torch and Ray.
if TYPE_CHECKING:

    from langspec.load import LoadedSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)


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
# Only `run` places the database: the store records where (store.connections.DB_RECORD), and every other command follows that.
DbDirOpt = Annotated[Path | None, typer.Option("--db-dir", metavar="DIR", help="Keep the store's database and its lock files in DIR, on "
                                               "this host's disk, with tasks/ on a shared --store (docs/store.md); later runs and "
                                               "every other command find it there. Default: where the last run kept it.")]
FormatOpt = Annotated[str, typer.Option("--format", metavar="FORMAT", help="table, csv or json.")]
OutOpt = Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write the result to FILE instead of printing it: "
                                             "CSV, Parquet or JSON by its suffix (.csv, .parquet, .json); outside the store.")]
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


def _load(spec: Path, overrides: list[str] | None, yes: bool = False) -> LoadedSpec:
    from langspec.load import load_spec  # heavy: the models of every stage

    return load_spec(spec, overrides or [], allow_large_sweep=yes)


@app.command()
def validate(spec: SpecArg, set_: SetOpt = None, yes: YesOpt = False) -> None:
    """Check a spec (and overrides); print every problem with its file:line:col."""
    try:
        loaded = _load(spec, set_, yes)
    except ERROR_ROOTS as error:
        fail(error)
    points = len(loaded.points)
    say(f"{spec}: valid ({points} sweep point{'s' if points > 1 else ''}, seeds {list(loaded.spec.seeds)})")


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (for editors: # yaml-language-server: $schema=...)."""
    from langspec.spec import json_schema

    print(json.dumps(json_schema(), indent=2))


@app.command()
def plan(spec: SpecArg, set_: SetOpt = None, store: StoreOpt = DEFAULT_STORE, yes: YesOpt = False) -> None:
    """Show the task graph: each task, its key, and whether it is cached or why it will run; then what
    the spec's seeds could detect, sized on the store's last completed run of the same spec."""
    from langspec.compile import compile_spec
    from langspec.plan import pilot_power, plan_tree

    try:
        loaded = _load(spec, set_, yes)
        out.print(plan_tree(compile_spec(loaded), store))
        out.print(pilot_power(loaded, store))
    except ERROR_ROOTS as error:
        fail(error)


@app.command()
def run(
    spec: SpecArg,
    set_: SetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    executor: Annotated[str, typer.Option(metavar="NAME", help="ray (default) or local (in-process, for debugging).")] = "ray",
    address: Annotated[str | None, typer.Option(metavar="ADDRESS", help="Join a Ray cluster (auto, ray://host:10001); default: start a local Ray.")] = None,
    yes: YesOpt = False,
    db_dir: DbDirOpt = None,
) -> None:
    """Run the study: every task not already in the store, results ingested into DuckDB."""
    from langspec.compile import compile_spec
    from langspec.execute import execute
    from langspec.progress import RunDisplay

    if executor not in ("ray", "local"):
        fail(UsageError(f"--executor must be ray or local, not {executor!r}"))
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop ends the run as Ctrl-C does
    try:
        loaded = _load(spec, set_, yes)
        graph = compile_spec(loaded)
        result = execute(graph, loaded, store, executor=executor, address=address, display=RunDisplay(err), db_dir=db_dir)
    except ERROR_ROOTS as error:
        fail(error)
    except KeyboardInterrupt:
        err.print(escape(f"interrupted: the run is marked interrupted and its workers are stopped; "
                         f"the same command resumes it ({store})"), highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    print_run_summary(result, store)
    if result.status != "completed":
        raise typer.Exit(1)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL over the store (read-only); the analyses that take only a run are views of the last completed run.", metavar="SQL", show_default=False)],
    store: StoreOpt = DEFAULT_STORE,
    format: FormatOpt = "table",
    out_file: OutOpt = None,
) -> None:
    """Run SQL over the store, read-only, and print the result (or write it to a file with --out).

    Only statements that read run (SELECT, PIVOT, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN); the connection
    reads the database alone: no COPY, no read_csv or other files, no extensions."""
    from store.statements import reading_statements

    def run(con):
        *before, last = reading_statements(con, sql)  # every statement checked before any runs
        for statement in before:
            con.execute(statement)
        return con.sql(last)

    _run_sql(store, format, run, out_file)


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

    from store.queries import bind, bind_sql, check_names, lookup, named_queries, parse_params, why_empty

    if name is None:
        view = Table("analysis", "parameters", "what it answers")
        view.columns[0].no_wrap = view.columns[1].no_wrap = True  # a name whole on one line; the answer wraps between words
        for q in named_queries().values():
            view.add_row(q.name, ", ".join(q.params), escape(q.doc))
        out.print(view)
        return
    try:
        chosen = lookup(name)
        given = parse_params(param or [])
        check_names(chosen, given)
    except QueryError as error:
        fail(error)
    if sql:
        from store.connections import connect_read_only

        try:
            with connect_read_only(store) as con:
                print(printable(bind_sql(chosen.sql, bind(con, chosen, given))))  # its literals are the store's values
        except ERROR_ROOTS as error:
            fail(error)
        return

    def run(con):
        params = bind(con, chosen, given)
        return con.sql(chosen.sql, params=params or None), lambda: why_empty(con, chosen, params)

    _run_sql(store, format, run, out_file)


@app.command()
def report(
    store: StoreOpt = DEFAULT_STORE,
    out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR", help="Directory of the page and figures (default: STORE/report/run-N, and /POINT for a swept run).")] = None,
    run_id: Annotated[int | None, typer.Option("--run", metavar="N", help="Which run (default: the last completed one).")] = None,
    k: Annotated[int | None, typer.Option(metavar="K", help="Proponents per test example (default: the run's analysis.top_k).")] = None,
    point: Annotated[str | None, typer.Option(metavar="POINT", help="Which sweep point of a run with a `sweep:`, e.g. prune.threshold=0.9.")] = None,
) -> None:
    """Write the study's findings (findings.json) and an HTML page with them and the figures."""
    from langspec.science.report import report_dir, resolve_run, write_report
    from store.connections import connect_read_only
    from store.queries import check_k

    try:
        with connect_read_only(store) as con:
            run_id, k, point = resolve_run(con, run_id, k, point)
            check_k(con, run_id, k)
            where = out_dir or report_dir(store, run_id, point)
            replaced = (where / "index.html").is_file()
            page = write_report(con, where, run_id, k, point)
    except ERROR_ROOTS as error:
        fail(error)
    say(f"report of run {run_id}{f' at {point}' if point else ''}{' (replacing the one there)' if replaced else ''}: {page}")
    say(f"findings: {page.parent / 'findings.json'}")


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="Directory for seed-S/LANGUAGE/subnetwork.json.", metavar="DIR", show_default=False)],
    store: StoreOpt = DEFAULT_STORE,
    run_id: Annotated[int | None, typer.Option("--run", metavar="N", help="Which run (default: the last completed one).")] = None,
    point: Annotated[str | None, typer.Option(metavar="POINT", help="Which sweep point of a run with a `sweep:`, e.g. prune.threshold=0.9.")] = None,
) -> None:
    """Write each language's subnetwork (head mask and checkpoints) as JSON, for use outside langspec."""
    from langspec.science.report import resolve_run
    from langspec.science.subnetwork import export_subnetworks
    from store.connections import connect_read_only

    try:
        with connect_read_only(store) as con:
            run_id, _, point = resolve_run(con, run_id, None, point, command="export")
            written = export_subnetworks(con, store, out_dir, run_id, point)
    except ERROR_ROOTS as error:
        fail(error)
    if not written:
        fail(QueryError(f"run {run_id} has no subnetworks (prune.enabled: false?)"))
    for path in written:
        say(f"wrote {path}")
    say("use one: docs/checkpoints.md shows how to load a checkpoint with its subnetwork in Hugging Face tools")


def _run_sql(store: Path, format: str, run, out_file: Path | None = None) -> None:
    """Open the store read-only (the parameterless analyses as views), run, print (or write `out_file`).
    `run(con)` gives a result, or a result and a function that says why it has no rows."""
    import duckdb

    from store.connections import connect_read_only
    from store.queries import register_views

    if out_file is not None:
        check_out_file(out_file, store)
        if format != "table" and f".{format}" != out_file.suffix:
            fail(UsageError(f"--format {format} disagrees with --out {out_file}: the file's suffix chooses its format; "
                            f"leave --format out, or name a .{format} file"))
    try:
        with connect_read_only(store) as con:
            register_views(con)
            result, why_empty = run(con), None
            if isinstance(result, tuple):
                result, why_empty = result
            table = result.to_arrow_table() if result is not None else None
            reason = why_empty() if why_empty is not None and table is not None and table.num_rows == 0 else None
    except ERROR_ROOTS as error:
        fail(error)
    except duckdb.Error as error:
        from store.connections import damaged_database, is_damage

        if is_damage(error):
            fail(damaged_database(store, error))
        hint = ""
        if "read-only" in str(error):
            hint = " (the store is read-only here: queries cannot change it)"
        elif isinstance(error, duckdb.PermissionException) or "configuration has been locked" in str(error):
            hint = " (queries read the store's database alone: no other file, no extension, no settings; --out FILE writes a result)"
        fail(QueryError(f"query failed: {error}{hint}"))
    if table is None:
        return
    if out_file is None:
        print_table(table, format)
    else:
        write_table(table, out_file)
        say(f"wrote {table.num_rows} row{'s' if table.num_rows != 1 else ''} to {out_file}")
    if reason:  # on stderr: csv and json on stdout stay parseable
        err.print(escape(printable(reason)), highlight=False, soft_wrap=True)


@app.command()
def status(store: StoreOpt = DEFAULT_STORE, runs: Annotated[int, typer.Option(metavar="N", help="How many recent runs.")] = 5) -> None:
    """The last runs in the store and what happened to their tasks; for a run still going, what is done,
    running (with its progress), queued and failed. Safe to run while the run writes the store."""
    from langspec.progress import read_progress
    from store.attempts import pid_alive
    from store.connections import connect_read_only
    from store.queries import internal_columns_rows

    try:
        with connect_read_only(store) as con:  # held for a moment: the run waits while a reader has the store open
            run_columns, listed = internal_columns_rows(con, "recent_runs", n=runs)
            last = listed[0]["run_id"] if listed else None
            task_columns, tasks = internal_columns_rows(con, "run_task_outcomes", run=last)
    except ERROR_ROOTS as error:
        fail(error)
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
        say(f"run {last} is running: {counts.get('ran', 0) + counts.get('cached', 0)} of {len(rows)} tasks done "
             f"({counts.get('ran', 0)} ran, {counts.get('cached', 0)} cached), {counts.get('running', 0)} running, "
             f"{counts.get('queued', 0)} queued, {counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped")
    say(f"tasks of run {last}:")
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
        fail(error)
    if not problems:
        say(f"{store}: every task directory matches its manifest and the database")
        return
    for problem in problems:
        action = f" -> {problem.repair}" if repair else ""
        say(f"{problem.kind}: {problem.what}: {problem.detail}{action}")
    if repair:
        say(f"{len(problems)} problem(s) repaired; `langspec run SPEC --store {shlex.quote(str(store))}` computes what was set aside")
    else:
        say(f"{len(problems)} problem(s); `langspec verify --repair --store {shlex.quote(str(store))}` repairs them")
    raise typer.Exit(1)
