"""The `langspec` command: validate, plan, run, query and inspect a study."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from langspec.errors import ERROR_ROOTS, UsageError
from langspec.load import LoadedSpec, load_spec
from store.errors import QueryError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

SpecArg = Annotated[Path, typer.Argument(help="The YAML spec, e.g. specs/demo.yaml.", show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set finetune.epochs=2 (repeatable).")]
StoreOpt = Annotated[Path, typer.Option("--store", help="Store directory: langspec.duckdb and tasks/.")]
FormatOpt = Annotated[str, typer.Option("--format", help="table, csv or json.")]
DEFAULT_STORE = Path("results")


def main() -> None:
    app()


def _fail(error: Exception) -> None:  # one of ERROR_ROOTS
    err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
    raise typer.Exit(error.exit_code)


def _load(spec: Path, overrides: list[str] | None) -> LoadedSpec:
    return load_spec(spec, overrides or [])


@app.command()
def validate(spec: SpecArg, set_: SetOpt = None) -> None:
    """Check a spec (and overrides); print every problem with its file:line:col."""
    try:
        loaded = _load(spec, set_)
    except ERROR_ROOTS as error:
        _fail(error)
    points = len(loaded.points)
    out.print(f"{spec}: valid ({points} sweep point{'s' if points > 1 else ''}, seeds {list(loaded.spec.seeds)})")


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (for editors: # yaml-language-server: $schema=...)."""
    from langspec.spec import json_schema

    print(json.dumps(json_schema(), indent=2))


@app.command()
def plan(spec: SpecArg, set_: SetOpt = None, store: StoreOpt = DEFAULT_STORE) -> None:
    """Show the task graph: each task, its key, and whether it is cached or why it will run."""
    from langspec.compile import compile_spec
    from langspec.plan import plan_tree

    try:
        graph = compile_spec(_load(spec, set_))
        out.print(plan_tree(graph, store))
    except ERROR_ROOTS as error:
        _fail(error)


@app.command()
def run(
    spec: SpecArg,
    set_: SetOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    executor: Annotated[str, typer.Option(help="ray (default) or local (in-process, for debugging).")] = "ray",
    address: Annotated[str | None, typer.Option(help="Join a Ray cluster (auto, ray://host:10001); default: start a local Ray.")] = None,
) -> None:
    """Run the study: every task not already in the store, results ingested into DuckDB."""
    from langspec.compile import compile_spec
    from langspec.execute import execute
    from langspec.progress import RunDisplay

    if executor not in ("ray", "local"):
        _fail(UsageError(f"--executor must be ray or local, not {executor!r}"))
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop ends the run as Ctrl-C does
    try:
        loaded = _load(spec, set_)
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
    from store.queries import run_named, run_points

    counts: dict[str, int] = {}
    for record in result.records.values():
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    out.print(f"run {result.run_id} {result.status}: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))
    for record in result.failed:
        first_line = (record.error or "").splitlines()[0] if record.error else "unknown error"
        out.print(f"[red]failed[/] {escape(record.name)}: {escape(first_line)}", highlight=False)
        out.print(escape(f"  traceback: langspec query \"SELECT error FROM tasks WHERE run_id = {result.run_id} AND name = '{record.name}'\""), highlight=False)
    with connect_read_only(store) as con:
        points = {point: run_named(con, "final_accuracy", run_id=result.run_id, point=point, split="test").to_pylist()
                  for point in run_points(con, result.run_id)}
    for point, accuracy in points.items():
        if accuracy:
            out.print(escape(f"test accuracy at the last epoch{', ' + point if point else ''} (mean over seeds):"))
            out.print(_accuracy_table(accuracy))
    out.print(escape(f"results: {store / 'langspec.duckdb'}"))
    where = "" if store == DEFAULT_STORE else f" --store {store}"
    out.print(escape(f"next: langspec analyze{where}  (the study's analyses)  ·  langspec report{where}  (figures)"))


def _accuracy_table(accuracy: list[dict]) -> Table:
    order = ("full", "subnetwork", "sft")  # the study's order: the model, its subnetworks, SFT
    variants = sorted({row["variant"] for row in accuracy}, key=lambda v: (order.index(v) if v in order else len(order), v))
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
    sql: Annotated[str, typer.Argument(help="SQL over the store (read-only); the analyses without parameters are views.")],
    store: StoreOpt = DEFAULT_STORE,
    format: FormatOpt = "table",
) -> None:
    """Run SQL over the store, read-only, and print the result."""
    _run_sql(store, format, lambda con: con.sql(sql))


