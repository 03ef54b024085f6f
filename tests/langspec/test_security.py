"""Safe by default: each finding of the security review, reproduced as it was found.

A local Ray that langspec starts listens on loopback alone and refuses a driver without its run's
token; no SQL is built from a name read from disk; a read-only connection changes nothing on disk;
a store and its lock files are their user's alone; printed values cannot drive a terminal; CSV
lines end in `\\n`. (Specs that expand without bound are refused in test_load.py.)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from langspec import verify
from store import artifacts
from store.connections import DB_FILE, GATE_FILE, LOCK_FILE, connect_read_only
from store.db import StoreWriter
from store.errors import StoreError

LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")

# Runs in a process of its own (this one holds the suite's Ray): starts langspec's private Ray,
# lists what its processes listen on, and tries three clients: without a token, with a wrong one,
# and as a user whose own token file holds the right one.
PRIVATE_RAY = textwrap.dedent("""
    import json, os, subprocess, sys
    from pathlib import Path
    import ray
    import psutil  # Ray's own copy, on the path once Ray is imported
    from langspec.backends import start_private_ray

    store = Path(sys.argv[1])
    start_private_ray(store)
    address = ray.get_runtime_context().gcs_address
    token = os.environ["RAY_AUTH_TOKEN"]
    listening = sorted({f"{c.laddr.ip} {p.name()}" for p in psutil.Process().children(recursive=True)
                        for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN})
    probe = ("import sys\\nfrom ray._raylet import GcsClient\\n"
             "try:\\n    GcsClient(address=sys.argv[1]).internal_kv_keys(b'', None, timeout=5); print('connected')\\n"
             "except Exception as err:\\n    print('refused', type(err).__name__)")
    home = store.parent / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token)  # how a user keeps a cluster's token
    bare = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(home)}
    drivers = {}
    for name, env in (("no token", {"RAY_AUTH_MODE": "disabled"}), ("wrong token", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}),
                      ("the user's token file", {"RAY_AUTH_MODE": "token"})):  # as Ray's docs tell a user to join
        done = subprocess.run([sys.executable, "-c", probe, address], env=bare | env, capture_output=True, text=True, timeout=120)
        drivers[name] = (done.stdout.strip().splitlines() or [done.stderr.strip()[-300:]])[-1]
    written = [str(path) for top in (store, Path.home() / ".ray") if top.is_dir() for path in top.rglob("*")
               if path.is_file() and not path.is_symlink() and token.encode() in path.read_bytes()]
    ray.shutdown()
    print(json.dumps({"address": address, "listening": listening, "drivers": drivers, "token_written_to": written}))
""")


def test_a_ray_langspec_starts_listens_on_loopback_and_refuses_drivers_without_its_token(tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"RAY_AUTH_MODE": "disabled"}  # the old default
    done = subprocess.run([sys.executable, "-c", PRIVATE_RAY, str(store)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["address"].startswith("127.0.0.1:")
    assert found["listening"] and all(entry.split()[0] in LOOPBACK for entry in found["listening"]), found["listening"]
    assert {name for entry in found["listening"] for name in entry.split()[1:]} >= {"gcs_server", "raylet"}
    assert found["drivers"]["no token"] == "refused AuthenticationError"
    assert found["drivers"]["wrong token"] == "refused AuthenticationError"
    assert found["drivers"]["the user's token file"] == "connected"  # the refusals are the token's, not the network's
    assert found["token_written_to"] == []  # not in the store nor in ~/.ray (where Ray keeps tokens): in the environment only


def test_joining_a_cluster_leaves_the_users_authentication_settings_alone(ray_session, tmp_path, monkeypatch):
    from langspec.backends import RayBackend
    from langspec.progress import RunDisplay

    monkeypatch.delenv("RAY_AUTH_MODE")
    backend = RayBackend(tmp_path, RunDisplay(quiet=True), address=ray_session.get_runtime_context().gcs_address)
    backend.close()
    assert "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ  # it was set to `disabled`


# --- no SQL from names read from disk ---------------------------------------------------------


def plant(root: Path, name: str) -> None:
    """A complete-looking fine-tuning task in a directory of `name`, as someone with write access to
    a shared store's tasks/ could leave it."""
    tables = root / "tasks" / name / "tables"
    tables.mkdir(parents=True)
    pq.write_table(pa.table({"seed": [0], "variant": ["full"], "language": ["ka"], "split": ["test"], "metric": ["accuracy"],
                             "value": [0.5], "epoch": [1]}), tables / "metrics.parquet")
    pq.write_table(pa.table({"seed": [0], "variant": ["full"], "epoch": [1], "step": [1], "learning_rate": [1e-3],
                             "path": ["checkpoints/epoch-1"]}), tables / "checkpoints.parquet")
    artifacts.seal(root / "tasks" / name, {"stage": "finetune", "name": "finetune[seed=0]"})


