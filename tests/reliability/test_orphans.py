"""A killed driver as a real crash leaves it: `kill -9` of the driver's whole process group, while
the Ray workers, which have process groups of their own, live on. They must never commit, must
stop within seconds, and the next run must end with the store a clean run makes.

The kill storm's rounds and seed come from LANGSPEC_KILL_ROUNDS (default 1) and LANGSPEC_KILL_SEED
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
from waiting import wait_for
from langspec.compile import compile_spec
from langspec.execute import execute, task_call
from langspec.worker import ORPHANED_EXIT, run_task
from langspec.load import load_spec
from store import artifacts
from store.attempts import pid_alive

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
    return {pid for pid in pids if pid_alive(pid)}


class Driver:
    """`langspec run` in a process group of its own, under a subreaper, as in a desktop terminal.

    Killing its group leaves Ray's workers alive and reparented to the subreaper, not to pid 1, so
    Ray's own check (a worker whose parent became pid 1 exits) does not save them."""

    def __init__(self, spec: Path, store: Path, log: Path):
        pidfile = log.with_suffix(".pid")
        command = [sys.executable, "-m", "langspec", "run", str(spec), "--store", str(store)]
        # Ctrl-C's SIGINT acts in a terminal's foreground process even where this suite runs as a
        # background job (`make test &`), whose children inherit SIGINT ignored.
        self.reaper = subprocess.Popen([sys.executable, str(SUBREAPER), str(pidfile), *command],
                                       stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_for(pidfile.is_file, what="the driver to start")
        self.pid = int(pidfile.read_text())

    def finished(self) -> bool:
        return self.reaper.poll() is not None

    def kill_group(self) -> set[int]:
        """SIGKILL the driver's process group; returns the processes that were below the driver."""
        below = descendants(self.pid)
        os.killpg(self.pid, signal.SIGKILL)
        # Reaped, not merely a zombie: a killed process's other threads may still hold its files
        # (the store's lock) for a moment after its main thread shows as a zombie.
        wait_for(lambda: not Path(f"/proc/{self.pid}").exists(), what="the driver to be reaped")
        return below

    def orphans(self) -> set[int]:
        return descendants(self.reaper.pid)


_CLEAN: dict[str, dict] = {}  # a spec's text -> the contents of its clean run, made once per session


def clean_store(spec: Path, tmp_path: Path) -> dict:
    """What a run of `spec` that nothing interrupted leaves in its store. Runs are deterministic (tested
    in test_determinism), so tests of the same spec share one clean run."""
    text = spec.read_text()
    if text not in _CLEAN:
        loaded = load_spec(spec)
        store = tmp_path / "clean"
        assert execute(compile_spec(loaded), loaded, store, executor="local").status == "completed"
        _CLEAN[text] = store_contents(store)
    return _CLEAN[text]


def assert_sound(store: Path, clean: dict, driver: Driver) -> None:
    wait_for(lambda: not living(driver.orphans()), timeout=20, what=f"the orphans {sorted(living(driver.orphans()))} to stop")
    assert store_contents(store) == clean
    assert set(duplicate_rows(store).values()) == {0}
    assert list(artifacts.attempts_dir(store).iterdir()) == []


def test_an_orphan_still_writing_when_the_next_run_starts_never_commits(spec_file, tmp_path):
    """The race of a real crash, made deterministic: a worker of a dead run, frozen mid-task, wakes
    up while the next run is running the same task. (Whether Ray itself kills such a worker when
    the driver's group dies depends on the process tree, so the orphan here is a plain process.)"""
    spec = spec_file(SPEC)
    loaded = load_spec(spec)
    graph = compile_spec(loaded)
    dead_driver = subprocess.Popen(["sleep", "600"])
    orphan, store, key = orphaned_worker(tmp_path, spec, dead_driver.pid, "prune[seed=0,language=ka]")
    os.kill(orphan.pid, signal.SIGSTOP)
    old_token = artifacts.fence_token(store)
    dead_driver.kill()
    dead_driver.wait()
    assert not artifacts.is_complete(store, key)

    outcome = {}

    def next_run():
        try:
            outcome["result"] = execute(graph, loaded, store, executor="local")
        except BaseException as err:  # shown by the test, not lost in the thread
            outcome["error"] = err

    runner = threading.Thread(target=next_run)
    runner.start()
    try:
        wait_for(lambda: artifacts.fence_token(store) != old_token or "error" in outcome, what="the next run's fence")
    finally:
        os.kill(orphan.pid, signal.SIGCONT)
    runner.join(timeout=300)
    assert "error" not in outcome, outcome["error"]
    assert outcome["result"].status == "completed"
    orphan.wait(timeout=30)
    said = (tmp_path / "worker.log").read_text()
    assert orphan.returncode == ORPHANED_EXIT or "belongs to another run now" in said, said  # it never finished as if alive

    manifest = artifacts.read_manifest(store, key)
    assert manifest["token"] == artifacts.fence_token(store) and manifest["pid"] == os.getpid()  # the new run's work
    assert artifacts.check_complete(store, key, ("subnetworks", "prune_steps", "metrics"), hashes=True) is None
    assert store_contents(store) == clean_store(spec, tmp_path)
    assert set(duplicate_rows(store).values()) == {0}
    assert list(artifacts.attempts_dir(store).iterdir()) == []


WORKER = """
import pickle, sys
from langspec.worker import run_task
call = pickle.load(open(sys.argv[1], "rb"))
print(run_task(call))
"""


def orphaned_worker(tmp_path: Path, spec: Path, driver_pid: int, name: str = "finetune[seed=0]", overrides=()):
    """A worker process running the task `name` (its inputs computed first) for a run whose
    driver is driver_pid; returns once the worker has claimed its attempt."""
    loaded = load_spec(spec, list(overrides))
    graph = compile_spec(loaded)
    store = tmp_path / "store"
    token = artifacts.new_token()
    artifacts.set_fence(store, token)
    target = next(task for task in graph.tasks if task.name == name)
    for task in graph.tasks[:graph.tasks.index(target)]:
        if any(key == task.key for _, key in target.inputs):
            assert run_task(task_call(task, store, token))["ok"]
    call = replace(task_call(target, store, token), driver_pid=driver_pid)
    (tmp_path / "call.pkl").write_bytes(pickle.dumps(call))
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "call.pkl")], start_new_session=True,
                              stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT)
    attempts = artifacts.attempts_dir(store)
    wait_for(lambda: any(attempts.glob(f"{target.key}.*/{artifacts.OWNER_FILE}")) or worker.poll() is not None, what="the worker")
    return worker, store, target.key


