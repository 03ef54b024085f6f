"""What the `langspec` command loads before it answers: importing it loads nothing heavy (torch, Ray,
pyarrow, the spec's pydantic models), and `status` reads its rows without Arrow. Each command runs
in a fresh process, as a user starts it; how fast they answer is benchmarks/cli_startup.py's to say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from langspec.cli import app
from store.db import StoreWriter

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `python -m langspec` there runs this code
HEAVY = ("matplotlib", "numpy", "pyarrow", "pydantic", "ray", "torch", "transformers")
# pandas: loaded by pyarrow when it turns an Arrow table into Python rows, which `status` never does.
# (numpy and pyarrow it still loads, with store.db, whose store.influence imports them.)
NOT_IN_STATUS = ("matplotlib", "pandas", "ray", "torch", "transformers")


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def langspec(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`langspec ARGS` in a fresh process, and the modules it had loaded when it exited."""
    code = ("import atexit, json, sys; atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr)); "
            "from langspec.cli import app; app()")
    done = run_python(code, *args)
    return done, json.loads(done.stderr.splitlines()[-1])


def header(output: str, table: int) -> list[str]:
    """The column names of the `table`-th Rich table (from 0) in a command's output."""
    rows = [line for line in output.splitlines() if line.startswith("┃")]
    return [cell.strip() for cell in rows[table].strip("┃").split("┃")]


def test_importing_the_cli_loads_nothing_heavy():
    done = run_python(f"import langspec.cli, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_version_and_help_answer_without_the_heavy_modules():
    version, loaded = langspec("--version")
    assert version.returncode == 0, version.stderr
    assert [line.split()[0] for line in version.stdout.splitlines()] == ["langspec", "torch", "transformers", "ray", "duckdb"]
    assert sorted(set(HEAVY) & set(loaded)) == []

    helped, loaded = langspec("--help")
    assert helped.returncode == 0, helped.stderr
    commands = [command.name or command.callback.__name__ for command in app.registered_commands]
    assert len(commands) >= 10
    listed = {line.split()[1] for line in helped.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert set(commands) <= listed, f"--help does not list {set(commands) - listed}"
    assert sorted(set(HEAVY) & set(loaded)) == []


def test_status_of_an_empty_store_and_of_a_run_without_tasks(tmp_path):
    """The column names come from the queries even when there are no rows to take them from."""
    store = tmp_path / "store"
    with StoreWriter(store):
        pass
    empty, loaded = langspec("status", "--store", str(store))
    assert empty.returncode == 0, empty.stderr
    assert header(empty.stdout, 0) == ["run_id", "spec_name", "status", "started_at", "finished_at"]
    assert empty.stdout.rstrip().endswith("0 rows") and "tasks of run" not in empty.stdout
    assert sorted(set(NOT_IN_STATUS) & set(loaded)) == []

    with StoreWriter(store) as writer:
        run_id = writer.begin_run(spec_name="bare", spec_path="bare.yaml", spec_text="", overrides=[], spec_json="{}",
                                  spec_hash="h", git_commit=None, versions={}, host="elsewhere", executor="local")
        writer.finish_run(run_id, "completed")
    bare, loaded = langspec("status", "--store", str(store))
    assert bare.returncode == 0, bare.stderr
    runs = [line for line in bare.stdout.splitlines() if line.startswith("│")]
    assert len(runs) == 1 and [cell.strip() for cell in runs[0].strip("│").split("│")][:3] == ["1", "bare", "completed"]
    assert "tasks of run 1:" in bare.stdout
    assert header(bare.stdout, 1) == ["name", "outcome", "seconds", "device", "error"]  # no task, so no shortened key
    assert bare.stdout.rstrip().endswith("0 rows")
    assert sorted(set(NOT_IN_STATUS) & set(loaded)) == []
