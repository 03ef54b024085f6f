"""A reader of a store that a run is writing, in a process of its own: `python live_reader.py MODE STORE OUT STOP`.

Reads in a loop until the file STOP exists, and appends what it saw to OUT (JSON lines). MODE
`python`: what `langspec.connect` sees, per task (rows per table, and the run's task records);
`cli`: `langspec status`, `query` and `analyze` in turn, each command's exit code and output. Until
the run has begun (the store has run 1), a reader only waits; from then on every read is recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import langspec
from store.task_rows import TASK_TABLES

LANGSPEC = str(Path(sys.executable).with_name("langspec"))
COMMANDS = (
    ["status"],
    ["query", "SELECT task_key, count(*) AS n FROM influence GROUP BY 1", "--format", "json"],
    ["analyze", "in_language_share", "--param", "run_id=1", "--format", "json"],
)


def snapshot(store: str) -> dict:
    with langspec.connect(store) as con:
        counts = {}
        for table in TASK_TABLES:
            for key, n in con.sql(f"SELECT task_key, count(*) FROM {table} GROUP BY 1").fetchall():
                counts.setdefault(key, {})[table] = n
        return {
            "results": sorted(row[0] for row in con.sql("SELECT task_key FROM results").fetchall()),
            "counts": counts,
            "tasks": dict(con.sql("SELECT task_key, outcome FROM tasks WHERE run_id = 1").fetchall()),
        }


def begun(store: str) -> bool:
    try:
        with langspec.connect(store) as con:
            return bool(con.sql("SELECT 1 FROM runs WHERE run_id = 1").fetchall())
    except Exception:  # no store yet, or no schema yet
        return False


def main(mode: str, store: str, out: str, stop: str) -> None:
    while not begun(store):
        time.sleep(0.05)
    turn = 0
    with open(out, "a") as log:
        while not Path(stop).exists():
            if mode == "python":
                try:
                    seen = {"ok": True, **snapshot(store)}
                except Exception as err:
                    seen = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            else:  # a command starts a Python process: seconds of CPU on a small machine
                command = COMMANDS[turn % len(COMMANDS)]
                done = subprocess.run([LANGSPEC, *command, "--store", store], capture_output=True, text=True)
                seen = {"ok": done.returncode == 0, "command": command[0], "output": done.stdout + done.stderr}
                turn += 1
            log.write(json.dumps(seen) + "\n")
            log.flush()
            time.sleep(0.05)


if __name__ == "__main__":
    main(*sys.argv[1:])
