"""A store read while a run writes it: `langspec status`, `query` and `analyze` and Python readers
in other processes, in a loop, during a real `langspec run`. No read fails, the run does not fail,
every reader sees whole tasks only, and the run's store equals one written without readers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from contents import store_contents
from live_reader import snapshot
from test_determinism import SPEC  # every stage, small
from langspec.compile import compile_spec
from langspec.execute import execute
from langspec.load import load_spec

READER = Path(__file__).with_name("live_reader.py")
MODES = ("python", "cli")


def test_a_store_is_read_while_a_run_writes_it(spec_file, tmp_path):
    spec = spec_file(SPEC)
    live, quiet = tmp_path / "live", tmp_path / "quiet"
    stop = tmp_path / "stop"
    readers = [subprocess.Popen([sys.executable, str(READER), mode, str(live), str(tmp_path / f"{mode}.jsonl"), str(stop)])
               for mode in MODES]
    try:
        run = subprocess.run([str(Path(sys.executable).with_name("langspec")), "run", str(spec), "--store", str(live),
                              "--executor", "local"], capture_output=True, text=True, timeout=600)
    finally:
        stop.touch()
        for reader in readers:
            reader.wait(timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert all(reader.returncode == 0 for reader in readers)

    loaded = load_spec(spec)
    assert execute(compile_spec(loaded), loaded, quiet, executor="local").status == "completed"
    assert store_contents(live) == store_contents(quiet)  # the readers changed nothing

    final = snapshot(str(live))
    seen = {mode: [json.loads(line) for line in (tmp_path / f"{mode}.jsonl").read_text().splitlines()] for mode in MODES}
    for mode, reads in seen.items():
        assert reads and all(read["ok"] for read in reads), (mode, [read for read in reads if not read["ok"]][:1])
    snapshots = seen["python"]
    for snap in snapshots:
        # Whole tasks only: a task in `results` has all its rows, a task not there has none, and a
        # task recorded as done by the run is in `results` (its record and rows are one transaction).
        assert {key: snap["counts"].get(key, {}) for key in snap["results"]} == {key: final["counts"].get(key, {}) for key in snap["results"]}
        assert set(snap["counts"]) <= set(snap["results"])
        assert {key for key, outcome in snap["tasks"].items() if outcome in ("ran", "cached")} <= set(snap["results"])
        assert set(snap["tasks"]) == set(final["tasks"])  # every task of the run is listed from its start
    assert len({len(snap["results"]) for snap in snapshots}) > 2, "the readers saw too little of the run to tell"
    commands = {read["command"] for read in seen["cli"]}
    assert commands == {"status", "query", "analyze"}, commands
    assert any("is running:" in read["output"] and "queued" in read["output"] for read in seen["cli"] if read["command"] == "status")
