"""A killed driver as a real crash leaves it: `kill -9` of the driver's whole process group, while
the Ray workers, which have process groups of their own, live on. They must never commit, must
stop within seconds, and the next run must end with the store a clean run makes.

The kill storm's rounds and seed come from LANGSPEC_KILL_ROUNDS (default 3) and LANGSPEC_KILL_SEED
(default: the clock); the seed is printed, so a failing round can be replayed."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from contents import duplicate_rows, store_contents
from langspec.compile import compile_spec
from langspec.execute import ORPHANED_EXIT, _call, execute, run_task
from langspec.load import load_spec
from store import artifacts

SPEC = """\
    name: orphans
    data: {source: toy, languages: [ka, la], train_per_language: 120, validation_per_language: 60, test_per_language: 20}
    model: {tiny: {layers: 2, heads: 2, hidden: 16, intermediate: 32, vocab_size: 200}}
    seeds: [0]
    finetune: {epochs: 3, lr: 1.0e-3, batch_size: 16, max_length: 32}
    prune: {enabled: true, threshold: 0.9, batch_size: 8}
    sparse_finetune: {enabled: true}
    tracin: {enabled: true, variants: [full, subnetwork], train_per_language: 30, test_per_language: 4}
    analysis: {top_k: 5}
    resources: {default: {num_cpus: 1}}
"""


def wait_for(condition, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


SUBREAPER = Path(__file__).with_name("subreaper.py")


def descendants(pid: int) -> set[int]:
    """Every process below pid, from /proc (Ray's workers are the raylet's children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def living(pids: set[int]) -> set[int]:
    return {pid for pid in pids if artifacts.pid_alive(pid)}


class Driver:
    """`langspec run` in a process group of its own, under a subreaper, as in a desktop terminal.

    Killing its group leaves Ray's workers alive and reparented to the subreaper, not to pid 1, so
    Ray's own check (a worker whose parent became pid 1 exits) does not save them."""

    def __init__(self, spec: Path, store: Path, log: Path):
        pidfile = log.with_suffix(".pid")
        command = [sys.executable, "-m", "langspec", "run", str(spec), "--store", str(store)]
        self.reaper = subprocess.Popen([sys.executable, str(SUBREAPER), str(pidfile), *command],
                                       stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(pidfile.is_file, what="the driver to start")
        self.pid = int(pidfile.read_text())

    def finished(self) -> bool:
        return self.reaper.poll() is not None

    def kill_group(self) -> set[int]:
        """SIGKILL the driver's process group; returns the processes that were below the driver."""
        below = descendants(self.pid)
        os.killpg(self.pid, signal.SIGKILL)
        wait_for(lambda: not artifacts.pid_alive(self.pid), what="the driver to die")
        return below

    def orphans(self) -> set[int]:
        return descendants(self.reaper.pid)


def clean_store(spec: Path, tmp_path: Path) -> dict:
    loaded = load_spec(spec)
    store = tmp_path / "clean"
    assert execute(compile_spec(loaded), loaded, store, executor="local").status == "completed"
    return store_contents(store)


def assert_sound(store: Path, clean: dict, driver: Driver) -> None:
    wait_for(lambda: not living(driver.orphans()), timeout=20, what=f"the orphans {sorted(living(driver.orphans()))} to stop")
    assert store_contents(store) == clean
    assert set(duplicate_rows(store).values()) == {0}
    assert list(artifacts.attempts_dir(store).iterdir()) == []


def test_an_orphan_still_writing_when_the_next_run_starts_never_commits(spec_file, tmp_path):
    spec = spec_file(SPEC)
    loaded = load_spec(spec)
    graph = compile_spec(loaded)
    prune_key = next(task.key for task in graph.tasks if task.name == "prune[seed=0,language=ka]")
    store = tmp_path / "store"
    driver = Driver(spec, store, tmp_path / "driver.log")
    # Freeze the worker the moment it has claimed an attempt at prune[ka], then kill the driver's group.
    attempts = artifacts.attempts_dir(store)
    wait_for(lambda: any(attempts.glob(f"{prune_key}.*/{artifacts.OWNER_FILE}")), what="prune[ka] to start")
    attempt = next(attempts.glob(f"{prune_key}.*"))
    orphan = json.loads((attempt / artifacts.OWNER_FILE).read_text())["pid"]
    os.kill(orphan, signal.SIGSTOP)
    below = driver.kill_group()
    assert orphan in below, (orphan, below)
    wait_for(lambda: orphan in driver.orphans(), timeout=10, what=f"{orphan} to be reparented to the subreaper")
    assert not artifacts.is_complete(store, prune_key)

    # The next run starts while the orphan is frozen mid-task; the orphan wakes up during it.
    outcome = {}

    def next_run():
        try:
            outcome["result"] = execute(graph, loaded, store, executor="local")
        except BaseException as err:  # shown by the test, not lost in the thread
            outcome["error"] = err

    runner = threading.Thread(target=next_run)
    old_token = json.loads((attempt / artifacts.OWNER_FILE).read_text())["token"]
    runner.start()
    try:
        wait_for(lambda: artifacts.fence_token(store) not in ("", old_token) or "error" in outcome, what="the next run's fence")
    finally:
        os.kill(orphan, signal.SIGCONT)
    runner.join(timeout=300)
    assert "error" not in outcome, outcome["error"]
    assert outcome["result"].status == "completed"

    manifest = artifacts.read_manifest(store, prune_key)
    assert manifest["token"] == artifacts.fence_token(store) and manifest["pid"] == os.getpid()  # the new run's work
    assert artifacts.check_complete(store, prune_key, ("subnetworks", "prune_steps", "metrics"), hashes=True) is None
    assert_sound(store, clean_store(spec, tmp_path), driver)


WORKER = """
import pickle, sys
from langspec.execute import run_task
call = pickle.load(open(sys.argv[1], "rb"))
print(run_task(call))
"""


def orphaned_worker(tmp_path: Path, spec: Path, driver_pid: int):
    """A worker process running a long fine-tuning for a run whose driver is driver_pid."""
    loaded = load_spec(spec, ["finetune.epochs=200"])
    graph = compile_spec(loaded)
    store = tmp_path / "store"
    data = next(task for task in graph.tasks if task.stage == "data")
    token = artifacts.new_token()
    artifacts.set_fence(store, token)
    assert run_task(_call(data, store, token))["ok"]
    finetune = next(task for task in graph.tasks if task.stage == "finetune")
    call = replace(_call(finetune, store, token), driver_pid=driver_pid)
    (tmp_path / "call.pkl").write_bytes(pickle.dumps(call))
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "call.pkl")], start_new_session=True)
    wait_for(lambda: artifacts.progress_path(store, finetune.key).is_file() or worker.poll() is not None, what="the worker")
    return worker, store, finetune.key


