"""The same store prints the same bytes (an analysis run again, DuckDB summing in parallel), a table
fits an 80-column terminal by cutting cells with `…` (a pipe gets every cell whole), and a re-run says
which run it is."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import duckdb
import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from langspec.cli import app
from store.migrations import schema_sql

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
TASKS = 1_000_000  # eight of DuckDB's row groups (122,880 rows): its threads share the sum


@pytest.fixture(scope="module")
def summed_store(tmp_path_factory) -> Path:
    """A store whose run has TASKS tasks, each with one test accuracy: final_accuracy averages them all."""
    store = tmp_path_factory.mktemp("summed") / "results"
    store.mkdir()
    with duckdb.connect(str(store / "langspec.duckdb")) as con:
        con.execute(schema_sql())
        con.execute("INSERT INTO runs (run_id, spec_name, status) VALUES (1, 'summed', 'completed')")
        con.execute(f"INSERT INTO points SELECT 1, '', 'task-' || i FROM range({TASKS}) AS r(i)")
        con.execute("INSERT INTO metrics SELECT 'task-' || i, i, 'full', 'ka', 'test', 'accuracy', (i % 97) / 97, 4 "
                    f"FROM range({TASKS}) AS r(i)")
    return store


@pytest.mark.parametrize("format", ["csv", "json"])
def test_an_analysis_prints_the_same_bytes_every_time(summed_store, format):
    if duckdb.connect().sql("SELECT current_setting('threads')").fetchall()[0][0] < 2:
        pytest.skip("DuckDB runs one thread on this machine: its sums come in one order anyway")
    printed = set()
    for _ in range(5):  # before langspec rounded, 1,000,000 rows printed 7 or 8 different sums in 8 runs (2 threads)
        result = runner.invoke(app, ["analyze", "final_accuracy", "--param", "split=test", "--store", str(summed_store),
                                     "--format", format])
        assert result.exit_code == 0, result.output
        printed.add(result.stdout)
    assert len(printed) == 1, printed
    expected = sum(i % 97 for i in range(TASKS)) / 97 / TASKS
    value = json.loads(printed.pop())[0]["accuracy"] if format == "json" else float(printed.pop().splitlines()[1].split(",")[2])
    assert value == pytest.approx(expected, rel=1e-9)  # 10 significant digits of the true mean


def terminal_lines(*args: str, columns: int = 80) -> list[str]:
    """What `langspec ARGS` shows on a terminal `columns` wide, colours taken out."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT), "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "langspec", *args], stdout=follower, stderr=follower, env=env, cwd=ROOT)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.wait(timeout=120) == 0, shown.decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode()).replace("\r", "").splitlines()


def piped(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "langspec", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def first_cells(lines: list[str]) -> list[str]:
    """The first cell of each body row of the tables in `lines`."""
    return [line.split("│")[1].strip() for line in lines if line.startswith("│")]


def whole_or_cut(shown: str, whole: set[str]) -> bool:
    return shown in whole or (shown.endswith("…") and any(name.startswith(shown[:-1]) for name in whole))


def test_status_fits_80_columns_cutting_a_name_never_wrapping_it(everyday_study):
    store = str(everyday_study["store"])
    # the store is the session's: another test may have run it again, so its last run is any number
    names = first_cells(re.split(r"tasks of run \d+:", piped("status", "--store", store))[1].splitlines())
    assert "tracin[seed=0,variant=subnetwork]" in names and "…" not in "".join(names)  # piped: whole, one row a line
    shown = terminal_lines("status", "--store", store)
    assert max(cell_len(line) for line in shown) <= 80
    cells = first_cells(shown[next(i for i, line in enumerate(shown) if line.startswith("tasks of run")):])
    assert len(cells) == len(names) and all(whole_or_cut(cell, set(names)) for cell in cells), cells
    assert any(cell.endswith("…") for cell in cells)  # the longest name is cut


def test_an_analysis_fits_80_columns_cutting_its_headers_never_wrapping_them(everyday_study):
    args = ("analyze", "specialization", "--store", str(everyday_study["store"]))
    columns = set(piped(*args, "--format", "csv").splitlines()[0].split(","))
    shown = terminal_lines(*args)
    assert max(cell_len(line) for line in shown) <= 80
    headers = [line for line in shown if line.startswith("┃")]
    assert len(headers) == 1  # one line: no header wrapped onto a second
    cells = [cell.strip() for cell in headers[0].strip("┃").split("┃")]
    assert all(whole_or_cut(cell, columns) for cell in cells) and any(cell.endswith("…") for cell in cells), cells
    assert "…" not in piped(*args)  # a pipe: every header and value whole


def test_a_rerun_says_it_is_a_new_run_that_the_analyses_then_read(small_spec, tmp_path):
    store = tmp_path / "results"
    for run in (1, 2):
        result = runner.invoke(app, ["run", str(small_spec), "--store", str(store), "--executor", "local"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    assert "run 2 completed: 2 cached" in result.output
    said = [line for line in result.output.splitlines() if line.startswith("this is run 2:")]
    assert len(said) == 1 and "analyze, report and last_run() read the latest completed one" in said[0]


def test_every_analysis_prints_the_same_bytes_from_a_store_holding_its_rows_in_another_order(everyday_study, tmp_path):
    """The same rows stored in reverse order: a fully ordered analysis with stable sums and ties
    prints the same bytes (similarity_vs_influence broke its Spearman ties by the shares' last bits)."""
    import shutil

    from store.queries import named_queries

    reversed_store = tmp_path / "results"
    reversed_store.mkdir()
    shutil.copy(everyday_study["store"] / "langspec.duckdb", reversed_store)
    with duckdb.connect(str(reversed_store / "langspec.duckdb")) as con:
        for (table,) in con.sql("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall():
            con.execute(f'CREATE TEMP TABLE stored AS SELECT * FROM "{table}" ORDER BY rowid DESC')
            con.execute(f'DELETE FROM "{table}"')
            con.execute(f'INSERT INTO "{table}" SELECT * FROM stored')
            con.execute("DROP TABLE stored")
    given = {"subnetwork_grid": ["--param", "language=ka"], "final_accuracy": ["--param", "split=test"]}
    for name in named_queries():
        printed = [runner.invoke(app, ["analyze", name, *given.get(name, []), "--store", str(store), "--format", "csv"]).stdout
                   for store in (everyday_study["store"], reversed_store)]
        assert printed[0] == printed[1], name
