"""Named SQL: each `store/sql/*.sql` file holds one query, a `-- name:` line and a one-line doc.

Parameters are DuckDB's `$name` placeholders, bound by value: no SQL is ever assembled from input."""

from __future__ import annotations

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