def test_a_worker_whose_driver_died_ends_itself_and_commits_nothing(spec_file, tmp_path):
    driver = subprocess.Popen(["sleep", "600"])
    worker, store, key = orphaned_worker(tmp_path, spec_file(SPEC), driver.pid)
    time.sleep(2)
    assert worker.poll() is None  # the driver lives: the worker works on
    driver.kill()
    driver.wait()
    assert worker.wait(timeout=15) == ORPHANED_EXIT
    assert not artifacts.task_dir(store, key).exists()


def test_a_worker_whose_run_lost_the_store_ends_itself_and_commits_nothing(spec_file, tmp_path):
    worker, store, key = orphaned_worker(tmp_path, spec_file(SPEC), os.getpid())
    time.sleep(2)
    assert worker.poll() is None
    artifacts.set_fence(store, artifacts.new_token())  # another run took the store
    assert worker.wait(timeout=15) == ORPHANED_EXIT
    assert not artifacts.task_dir(store, key).exists()


def test_kill_storm(spec_file, tmp_path):
    rounds = int(os.environ.get("LANGSPEC_KILL_ROUNDS", "3"))
    seed = int(os.environ.get("LANGSPEC_KILL_SEED", time.time_ns() % 1_000_000))
    print(f"kill storm: {rounds} rounds, LANGSPEC_KILL_SEED={seed}")
    rng = random.Random(seed)
    spec = spec_file(SPEC)
    started = time.monotonic()
    clean = clean_store(spec, tmp_path)
    span = 8.0 + 2 * (time.monotonic() - started)  # Ray's start plus the tasks, with room for a slow machine
    for round_ in range(rounds):
        store = tmp_path / f"round-{round_}"
        moment = rng.uniform(1.0, span)
        driver = Driver(spec, store, tmp_path / f"round-{round_}.log")
        time.sleep(moment)
        if not driver.finished():
            driver.kill_group()
        done = subprocess.run([sys.executable, "-m", "langspec", "run", str(spec), "--store", str(store)],
                              capture_output=True, text=True, timeout=600)
        context = f"round {round_} (seed {seed}, kill at {moment:.2f} s): {done.stdout[-2000:]}{done.stderr[-2000:]}"
        assert done.returncode == 0, context
        assert_sound(store, clean, driver)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_its_workers_and_the_next_run_resumes(spec_file, tmp_path, signum):
    spec = spec_file(SPEC)
    loaded = load_spec(spec)
    graph = compile_spec(loaded)
    finetune = next(task.key for task in graph.tasks if task.stage == "finetune")
    store = tmp_path / "store"
    driver = Driver(spec, store, tmp_path / "driver.log")
    wait_for(lambda: any(artifacts.attempts_dir(store).glob(f"{finetune}.*/{artifacts.RESUME_FILE}")), what="an epoch")
    os.kill(driver.pid, signum)
    wait_for(lambda: not artifacts.pid_alive(driver.pid), timeout=30, what="the driver to stop")
    wait_for(lambda: not living(driver.orphans()), timeout=20, what="the workers to stop")
    said = " ".join((tmp_path / "driver.log").read_text().split())
    assert "interrupted: the run is marked interrupted" in said
    with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as con:
        assert con.sql("SELECT status FROM runs").fetchall() == [("interrupted",)]

    result = execute(graph, loaded, store, executor="local")
    assert json.loads(result.records[finetune].summary)["resumed_from_epoch"] >= 1
    assert store_contents(store) == clean_store(spec, tmp_path)
