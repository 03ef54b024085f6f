"""Named SQL: each `store/sql/*.sql` file holds one query, a `-- name:` line, a one-line doc and, for an
analysis of one run, a `-- needs:` line naming the stages (or `planted`) whose tasks it reads.

Parameters are DuckDB's `$name` placeholders, bound by value: no SQL is ever assembled from input."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from store.errors import QueryError

if TYPE_CHECKING:  # in annotations only: reading the named queries loads neither DuckDB nor pyarrow
    import duckdb
    import pyarrow as pa

SQL_DIR = Path(__file__).with_name("sql")
# The TracIn variants in the study's order (the model, its subnetworks, SFT): the order of the
# variant_position() macro of schema/macros.sql, which tests/store/test_queries.py checks against this.
VARIANTS = ("full", "subnetwork", "sft")
INTERNAL_DIR = SQL_DIR / "internal"  # not analyses: the queries behind defaults, points and the report


@dataclass(frozen=True)
class NamedQuery:
    name: str
    doc: str
    sql: str
    needs: tuple[str, ...] = ()  # stages (or "planted") without whose tasks in the run it has no rows

    @property
    def params(self) -> list[str]:
        """The `$name` placeholders the query needs, sorted."""
        return sorted(set(re.findall(r"\$([A-Za-z_]\w*)", self.sql)))


@functools.cache  # the files ship with the package: read them once per process
def named_queries(directory: Path = SQL_DIR) -> dict[str, NamedQuery]:
    """The analyses (store/sql/*.sql), or with `INTERNAL_DIR` the queries langspec itself runs."""
    queries = {}
    for path in sorted(directory.glob("*.sql")):
        lines = path.read_text().splitlines()
        name = lines[0].removeprefix("-- name:").strip()
        doc = lines[1].removeprefix("--").strip() if len(lines) > 1 and lines[1].startswith("--") else ""
        needs = lines[2].removeprefix("-- needs:") if len(lines) > 2 and lines[2].startswith("-- needs:") else ""
        queries[name] = NamedQuery(name, doc, path.read_text(), tuple(n.strip() for n in needs.split(",") if n.strip()))
    return queries


def internal(con: duckdb.DuckDBPyConnection, name: str, **params) -> list[tuple]:
    """The rows of one of langspec's own queries (store/sql/internal/NAME.sql)."""
    return con.sql(named_queries(INTERNAL_DIR)[name].sql, params=params or None).fetchall()


def internal_table(con: duckdb.DuckDBPyConnection, name: str, **params) -> pa.Table:
    """One of langspec's own queries as an Arrow table (large results: no Python tuples)."""
    return con.sql(named_queries(INTERNAL_DIR)[name].sql, params=params or None).to_arrow_table()


def internal_rows(con: duckdb.DuckDBPyConnection, name: str, **params) -> list[dict]:
    """internal(), each row a dict by column name."""
    return internal_table(con, name, **params).to_pylist()


def internal_columns_rows(con: duckdb.DuckDBPyConnection, name: str, **params) -> tuple[list[str], list[dict]]:
    """internal_rows() and the column names (an empty result keeps them), fetched as Python values
    rather than through Arrow, whose conversion to Python rows loads pandas: a quarter of a second
    for `langspec status`."""
    result = con.sql(named_queries(INTERNAL_DIR)[name].sql, params=params or None)
    return result.columns, [dict(zip(result.columns, row)) for row in result.fetchall()]


def run_named(con: duckdb.DuckDBPyConnection, name: str, **params) -> pa.Table:
    query = named_queries()[name]
    return con.sql(query.sql, params=params).to_arrow_table()


def k_fits(k: object, scored: int | None) -> bool:
    """The rule for k, the proponents (and opponents) per test example, written once: a whole number,
    at least 1 (k = 0 has no proponents) and below the number of training examples TracIn scored (with
    k >= that, every training example is a proponent of every test example). `scored` None: unknown."""
    return isinstance(k, int) and not isinstance(k, bool) and k >= 1 and (scored is None or k < scored)


# What makes a run have a stage's tasks (or planted modules): said when an analysis finds none.
SWITCHES = {
    "finetune": "every run fine-tunes: did it fail? (langspec status)",
    "ablation": "ablation.enabled is false",
    "prune": "prune.enabled is false",
    "mask_transfer": "it runs with prune, and prune.enabled is false",
    "head_effects": "head_effects.enabled is false",
    "sparse_finetune": "sparse_finetune.enabled is false",
    "tracin": "tracin.enabled is false",
    "planted": "its spec has no `planted:` section",
}


def why_empty(con: duckdb.DuckDBPyConnection, query: NamedQuery, params: dict[str, object]) -> str | None:
    """Why `query` gave no rows for these params, when the run lacks what it `needs`; else None."""
    if "run_id" not in params or not query.needs:
        return None
    present = {row[0] for row in internal(con, "run_stages", run_id=params["run_id"], point=params.get("point"))}
    missing = [need for need in query.needs if need not in present]
    if not missing:
        return None
    where = f"run {params['run_id']}" + (f" (point {params['point']})" if params.get("point") else "")
    said = "; ".join(f"no {'planted modules' if m == 'planted' else m + ' tasks'}: {SWITCHES[m]}" for m in missing)
    return f"no rows: {where} has {said}"


def register_views(con: duckdb.DuckDBPyConnection) -> None:
    """Make every analysis that takes only a run (run_id, and point where it reads one) a temporary view
    of the last completed run, so ad-hoc SQL can build on it (`PIVOT subnetwork_jaccard ON language_b
    ...`). A view takes no parameters: the run's id and its one sweep point, the store's own values, are
    written into its SQL as literals (bind_sql quotes them). A run with several sweep points gives no
    view of what reads a point, and a name the store has (the table mask_transfer) stays the store's.
    Temporary views work on a read-only store."""
    run_id = internal(con, "last_completed_run")[0][0]
    if run_id is None:
        return
    points = run_points(con, run_id)
    values = {"run_id": run_id, **({"point": points[0]} if len(points) == 1 else {})}
    taken = {row[0] for row in internal(con, "store_relation_names")}
    for query in named_queries().values():
        if query.params and set(query.params) <= set(values) and query.name not in taken:
            con.sql(f"CREATE OR REPLACE TEMP VIEW {query.name} AS {bind_sql(query.sql, values).rstrip().removesuffix(';')}")


def defaults(con: duckdb.DuckDBPyConnection, query: NamedQuery, given: dict[str, object] | None = None) -> dict[str, object]:
    """Default values of the parameters a query takes, given those the user set: run_id is the last
    completed run, k the run's analysis.top_k, point the run's sweep point when it has only one.
    Parameters without a default are left out (the caller must give them)."""
    given = given or {}
    wanted = set(query.params) - set(given)
    if not wanted & {"run_id", "k", "point"}:
        return {}
    run_id = given.get("run_id")
    if run_id is None:
        run_id = internal(con, "last_completed_run")[0][0]
        if run_id is None:
            return {}
    top_k = internal(con, "run_top_k", run_id=run_id)
    points = run_points(con, run_id)
    values = {"run_id": run_id, "k": top_k[0][0] if top_k else None, "point": points[0] if len(points) == 1 else None}
    return {name: value for name, value in values.items() if name in wanted and value is not None}


def run_points(con: duckdb.DuckDBPyConnection, run_id: object) -> list[str]:
    """The sweep points of a run, in label order ([""] for a run without a sweep)."""
    return [row[0] for row in internal(con, "run_points", run_id=run_id)]


def resolve(con: duckdb.DuckDBPyConnection, query: NamedQuery, given: dict[str, object] | None = None,
            point_option: str = "--param point=", asker: str | None = None) -> dict[str, object]:
    """The values of every parameter of `query`: those given, else their defaults. A missing one, or
    a point the run does not have, is a QueryError that says what to pass (a point as `point_option`
    spells it: `analyze` takes --param point=..., `report` and `export` --point ...; `asker` names who
    needs it, the analysis by default)."""
    given = given or {}
    params = {**defaults(con, query, given), **given}
    if "run_id" in query.params and "run_id" not in params:
        where = store_option(con)
        raise QueryError(f"the store has no completed run: run `langspec run SPEC{where}` first, or name a run "
                         f"(`langspec status{where}` lists them)")
    if "run_id" in given and not internal(con, "run_exists", run_id=given["run_id"]):
        raise QueryError(f"the store has no run {given['run_id']!r} (`langspec status` lists the runs)")
    if "point" in query.params:
        points = run_points(con, params["run_id"])
        if not points:
            raise QueryError(
                f"run {params['run_id']} recorded no sweep points: it swept settings before langspec recorded which tasks "
                "form each point; run its spec again (its tasks are cached) and analyze the new run"
            )
        choices = "; its points: " + ", ".join(repr(point) for point in points)
        if "point" in given and given["point"] not in points:
            raise QueryError(f"run {params['run_id']} has no sweep point {given['point']!r}{choices}")
        if "point" not in params:
            raise QueryError(f"{asker or f'the analysis {query.name}'} needs {point_option}... (run {params['run_id']} swept several settings{choices})")
    missing = [p for p in query.params if p not in params]
    if missing:
        raise QueryError(f"the analysis {query.name} needs " + " ".join(f"--param {p}=..." for p in missing))
    return {p: params[p] for p in query.params}


def store_option(con: duckdb.DuckDBPyConnection) -> str:
    """` --store DIR` for a pasted hint, DIR the directory of the database `con` reads ("" for the default
    store, results, and for a database in memory)."""
    from store.connections import quoted  # DuckDB is loaded already: `con` is a connection

    found = con.sql("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    if not found or not found[0][0]:
        return ""
    root = Path(found[0][0]).parent
    return "" if root == Path("results") else f" --store {quoted(root)}"


# Parameters whose values the store lists (store/sql/internal/param_values_NAME.sql): a value it
# lacks would give zero rows, not an error.
CHECKED_PARAMS = ("split", "language")


def check_param_values(con, given: dict[str, object]) -> None:
    for name in CHECKED_PARAMS:
        if name in given:
            allowed = [row[0] for row in internal(con, f"param_values_{name}")]
            if given[name] not in allowed:
                raise QueryError(f"--param {name}={given[name]}: the store has no {name} {given[name]!r}; it has {', '.join(map(str, allowed))}")


def check_k(con, run_id: object, k: object) -> None:
    """A QueryError unless k fits the run (k_fits)."""
    scored = internal(con, "run_scored_training_examples", run_id=run_id)[0][0]
    upper = f" and below {scored}, the training examples run {run_id}'s TracIn scored" if scored is not None else ""
    if not k_fits(k, scored):
        raise QueryError(f"k = {k!r}: k (proponents per test example) must be a whole number of at least 1{upper}; e.g. k=20")


def bind_sql(sql: str, params: dict[str, object]) -> str:
    """`sql` with each `$name` replaced by its value as an SQL literal: for reading and pasting
    into another client, and for register_views (a view takes no parameters; its values are the
    store's own); langspec runs every other query with its parameters bound by value."""
    return re.sub(r"\$([A-Za-z_]\w*)", lambda match: sql_literal(params[match[1]]), sql)


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


MAX_PARAM_CHARS = 1_000  # a language, a split, a k or a sweep point's label: a few words


def parse_params(pairs: list[str]) -> dict[str, object]:
    """--param name=value pairs; values are read as YAML scalars (0 is a number, ka a string, an
    empty value the empty string: --param point= is a run's one unswept point)."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise QueryError(f"--param {pair!r}: write it as name=value, e.g. --param language=ka")
        params[name.strip()] = _scalar(name.strip(), value) if value.strip() else ""
    return params


def _scalar(name: str, text: str) -> object:
    """The one YAML scalar `text` of --param `name`. It is read event by event before it is loaded:
    PyYAML's parser keeps its own stack where its composer recurses, so a list nested thousands of
    levels deep is refused before anything recurses."""
    import yaml

    fix = f"give one value, e.g. --param {name}=ka or --param {name}=20, and quote text that YAML reads otherwise"
    if len(text) > MAX_PARAM_CHARS:
        raise QueryError(f"--param {name}: the value has {len(text):,} characters, more than {MAX_PARAM_CHARS:,}; {fix}")
    shown = repr(text if len(text) <= 60 else f"{text[:60]}...")
    try:
        events = list(yaml.parse(text))
        if [type(event) for event in events[1:-1]] != [yaml.DocumentStartEvent, yaml.ScalarEvent, yaml.DocumentEndEvent]:
            raise QueryError(f"--param {name}: {shown} is not one value but a list, a mapping or several; {fix}")
        return yaml.safe_load(text)
    # YAML's own errors (a control character included), and what Python raises on a scalar its tag
    # cannot hold (!!int abc, 2001-13-45)
    except (yaml.YAMLError, ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise QueryError(f"--param {name}: cannot read {shown} ({problem}); {fix}") from None


def lookup(name: str) -> NamedQuery:
    """The analysis `name`, or a QueryError that lists them (and names the closest)."""
    queries = named_queries()
    if name not in queries:
        from difflib import get_close_matches

        close = get_close_matches(name, list(queries), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise QueryError(f"no analysis named {name!r}; {hint}the analyses: {', '.join(queries)}")
    return queries[name]


def check_names(query: NamedQuery, given: dict[str, object]) -> None:
    """A QueryError unless every given parameter is one of the analysis' own."""
    unknown = sorted(set(given) - set(query.params))
    if unknown:
        takes = f"takes --param {', '.join(query.params)}" if query.params else "takes no --param"
        raise QueryError(f"the analysis {query.name} {takes}, not {', '.join(unknown)}")


def bind(con: duckdb.DuckDBPyConnection, query: NamedQuery, given: dict[str, object]) -> dict[str, object]:
    """Every parameter of `query`: the given ones, checked against the store (a split or language it
    lacks, a k that does not fit the run), and the defaults `resolve` fills in."""
    check_names(query, given)
    check_param_values(con, given)
    params = resolve(con, query, given)
    if "k" in given:
        check_k(con, params["run_id"], params["k"])
    return params
