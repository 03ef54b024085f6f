"""Named SQL: each `store/sql/*.sql` file holds one query, a `-- name:` line and a one-line doc.

Parameters are DuckDB's `$name` placeholders, bound by value: no SQL is ever assembled from input."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

SQL_DIR = Path(__file__).with_name("sql")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    doc: str
    sql: str

    @property
    def params(self) -> list[str]:
        """The `$name` placeholders the query needs, sorted."""
        return sorted(set(re.findall(r"\$([A-Za-z_]\w*)", self.sql)))


@functools.cache  # the files ship with the package: read them once per process
def named_queries() -> dict[str, NamedQuery]:
    queries = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        lines = path.read_text().splitlines()
        name = lines[0].removeprefix("-- name:").strip()
        doc = lines[1].removeprefix("--").strip() if len(lines) > 1 and lines[1].startswith("--") else ""
        queries[name] = NamedQuery(name, doc, path.read_text())
    return queries


def run_named(con: duckdb.DuckDBPyConnection, name: str, **params) -> pa.Table:
    query = named_queries()[name]
    return con.sql(query.sql, params=params).to_arrow_table()


def register_views(con: duckdb.DuckDBPyConnection) -> None:
    """Make every named query without parameters a temporary view, so ad-hoc SQL can build on it
    (`PIVOT subnetwork_jaccard ON language_b ...`). Temporary views work on a read-only store."""
    for query in named_queries().values():
        if not query.params:
            con.sql(f"CREATE OR REPLACE TEMP VIEW {query.name} AS {query.sql.rstrip().removesuffix(';')}")


def defaults(con: duckdb.DuckDBPyConnection, query: NamedQuery) -> dict[str, object]:
    """Default values of the parameters a query takes: run_id is the last completed run, k its
    spec's analysis.top_k. Parameters without a default are left out (the caller must give them)."""
    wanted = set(query.params)
    if not wanted & {"run_id", "k"}:
        return {}
    last = con.sql(
        "SELECT run_id, CAST(spec -> 'analysis' ->> 'top_k' AS INTEGER) FROM runs "
        "WHERE status = 'completed' ORDER BY run_id DESC LIMIT 1"
    ).fetchall()
    if not last:
        return {}
    run_id, top_k = last[0]
    return {name: value for name, value in (("run_id", run_id), ("k", top_k)) if name in wanted and value is not None}
