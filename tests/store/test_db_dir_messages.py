"""A store whose database lives outside it (`langspec run --db-dir DIR`): what langspec says of a
tampered or damaged database names the file in DIR, and the store by its own directory."""

from __future__ import annotations

import os

import duckdb
import pytest

from langspec.verify import verify_store
from store.connections import DB_FILE, connect_read_only, damaged_database, quoted
from store.db import StoreWriter
from store.errors import StoreError


@pytest.fixture
def store(tmp_path):
    """(the store's directory, its database's directory) after a run with --db-dir."""
    shared, local = tmp_path / "shared", tmp_path / "local"
    StoreWriter(shared, db_dir=local).close()
    assert (local / DB_FILE).is_file() and not (shared / DB_FILE).exists()
    return shared, local


def said(error) -> str:
    return " ".join(str(error.value).split())


def test_a_view_in_place_of_a_table_names_the_database_where_it_is(store):
    shared, local = store
    con = duckdb.connect(str(local / DB_FILE))
    con.execute("ALTER TABLE tasks RENAME TO tasks_before")
    con.execute("CREATE VIEW tasks AS SELECT 1 AS run_id")
    con.close()
    with pytest.raises(StoreError, match="`tasks` is view") as refused:
        StoreWriter(shared)
    database = quoted(local / DB_FILE)
    assert f"(`mv {database} {quoted(str(local / DB_FILE) + '.suspect')}`)" in said(refused)
    assert f"`langspec verify --repair --store {quoted(shared)}`" in said(refused)


def test_a_damaged_database_names_its_file_and_its_store(store):
    shared, local = store
    os.truncate(local / DB_FILE, 100)
    for opening in (lambda: connect_read_only(shared), lambda: StoreWriter(shared)):  # a reader, then a run
        with pytest.raises(StoreError, match="is damaged") as refused:
            opening()
        assert said(refused).startswith(f"the database {local / DB_FILE} is damaged")
        assert f"`langspec verify --repair --store {quoted(shared)}`" in said(refused)


def test_damage_found_after_opening_names_the_file_the_store_records(store):
    """A truncated file may open and fail only on a later read: `run`, `query` and `verify` then name
    it from the store's directory alone."""
    shared, local = store
    error = damaged_database(shared, duckdb.IOException("Could not read enough bytes from file"))
    assert " ".join(str(error).split()).startswith(f"the database {local / DB_FILE} is damaged")
    assert f"--store {quoted(shared)}" in str(error)
    plain = damaged_database(local, duckdb.IOException("Could not read enough bytes"))  # a store with its database inside
    assert str(plain).startswith(f"the database {local / DB_FILE} is damaged")


def test_verify_names_the_damaged_database_where_the_store_keeps_it(store):
    shared, local = store
    os.truncate(local / DB_FILE, 100)
    problems = [problem for problem in verify_store(shared) if problem.kind == "damaged database"]
    assert [problem.what for problem in problems] == [str(local / DB_FILE)]