def test_a_planted_task_directory_name_reads_nothing_into_the_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.txt").write_text("the victim's secret")
    root = tmp_path / "store"
    StoreWriter(root).close()
    planted = "q' || (SELECT content FROM read_text('secret.txt')) || '"
    plant(root, planted)
    problems = verify.verify_store(root, repair=True)
    assert [(p.kind, p.what) for p in problems] == [("not a task", f"tasks/{planted}")]
    assert (root / "tasks" / planted).is_dir()  # left for its owner to look at
    with connect_read_only(root) as con:
        assert con.sql("SELECT count(*) FROM checkpoints").fetchall() == [(0,)]
    with StoreWriter(root) as writer, pytest.raises(StoreError, match="is not a task key"):
        writer.ingest(planted, "finetune", "planted", ("metrics", "checkpoints"))


def test_a_task_path_is_bound_as_a_value(tmp_path):
    key = "0123456789abcdef" * 4
    plant(tmp_path, key)
    with StoreWriter(tmp_path) as writer:
        writer.ingest(key, "finetune", "finetune[seed=0]", ("metrics", "checkpoints"))
    with connect_read_only(tmp_path) as con:
        assert con.sql("SELECT path FROM checkpoints").fetchall() == [(f"tasks/{key}/checkpoints/epoch-1",)]


# --- read-only means nothing on disk changes --------------------------------------------------


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1 AS x) TO '{db}' (FORMAT csv)",  # cut a copy of a real store to 4 bytes
    "COPY (SELECT 1 AS x) TO '{outside}' (FORMAT csv)",
    "SELECT * FROM read_csv('{passwd}')",
    "SELECT * FROM read_text('{passwd}')",
    "ATTACH '{outside}' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
])
def test_a_read_only_connection_changes_and_reads_nothing_but_the_database(tmp_path, sql):
    root = tmp_path / "store"
    StoreWriter(root).close()
    db = root / DB_FILE
    before = db.read_bytes()
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0\n")
    with connect_read_only(root) as con, pytest.raises(duckdb.Error, match="disabled by configuration|disabled through configuration|locked"):
        con.sql(sql.format(db=db, outside=tmp_path / "out.csv", passwd=passwd))
    assert db.read_bytes() == before
    assert not (tmp_path / "out.csv").exists()


# --- files on shared machines -----------------------------------------------------------------


def test_a_new_store_and_its_lock_files_are_the_users_alone(tmp_path):
    root = tmp_path / "shared" / "store"
    with StoreWriter(root):
        artifacts.set_fence(root, artifacts.new_token())
    modes = {name: (root / name).stat().st_mode & 0o777 for name in (".", LOCK_FILE, GATE_FILE, "tasks/.fence")}
    assert modes == {".": 0o700, LOCK_FILE: 0o600, GATE_FILE: 0o600, "tasks/.fence": 0o600}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_take_a_stores_lock_files():
    base = Path(tempfile.mkdtemp())  # outside pytest's own temp dir, which no other user may enter
    try:
        base.chmod(0o755)
        root = base / "store"
        with StoreWriter(root):
            artifacts.set_fence(root, artifacts.new_token())
        root.chmod(0o755)  # even where its owner opened the directory to others, the lock files stay theirs
        (root / "tasks").chmod(0o755)
        control = root / "readable"
        control.write_text("")
        control.chmod(0o644)
        assert as_nobody(lambda: fcntl.flock(open(control), fcntl.LOCK_SH)) == "done"  # what lock files were before
        for path in (root / LOCK_FILE, root / GATE_FILE, root / "tasks" / ".fence"):
            assert as_nobody(lambda: fcntl.flock(open(path), fcntl.LOCK_SH)) == "PermissionError", path
    finally:
        shutil.rmtree(base)