@app.command()
def analyze(
    name: Annotated[str | None, typer.Argument(help="An analysis (store/sql/NAME.sql); none lists them.", show_default=False)] = None,
    store: StoreOpt = DEFAULT_STORE,
    format: FormatOpt = "table",
    param: Annotated[list[str] | None, typer.Option("--param", help="Set a parameter: --param k=20 (repeatable).")] = None,
) -> None:
    """Run one of the study's analyses; without NAME, list them. run_id defaults to the last
    completed run, k to that run's analysis.top_k, point to its sweep point when it has one (a run
    with a `sweep:` needs --param point=..., e.g. point=prune.threshold=0.9)."""
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
        hint = f"; did you mean {close[0]!r}?" if close else ""
        _fail(QueryError(f"no analysis named {name!r}{hint} (`langspec analyze` lists them)"))
    chosen = queries[name]

    def run(con):
        return con.sql(chosen.sql, params=resolve(con, chosen, _query_params(param or [])) or None)

    _run_sql(store, format, run)


@app.command()
def report(
    store: StoreOpt = DEFAULT_STORE,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Directory of the page and figures (default: STORE/report).")] = None,
    run_id: Annotated[int | None, typer.Option("--run", help="Which run (default: the last completed one).")] = None,
    k: Annotated[int | None, typer.Option(help="Proponents per test example (default: the run's analysis.top_k).")] = None,
    point: Annotated[str | None, typer.Option(help="Which sweep point of a run with a `sweep:`, e.g. prune.threshold=0.9.")] = None,
) -> None:
    """Write an HTML page with the study's figures and a summary that answers its questions."""
    from langspec.report import write_report
    from store.db import connect_read_only

    try:
        with connect_read_only(store) as con:
            page = write_report(con, out_dir or store / "report", run_id, k, point)
    except ERROR_ROOTS as error:
        _fail(error)
    out.print(escape(f"report: {page}"))


def _run_sql(store: Path, format: str, run) -> None:
    """Open the store read-only (the parameterless analyses as views), run, print."""
    import duckdb

    from store.db import connect_read_only
    from store.queries import register_views

    try:
        with connect_read_only(store) as con:
            register_views(con)
            result = run(con)
            table = result.to_arrow_table() if result is not None else None
    except ERROR_ROOTS as error:
        _fail(error)
    except duckdb.Error as error:
        from store.db import damaged_database, is_damage

        if is_damage(error):
            _fail(damaged_database(store, error))
        hint = " (the store is read-only here: queries cannot change it)" if "read-only" in str(error) else ""
        _fail(QueryError(f"query failed: {error}{hint}"))
    if table is not None:
        print_table(table, format)


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
    rows = table.to_pylist()
    if format == "json":
        print(json.dumps(rows, default=str, indent=1))
    elif format == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=table.column_names)
        writer.writeheader()
        writer.writerows(rows)
    elif format == "table":
        view = Table(*table.column_names)
        for row in rows:
            view.add_row(*[_cell(v) for v in row.values()])
        out.print(view)
        out.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim")
    else:
        _fail(UsageError(f"--format must be table, csv or json, not {format!r}"))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "NULL" if value is None else escape(str(value))


@app.command()
def status(store: StoreOpt = DEFAULT_STORE, runs: Annotated[int, typer.Option(help="How many recent runs.")] = 5) -> None:
    """The last runs in the store and what happened to their tasks."""
    from store.db import connect_read_only

    try:
        with connect_read_only(store) as con:
            recent = con.sql(
                "SELECT run_id, spec_name, status, started_at, finished_at FROM runs ORDER BY run_id DESC LIMIT $n",
                params={"n": runs},
            ).to_arrow_table()
            print_table(recent, "table")
            if recent.num_rows:
                last = recent.column("run_id")[0].as_py()
                tasks = con.sql(
                    "SELECT name, outcome, round(seconds, 1) AS seconds, device, left(task_key, 12) AS key, "
                    "split_part(error, chr(10), 1) AS error FROM tasks WHERE run_id = $run ORDER BY started_at NULLS FIRST, name",
                    params={"run": last},
                ).to_arrow_table()
                out.print(f"tasks of run {last}:")
                print_table(tasks, "table")
    except ERROR_ROOTS as error:
        _fail(error)


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
        out.print(escape(f"{store}: every task directory matches its manifest and the database"))
        return
    for problem in problems:
        action = f" -> {problem.repair}" if repair else ""
        out.print(escape(f"{problem.kind}: {problem.what}: {problem.detail}{action}"), highlight=False, soft_wrap=True)
    if repair:
        out.print(escape(f"{len(problems)} problem(s) repaired; `langspec run SPEC --store {store}` computes what was set aside"), soft_wrap=True)
    else:
        out.print(escape(f"{len(problems)} problem(s); `langspec verify --repair --store {store}` repairs them"), soft_wrap=True)
    raise typer.Exit(1)
