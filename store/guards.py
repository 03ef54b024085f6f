"""What the writer checks before it trusts a store: its directory is the user's alone, each of the
schema's tables is a base table with the schema's columns, and its own connection reads files under
the store's tasks/ alone (store.db)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import duckdb

from store.connections import DB_FILE, first_row, quoted
from store.errors import StoreError
from store.migrations import SCHEMA_FILES


def keep_private(root: Path, notify) -> None:
    """The store directory is the user's own, and no one else's to enter: its lock, gate and task
    directories are opened by name, so another user who could write there could redirect them."""
    found = root.stat()
    if found.st_uid != os.getuid():
        raise StoreError(f"the store directory {root} belongs to another user (uid {found.st_uid}); a store must be its "
                         "user's own: choose a --store DIR of yours (a new one is made 0700)")
    if stat.S_IMODE(found.st_mode) & 0o077:
        root.chmod(0o700)
        notify(f"the store directory {root} was open to other users (mode {stat.S_IMODE(found.st_mode):o}); "
               "it is now 0700: a store holds the spec, the datasets' text and the results")


def reach_tasks_only(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """The writer reads files from the store's task directories alone: whatever SQL it runs (a macro or
    view a tampered database holds included) can read no other file and load no extension."""
    tasks = [str(root / "tasks") + "/", str((root / "tasks").resolve()) + "/"]
    con.execute("SET allowed_directories = $tasks", {"tasks": sorted(set(tasks))})
    for setting in ("enable_external_access", "autoinstall_known_extensions", "autoload_known_extensions"):
        con.execute(f"SET {setting} = false")
    con.execute("SET lock_configuration = true")


# The base tables of schema/tables.sql, by name: what the writer checks before it trusts a database.
CREATED_TABLES = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")


def check_tables(con: duckdb.DuckDBPyConnection, root: Path, database: Path) -> None:
    """Every table of the schema that the database has (the store `root`'s, in the directory
    `database`) is a base table with the schema's columns: `CREATE TABLE IF NOT EXISTS` accepts a view
    of that name, and a migration would read it."""
    file = database / DB_FILE
    expected = duckdb.connect()
    try:
        expected.execute(SCHEMA_FILES[0].read_text())
        for table in CREATED_TABLES.findall(SCHEMA_FILES[0].read_text()):
            kind = first_row(con, "SELECT table_type FROM information_schema.tables WHERE table_schema = 'main' AND table_name = $t", t=table)
            if kind is None:
                continue
            columns = columns_of(con, table)
            if kind[0] != "BASE TABLE" or columns != columns_of(expected, table):  # every version since 2 has the same columns
                raise StoreError(
                    f"the store {root} is not as langspec left it: `{table}` is {kind[0].lower()} with columns "
                    f"{', '.join(name for name, _ in columns) or 'none'}, where the schema has a base table; something other than "
                    f"langspec changed the database. Move it away (`mv {quoted(file)} {quoted(str(file) + '.suspect')}`) "
                    f"and `langspec verify --repair --store {quoted(root)}` rebuilds it from the task directories"
                )
    finally:
        expected.close()


def columns_of(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return con.sql("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'main' AND table_name = $t "
                   "ORDER BY ordinal_position", params={"t": table}).fetchall()
