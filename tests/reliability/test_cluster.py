"""A real two-node Ray cluster on this machine, 1 CPU per node, each node on its own ports and temp
dir and stopped by its process group (never by the command that stops every Ray process on the
machine): a task asking for more than any node has fails before anything runs, naming the stage,
the request and the largest node; a task that fits but finds no free node is reported while it
waits, then runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).with_name("ray"))
# Ports of our own, away from other runs on this machine: above Ray's default worker ports
# (10002-19999), below the usual ephemeral range (32768 and up).
BASE = 20000 + os.getpid() % 250 * 50

SPEC = """\
    name: cluster
    data: {{source: toy, languages: [ka, la], train_per_language: 20, validation_per_language: 5, test_per_language: 5}}
    model: {{tiny: {{layers: 1, heads: 2, hidden: 16, intermediate: 32, vocab_size: 100}}}}
    finetune: {{epochs: 1}}
    prune: {{enabled: false}}
    sparse_finetune: {{enabled: false}}
    tracin: {{enabled: false}}
    resources: {{default: {{num_cpus: {cpus}}}, queued_report_s: 2}}
"""

# Holds a CPU of each node until the file argv[3] exists (at most a minute and a half).
HOLD = """
import os, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
@ray.remote(num_cpus=1)
def hold(path, release):
    open(path, "w").close()
    deadline = time.monotonic() + 90
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.1)
ray.get([hold.remote(f"{sys.argv[2]}-{i}", sys.argv[3]) for i in range(2)])
"""


def node(tmp: Path, name: str, offset: int, head: bool, *, base: int = BASE, cpus: int = 1, cwd: Path | None = None,
         env: dict | None = None, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    """One node's `ray start`, in the foreground (--block): its session holds every process of the node.
    A node of its own may run from `cwd`, with `env` for its environment and `prefix` before the command
    (e.g. `unshare` for a view of the filesystem of its own)."""
    ports = [f"--node-manager-port={base + offset}", f"--object-manager-port={base + offset + 1}",
             f"--min-worker-port={base + offset + 10}", f"--max-worker-port={base + offset + 19}",
             f"--dashboard-agent-listen-port={base + offset + 3}", f"--metrics-export-port={base + offset + 4}",
             f"--runtime-env-agent-port={base + offset + 5}"]
    where = ["--head", f"--port={base + 30}", "--include-dashboard=false"] if head else [f"--address=127.0.0.1:{base + 30}"]
    command = [*prefix, RAY, "start", *where, f"--num-cpus={cpus}", f"--temp-dir={tmp / name}",
               "--object-store-memory=80000000", "--disable-usage-stats", "--block", *ports]
    return subprocess.Popen(command, stdout=open(tmp / f"{name}.log", "w"), stderr=subprocess.STDOUT, cwd=cwd,
                            start_new_session=True, env={**(os.environ if env is None else env), "RAY_AUTH_MODE": "disabled"})


def start_cluster(tmp: Path, base: int = BASE, head: dict | None = None, worker: dict | None = None) -> tuple[str, list]:
    """A head node and a worker node (each with node()'s keyword arguments); returns the address once
    both are alive, and the nodes' processes for stop_cluster."""
    nodes = [node(tmp, "head", 0, head=True, base=base, **(head or {}))]
    time.sleep(4)
    nodes.append(node(tmp, "worker", 20, head=False, base=base, **(worker or {})))
    address = f"127.0.0.1:{base + 30}"
    probe = "import ray,sys,time\nray.init(address=sys.argv[1])\nwhile len([n for n in ray.nodes() if n['Alive']]) < 2: time.sleep(0.2)"
    try:
        subprocess.run([sys.executable, "-c", probe, address], timeout=90, check=True, capture_output=True)
    except BaseException:
        stop_cluster(nodes)
        raise
    return address, nodes


def stop_cluster(nodes: list) -> None:
    for process in nodes:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = Path(f"/tmp/lsc-{os.getpid()}")  # short: Ray's unix socket paths have a length limit
    tmp.mkdir(exist_ok=True)
    address, nodes = start_cluster(tmp)
    yield address, tmp
    stop_cluster(nodes)
    shutil.rmtree(tmp, ignore_errors=True)


def langspec_run(tmp_path, address, cpus, timeout=300):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(cpus=cpus)))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "langspec", "run", str(spec), "--store", str(tmp_path / "store"),
                           "--address", address], capture_output=True, text=True, timeout=timeout)
    return done, " ".join((done.stdout + done.stderr).split()), time.monotonic() - started


def test_a_task_larger_than_every_node_fails_before_anything_runs(cluster, tmp_path):
    address, _ = cluster
    done, said, seconds = langspec_run(tmp_path, address, cpus=2, timeout=120)
    assert done.returncode == 2, said
    assert "stage data asks for 2 CPUs per task" in said and "the largest of its 2 node(s) has 1 CPU" in said
    assert "lower resources.data.num_cpus" in said
    assert not (tmp_path / "store" / "tasks").exists() or not any((tmp_path / "store" / "tasks").glob("[!.]*"))


def test_a_task_waiting_for_a_free_node_is_reported_then_runs(cluster, tmp_path):
    address, _ = cluster
    marker = tmp_path / "held"
    log = tmp_path / "holder.log"
    release = tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, address, str(marker), str(release)],
                              stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not all(Path(f"{marker}-{i}").exists() for i in range(2)):  # both CPUs of the cluster are taken
        assert time.monotonic() < deadline and holder.poll() is None, log.read_text()
        time.sleep(0.1)
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(cpus=1)))
    output = tmp_path / "run.log"
    run = subprocess.Popen([sys.executable, "-m", "langspec", "run", str(spec), "--store", str(tmp_path / "store"),
                            "--address", address], stdout=open(output, "w"), stderr=subprocess.STDOUT)
    while "has waited" not in output.read_text():  # the CPUs are freed once the wait was reported
        assert time.monotonic() < deadline and run.poll() is None, output.read_text()
        time.sleep(0.2)
    release.touch()
    run.wait(timeout=240)
    holder.wait(timeout=60)
    said = " ".join(output.read_text().split())
    assert run.returncode == 0, said
    assert "data has waited" in said and "for a node with 1 CPU(s) and 0 GPU(s); free in the cluster now: 0 CPU(s)" in said, said
