"""One run per store across hosts (#40): the driver that runs a store is recorded in the shared tasks/
(beside the fence), so a second driver is refused even when its database and lock are on another
host's disk (`run --db-dir`); a dead driver's record is taken over. "Another host" is a process in a
UTS namespace of its own with another hostname (`unshare --uts`), which socket.gethostname() reads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import run_owner
from store.connections import DB_FILE, DB_RECORD, connect_read_only, network_filesystem
from store.db import StoreWriter
from store.errors import StoreError

ROOT = Path(__file__).parents[2]
OTHER_HOST = "langspec-other-host"
HOLD = """
import sys
from store.db import StoreWriter
writer = StoreWriter(sys.argv[1], db_dir=sys.argv[2])
print("ready", flush=True)
sys.stdin.read()
"""


def on_other_host(*command: str) -> list[str]:
    return ["unshare", "--uts", "--", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh", *command]


@pytest.fixture
def other_host():
    if os.geteuid() != 0 or subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs a UTS namespace (unshare --uts, as root) to be another host")


@pytest.fixture
def driver(tmp_path):
    """A driver process that holds the store `tmp_path/shared`, its database on its own disk (`tmp_path/a`)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "shared"), str(tmp_path / "a")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout.readline().strip() == "ready"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_second_driver_on_another_host_is_refused_naming_the_first(tmp_path, small_spec, driver, other_host):
    done = subprocess.run(on_other_host(sys.executable, "-m", "langspec", "run", str(small_spec), "--executor", "local",
                                        "--store", str(tmp_path / "shared"), "--db-dir", str(tmp_path / "b")),
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert f"pid {driver.pid} on host {socket.gethostname()}" in message
    assert not (tmp_path / "b" / DB_FILE).exists()  # refused before it wrote anything
    assert not list((tmp_path / "shared" / "tasks").glob("[!.]*"))


def test_a_second_driver_with_its_own_database_on_this_host_is_refused(tmp_path, driver):
    with pytest.raises(StoreError, match=f"pid {driver.pid} on host {socket.gethostname()}"):
        StoreWriter(tmp_path / "shared", db_dir=tmp_path / "b")  # another lock file: only tasks/.run stands between them


def test_a_killed_drivers_record_is_taken_over_on_its_host(tmp_path, driver):
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    with StoreWriter(tmp_path / "shared", db_dir=tmp_path / "b"):
        assert run_owner.read_run_owner(tmp_path / "shared").pid == os.getpid()
    assert run_owner.read_run_owner(tmp_path / "shared") is None  # given back at the end


def test_a_dead_drivers_record_from_another_host_is_taken_over_once_its_heartbeat_ages(tmp_path, driver, other_host):
    driver.send_signal(signal.SIGKILL)  # from another host's view its pid says nothing: only the heartbeat does
    driver.wait()
    take = ("import sys; from store.db import StoreWriter; from store import run_owner; "
            "w = StoreWriter(sys.argv[1], db_dir=sys.argv[2]); print(run_owner.read_run_owner(sys.argv[1]).host)")
    command = on_other_host(sys.executable, "-c", take, str(tmp_path / "shared"), str(tmp_path / "b"))
    fresh = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert fresh.returncode != 0 and f"pid {driver.pid} on host {socket.gethostname()}" in " ".join(fresh.stderr.split())
    aged = time.time() - run_owner.RUN_STALE_S - 1
    os.utime(tmp_path / "shared" / "tasks" / run_owner.RUN_OWNER_FILE, (aged, aged))
    taken = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.strip() == OTHER_HOST


def test_a_record_from_another_host_holds_while_its_heartbeat_is_fresh(tmp_path):
    root = tmp_path / "store"
    (root / "tasks").mkdir(parents=True)
    # pid 1 lives here, but the record is another host's: only its heartbeat counts
    (root / "tasks" / run_owner.RUN_OWNER_FILE).write_text('{"host": "elsewhere", "pid": 1, "token": "t"}')
    with pytest.raises(StoreError, match="pid 1 on host elsewhere"):
        StoreWriter(root)
    aged = time.time() - run_owner.RUN_STALE_S - 1
    os.utime(root / "tasks" / run_owner.RUN_OWNER_FILE, (aged, aged))
    with StoreWriter(root):
        assert run_owner.read_run_owner(root).host == socket.gethostname()


def test_the_running_driver_keeps_its_heartbeat_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(run_owner, "RUN_HEARTBEAT_S", 0.05)
    record = tmp_path / "store" / "tasks" / run_owner.RUN_OWNER_FILE
    with StoreWriter(tmp_path / "store"):
        aged = time.time() - 1000
        os.utime(record, (aged, aged))
        time.sleep(0.5)
        assert time.time() - record.stat().st_mtime < 5


def test_readers_find_the_database_the_run_kept_on_its_disk(tmp_path, other_host):
    shared, local = tmp_path / "shared", tmp_path / "local"
    with StoreWriter(shared, db_dir=local) as writer:
        writer.begin_run(spec_name="s", spec_path="s.yaml", spec_text="", overrides=[], spec_json="{}", spec_hash="h",
                         git_commit=None, versions={}, host=socket.gethostname(), executor="local")
    assert (local / DB_FILE).is_file() and not (shared / DB_FILE).exists()
    with connect_read_only(shared) as con:  # no option: the store says where its database is
        assert con.sql("SELECT spec_name FROM runs").fetchall() == [("s",)]
    with StoreWriter(shared) as writer:  # a later run without --db-dir keeps using it
        assert writer.db == local
    elsewhere = subprocess.run(on_other_host(sys.executable, "-m", "langspec", "status", "--store", str(shared)),
                               capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert elsewhere.returncode == 2
    assert f"on host {socket.gethostname()}, in {local}" in " ".join(elsewhere.stderr.split())
    with StoreWriter(shared, db_dir=shared):  # back into the store itself: no record left
        pass
    assert not (shared / DB_RECORD).exists()


def test_a_network_mount_is_told_from_a_local_disk(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
                         "40 22 0:50 / /home rw,relatime - nfs4 filer:/home rw,vers=4.2,local_lock=none\n"
                         "41 40 0:51 / /home/scratch rw - xfs /dev/sdb1 rw\n")
    assert network_filesystem("/home/ana/results", mountinfo) == "nfs4"
    assert network_filesystem("/home/scratch/results", mountinfo) is None  # a local disk mounted inside the share
    assert network_filesystem("/var/tmp", mountinfo) is None