def as_nobody(action) -> str:
    """Run `action` in a child process as the user nobody; the name of what it raised, or 'done'."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        outcome = "done"
        try:
            os.setgid(65534)
            os.setuid(65534)
            action()
        except BaseException as err:
            outcome = type(err).__name__
        os.write(write, outcome.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as answer:
        return answer.read()


def test_rays_own_temp_dir_is_private_and_passes_over_one_made_by_someone_else(tmp_path, monkeypatch):
    from langspec.backends import ray_temp_dir

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    long_store = tmp_path / ("a-store-whose-path-is-too-long-for-unix-sockets" * 2)
    own = Path(ray_temp_dir(long_store))
    assert own == tmp_path / f"langspec-ray-{os.getuid()}" and own.stat().st_mode & 0o777 == 0o700
    own.chmod(0o777)  # as earlier versions left it
    assert Path(ray_temp_dir(long_store)).stat().st_mode & 0o777 == 0o700
    own.rmdir()
    own.symlink_to(tmp_path)  # taken first by someone else (a link to where they want Ray's sockets)
    fresh = Path(ray_temp_dir(long_store))
    assert fresh != own and fresh.parent == tmp_path and fresh.stat().st_mode & 0o777 == 0o700


# --- what the command prints ------------------------------------------------------------------


def cli(*args):
    from typer.testing import CliRunner

    from langspec.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def store_with_rows(tmp_path) -> Path:
    root = tmp_path / "store"
    plant(root, "0123456789abcdef" * 4)
    with StoreWriter(root) as writer:
        writer.ingest("0123456789abcdef" * 4, "finetune", "finetune[seed=0]", ("metrics", "checkpoints"))
    return root


def test_terminal_controls_in_values_are_shown_not_obeyed(store_with_rows):
    sql = "SELECT chr(27) || ']0;pwned' || chr(7) || chr(27) || '[2J' || chr(13) || 'x' AS text, 'tab\there' AS fine"
    for format in ("table", "csv"):
        shown = cli("query", sql, "--store", store_with_rows, "--format", format)
        assert shown.exit_code == 0
        assert not set(shown.output) & {"\x1b", "\x07", "\r"}, (format, shown.output)
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\x0dx" in shown.output
    assert "tab\there" in shown.output  # a tab is no control sequence: CSV keeps it
    assert json.loads(cli("query", sql, "--store", store_with_rows, "--format", "json").output)[0]["text"].startswith("\x1b]0;")


def test_a_csv_count_goes_into_shell_arithmetic(store_with_rows):
    script = 'n=$("$0" -m langspec query "SELECT count(*) AS n FROM metrics" --store "$1" --format csv | tail -1); echo $((n * 7))'
    done = subprocess.run(["bash", "-c", script, sys.executable, str(store_with_rows)], capture_output=True, text=True, timeout=120)
    assert (done.stdout, done.returncode) == ("7\n", 0), done.stderr


def test_query_writes_a_result_to_a_file_outside_the_store_only(store_with_rows, tmp_path):
    sql = "SELECT language, value FROM metrics"
    for suffix in (".csv", ".parquet", ".json"):
        out = tmp_path / f"answer{suffix}"
        done = cli("query", sql, "--store", store_with_rows, "--out", out)
        assert done.exit_code == 0 and f"wrote 1 row to {out}" in done.output
    assert (tmp_path / "answer.csv").read_bytes() == b"language,value\nka,0.5\n"
    assert pq.read_table(tmp_path / "answer.parquet").to_pylist() == [{"language": "ka", "value": 0.5}]
    assert json.loads((tmp_path / "answer.json").read_text()) == [{"language": "ka", "value": 0.5}]
    before = (store_with_rows / DB_FILE).read_bytes()
    for out, why in ((store_with_rows / "answer.csv", "inside the store"), (tmp_path / "answer.xlsx", "ending in .csv")):
        refused = cli("analyze", "accuracy", "--store", store_with_rows, "--out", out)
        assert refused.exit_code == 2 and why in refused.output
    assert (store_with_rows / DB_FILE).read_bytes() == before


def test_a_traceback_hint_pastes_as_one_command_whatever_the_task_is_called(tmp_path):
    import shlex

    from langspec.run_summary import traceback_command

    name = "finetune[seed=0,data.dataset=it's $(touch pwned)]"
    store = tmp_path / "my store; rm -rf ~"
    words = shlex.split(traceback_command(3, name, store))
    assert words == ["langspec", "query", f"SELECT error FROM tasks WHERE run_id = 3 AND name = '{name.replace(chr(39), chr(39) * 2)}'",
                     "--store", str(store)]
    assert duckdb.sql(words[2].replace("FROM tasks WHERE", "FROM (SELECT 'x' AS error, 3 AS run_id, $n AS name) WHERE"),
                      params={"n": name}).fetchall() == [("x",)]  # the quoted name is the name


def test_a_sweep_of_more_than_a_thousand_points_needs_yes(spec_file, small_spec):
    big = small_spec.read_text() + "sweep: {finetune.epochs: [1, 2, 3, 4, 5, 6, 7], finetune.lr: [" + \
        ", ".join(f"{i}.0e-4" for i in range(1, 144)) + "]}\n"
    path = spec_file(big, "big.yaml")
    refused = cli("validate", path)
    assert refused.exit_code == 2 and "the sweep has 1001 points, more than 1000" in refused.output and "--yes" in refused.output
    accepted = cli("validate", path, "--yes")
    assert accepted.exit_code == 0 and "valid (1001 sweep points" in accepted.output
