"""What a read-only query may run: each statement the user gives is classified by DuckDB's own parser,
and only the statements that read run. Connection settings alone cannot make a query read-only:
DuckDB still lets any connection write the database's own `.wal`, `.wal.recovery`,
`.wal.checkpoint` and `.tmp/`, and a `COPY ... TO '<db>.wal' (FORMAT blob)` there is replayed into
the store by the next open.

Read:     SELECT (with WITH, VALUES, FROM-first and the table macros), DESCRIBE, SHOW, SUMMARIZE,
          UNPIVOT; PIVOT (DuckDB parses it as MULTI: the pivot's own enum types, then a SELECT);
          EXPLAIN of any of these.
Refused:  everything else, by its statement type: COPY, ATTACH, DETACH, CALL, PRAGMA, SET, CREATE,
          INSERT, UPDATE, DELETE, EXPORT, LOAD, INSTALL, transactions, PREPARE and EXECUTE (a
          prepared statement hides its own), and EXPLAIN ANALYZE (it runs the statement it explains)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from store.errors import QueryError

if TYPE_CHECKING:
    import duckdb

WHY_REFUSED = {
    "EXPLAIN": "EXPLAIN ANALYZE runs the statement it explains; plain EXPLAIN of a SELECT is read",
    "PREPARE": "a prepared statement is run by EXECUTE, and either can hide a writing statement",
    "EXECUTE": "a prepared statement is run by EXECUTE, and either can hide a writing statement",
    "MULTI": "DuckDB runs a COPY or CREATE that holds a PIVOT in several parts",
}


def reading_statements(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """The statements of `sql` to run, each one that only reads, in order; a QueryError naming the first
    statement that would do anything else. A PIVOT comes back as the SELECT over it that was checked."""
    try:
        statements = con.extract_statements(sql)
    except Exception as err:  # duckdb.ParserException: the query's own syntax error, said as DuckDB says it
        raise QueryError(f"query failed: {err}") from None
    if not statements:
        raise QueryError("the query is empty: give one SELECT, e.g. langspec query \"SELECT * FROM runs\"")
    return [_reading(con, statement.query, _type(statement)) for statement in statements]


def _reading(con: duckdb.DuckDBPyConnection, text: str, kind: str) -> str:
    text = text.strip().rstrip(";").rstrip()
    if kind == "SELECT":
        return text
    if kind == "MULTI" and _is_query(con, text):
        # As a subquery the text can be a query alone: a PIVOT, never a COPY or a CREATE holding one.
        return f"SELECT * FROM (\n{text}\n)"
    if kind == "EXPLAIN":
        explained = _explained(text)
        if explained is not None:
            inner = con.extract_statements(explained)
            if len(inner) == 1 and _type(inner[0]) in ("SELECT", "MULTI"):
                return "EXPLAIN " + _reading(con, explained, _type(inner[0]))
    what = "a statement in several parts that is not a PIVOT" if kind == "MULTI" else f"a {kind} statement"
    raise QueryError(
        f"{what} is not run: queries are read-only ({WHY_REFUSED.get(kind, 'it would write or change settings')}); "
        f"they run SELECT, PIVOT, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN (docs/security.md). Refused: {_excerpt(text)}"
    )


def _is_query(con: duckdb.DuckDBPyConnection, text: str) -> bool:
    """Whether `text` parses as one query expression (what a FROM clause takes)."""
    try:
        wrapped = con.extract_statements(f"SELECT * FROM (\n{text}\n)")
    except Exception:  # a parser error: not a query expression
        return False
    return len(wrapped) == 1 and _type(wrapped[0]) in ("SELECT", "MULTI")


def _explained(text: str) -> str | None:
    """The statement after a plain EXPLAIN; None after EXPLAIN ANALYZE or EXPLAIN (options)."""
    import duckdb

    tokens = [(start, kind) for start, kind in duckdb.tokenize(text) if kind != duckdb.token_type.comment]
    if len(tokens) < 2 or text[tokens[0][0]:].split(None, 1)[0].upper() != "EXPLAIN":
        return None
    rest = text[tokens[1][0]:]
    first = rest.split(None, 1)[0].upper()
    return None if first.startswith(("ANALYZE", "ANALYSE", "(")) else rest


def _type(statement) -> str:
    return str(statement.type).rsplit(".", 1)[-1]


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 80 else flat[:77] + "..."
