"""A lost node costs the checkpoint it was in, not the task. A two-node Ray cluster on this machine
whose worker node has a hostname of its own (a UTS namespace: to the store it is another host, so the
same-host pid check cannot see its processes die) runs a fine-tuning and then TracIn over its 3
checkpoints; once TracIn has finished a checkpoint on that node, the node's raylet and workers are
killed with SIGKILL. Ray retries the task on the head node, which takes over the dead attempt at once
because Ray has given up on it (instead of after the heartbeat has aged STALE_S), recomputes only the
checkpoints left, and its scores equal a clean run's bit for bit. (The same takeover serves a
fine-tuning's epochs; tests/reliability/test_kill.py kills those on one host.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from langspec.compile import compile_spec
from langspec.execute import execute
from langspec.load import load_spec
from store.artifacts import OWNER_FILE, RESUME_FILE, attempts_dir, is_complete, read_manifest
from store.attempts import STALE_S
from tests.reliability.test_cluster import start_cluster, stop_cluster
from waiting import wait_for

# Another slot of the port range than the other cluster tests' in the same process.
BASE = 20000 + (os.getpid() + 60) % 250 * 50
LOST_HOST = "langspec-lost-node"

SPEC = """\
    name: lost-node
    data: {source: toy, languages: [ka, la], train_per_language: 300, validation_per_language: 20, test_per_language: 20}
    model: {tiny: {layers: 2, heads: 2, hidden: 32, intermediate: 64, vocab_size: 300}}
    seeds: [0]
    finetune: {epochs: 3, lr: 1.0e-3, batch_size: 16, max_length: 32}
    prune: {enabled: false}
    sparse_finetune: {enabled: false}
    tracin: {enabled: true, variants: [full], train_per_language: 300, test_per_language: 10}
    analysis: {top_k: 5}
    resources: {default: {num_cpus: 1}}
"""

# Holds the head node's CPU until the file argv[3] exists, so that the run's tasks start on the other node.
HOLD = """
import os, sys, time, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[1], log_to_driver=False)
head = ray.get_runtime_context().get_node_id()
@ray.remote(num_cpus=1)
def hold(path, release):
    open(path, "w").close()
    deadline = time.monotonic() + 90
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)
ray.get(hold.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote(sys.argv[2], sys.argv[3]))
"""


@pytest.fixture
def renamed_cluster():
    if subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs UTS namespaces (unshare --uts) to give the worker node a hostname of its own")
    tmp = Path(f"/tmp/lsn-{os.getpid()}")  # short: Ray's unix socket paths have a length limit
    tmp.mkdir(exist_ok=True)
    rename = ("unshare", "--uts", "--", "sh", "-c", f'hostname {LOST_HOST} && exec "$@"', "sh")
    address, nodes = start_cluster(tmp, BASE, worker={"prefix": rename})
    try:
        yield address, tmp, nodes[1]
    finally:
        kill_node(nodes[1])
        stop_cluster(nodes[:1])
        shutil.rmtree(tmp, ignore_errors=True)


def node_processes(root: int) -> set[int]:
    """The processes of the node that `ray start` (pid root) began: its descendants and its session's."""
    parents, sessions = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)], sessions[int(entry)] = int(fields[1]), int(fields[3])
    found, todo = {pid for pid, session in sessions.items() if session == root}, [root]
    while todo:
        parent = todo.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        todo.extend(children)
    return found & parents.keys()


def kill_node(process: subprocess.Popen) -> set[int]:
    """SIGKILL every process of a node, by pid, until none is left; returns the pids killed."""
    killed = set()
    while fresh := node_processes(process.pid) - killed:  # again, for any started while we killed
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed |= fresh
        time.sleep(0.05)
    process.wait()  # `ray start` itself, the one process of the node that is our child
    return killed


def owner_on(store: Path, key: str, host: str) -> dict | None:
    """The owner record of an attempt at task `key` running on `host` that holds resumable state (a
    finished checkpoint)."""
    for attempt in attempts_dir(store).glob(f"{key}.*"):
        try:
            owner = json.loads((attempt / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if owner.get("host") == host and (attempt / RESUME_FILE).is_file():
            return owner
    return None


def test_a_lost_node_costs_a_checkpoint_not_the_tracin_task(renamed_cluster, tmp_path):
    address, tmp, lost = renamed_cluster
    spec, store, log = tmp_path / "spec.yaml", tmp_path / "store", tmp_path / "run.log"
    spec.write_text(textwrap.dedent(SPEC))
    graph = compile_spec(load_spec(spec))
    key = next(task.key for task in graph.tasks if task.stage == "tracin")

    held, release = tmp_path / "held", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, address, str(held), str(release)],
                              stdout=open(tmp_path / "holder.log", "w"), stderr=subprocess.STDOUT)
    wait_for(lambda: held.exists() or holder.poll() is not None, what="the head node's CPU held")
    assert holder.poll() is None, (tmp_path / "holder.log").read_text()
    run = subprocess.Popen([sys.executable, "-m", "langspec", "run", str(spec), "--store", str(store), "--address", address],
                           stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: owner_on(store, key, LOST_HOST) is not None or run.poll() is not None,
                 what="a TracIn checkpoint on the other node")
        assert run.poll() is None, log.read_text()
        owner = owner_on(store, key, LOST_HOST)
        release.touch()  # the head node's CPU is free for the retry
        lost_at = datetime.now()
        killed = kill_node(lost)
        assert owner["pid"] in killed
        assert not is_complete(store, key), "TracIn ended before its node was lost"
        run.wait(timeout=240)
    finally:
        release.touch()
        if run.poll() is None:
            run.kill()
        holder.wait(timeout=60)
    said = log.read_text()
    assert run.returncode == 0, said

    tracin = read_manifest(store, key)
    assert tracin["host"] == socket.gethostname()  # the retry ran on the surviving node
    summary = tracin["summary"]
    assert summary["checkpoints"] == 3 and 1 <= summary["resumed_checkpoints"] < 3, summary
    # It took over at once: a dead node's heartbeat would have had to age STALE_S before.
    waited = (datetime.fromisoformat(tracin["started_at"]) - lost_at).total_seconds()
    assert waited < STALE_S, waited
    assert not list(attempts_dir(store).iterdir()) and not (store / "tasks" / key / RESUME_FILE).exists()

    clean = tmp_path / "clean"
    execute(graph, load_spec(spec), clean, executor="local")
    with duckdb.connect(str(store / "langspec.duckdb"), read_only=True) as resumed, \
            duckdb.connect(str(clean / "langspec.duckdb"), read_only=True) as fresh:
        for table in ("influence", "gradient_norms"):  # the same task keys in both stores
            query = f"SELECT * FROM {table} ORDER BY ALL"
            assert resumed.sql(query).fetchall() == fresh.sql(query).fetchall(), table
        assert resumed.sql("SELECT count(DISTINCT checkpoint) FROM influence").fetchall() == [(3,)]
    print(f"the retry started {waited:.1f} s after the node was lost and took over "
          f"{summary['resumed_checkpoints']} of 3 checkpoints")