def test_a_worker_whose_driver_died_ends_itself_and_commits_nothing(spec_file, tmp_path):
    driver = subprocess.Popen(["sleep", "600"])
    worker, store, key = orphaned_worker(tmp_path, spec_file(SPEC), driver.pid, overrides=["finetune.epochs=200"])
    time.sleep(2)
    assert worker.poll() is None  # the driver lives: the worker works on
    driver.kill()
    driver.wait()
    assert worker.wait(timeout=15) == ORPHANED_EXIT
    assert not artifacts.task_dir(store, key).exists()


def test_a_worker_whose_run_lost_the_store_ends_itself_and_commits_nothing(spec_file, tmp_path):
    worker, store, key = orphaned_worker(tmp_path, spec_file(SPEC), os.getpid(), overrides=["finetune.epochs=200"])
    time.sleep(2)
    assert worker.poll() is None
    artifacts.set_fence(store, artifacts.new_token())  # another run took the store
    assert worker.wait(timeout=15) == ORPHANED_EXIT
    assert not artifacts.task_dir(store, key).exists()


def test_kill_storm(spec_file, tmp_path):
    rounds = int(os.environ.get("LANGSPEC_KILL_ROUNDS", "1"))  # one a suite run: the moment is new every time
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


# Fine-tuning long enough that it is still running when the signal lands: with SPEC's 3 epochs a quiet
# machine finished it between the first epoch and the stop, and the next run found it complete.
INTERRUPTED_SPEC = (SPEC.replace("epochs: 3", "epochs: 20")
                    .replace("sparse_finetune: {enabled: true}", "sparse_finetune: {enabled: false}")
                    .replace("tracin: {enabled: true", "tracin: {enabled: false"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_its_workers_and_the_next_run_resumes(spec_file, tmp_path, signum):
    spec = spec_file(INTERRUPTED_SPEC)
    loaded = load_spec(spec)
    graph = compile_spec(loaded)
    finetune = next(task.key for task in graph.tasks if task.stage == "finetune")
    store = tmp_path / "store"
    driver = Driver(spec, store, tmp_path / "driver.log")
    wait_for(lambda: any(artifacts.attempts_dir(store).glob(f"{finetune}.*/{artifacts.RESUME_FILE}")), what="an epoch")
    os.kill(driver.pid, signum)
    wait_for(lambda: not Path(f"/proc/{driver.pid}").exists(), timeout=30, what="the driver to stop")
    wait_for(lambda: not living(driver.orphans()), timeout=20, what="the workers to stop")
    said = " ".join((tmp_path / "driver.log").read_text().split())
    assert "interrupted: the run is marked interrupted" in said
    with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as con:
        assert con.sql("SELECT status FROM runs").fetchall() == [("interrupted",)]

    result = execute(graph, loaded, store, executor="local")
    assert json.loads(result.records[finetune].summary)["resumed_from_epoch"] >= 1
    assert store_contents(store) == clean_store(spec, tmp_path)
