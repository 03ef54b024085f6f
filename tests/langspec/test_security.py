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
    start_private_ray()
    temp_dir = ray._private.worker._global_node.get_temp_dir_path()
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
    print(json.dumps({"address": address, "listening": listening, "drivers": drivers, "token_written_to": written,
                      "temp_dir": temp_dir}))
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


def store_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a store's top level (the database, its logs, the lock and gate files) by name."""
    return {path.name: path.read_bytes() for path in root.iterdir() if path.is_file()}


@pytest.mark.parametrize("sql", [
    "COPY (SELECT from_hex('00ff')) TO '{wal}' (FORMAT blob)",
    "COPY (PIVOT meta ON key USING first(value)) TO '{wal}' (FORMAT csv)",  # DuckDB parses it as MULTI, like a PIVOT
    "EXPLAIN ANALYZE COPY meta TO '{wal}'",
    "EXPLAIN /* a comment */ ANALYZE COPY meta TO '{wal}'",
    "PREPARE b AS COPY meta TO '{wal}'; EXECUTE b",
    "SELECT 1; COPY meta TO '{wal}'",  # a writing statement after a reading one: nothing runs
    "CALL pragma_version()",
    "PRAGMA version",
    "SET threads = 1",
    "CREATE TEMP TABLE x AS SELECT 1",
    "CHECKPOINT",
    "EXPORT DATABASE '{outside}'",
])
def test_a_query_that_is_not_a_read_exits_2_and_leaves_every_file_of_the_store_as_it_was(tmp_path, sql):
    root = tmp_path / "store"
    StoreWriter(root).close()
    before = store_bytes(root)
    done = cli("query", sql.format(wal=root / (DB_FILE + ".wal"), outside=tmp_path / "out"), "--store", root)
    said = " ".join(done.output.split())
    assert done.exit_code == 2 and "is not run: queries are read-only" in said, said
    assert store_bytes(root) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("sql, first", [
    ("SELECT key FROM meta ORDER BY key", "duckdb_version"),
    ("WITH m AS (FROM meta) SELECT key FROM m ORDER BY key", "duckdb_version"),
    ("VALUES ('a')", "a"),
    ("PIVOT (SELECT 'x' AS key, 1 AS v) ON key USING sum(v)", "1"),
    ("SELECT * FROM (PIVOT (SELECT 'x' AS key, 1 AS v) ON key USING sum(v));", "1"),
    ("DESCRIBE meta", "key"),
    ("SHOW TABLES", "ablation_effects"),  # views too
    ("SUMMARIZE meta", "key"),
    ("EXPLAIN SELECT 1", "physical_plan"),
])
def test_reading_statements_still_run(tmp_path, sql, first):
    root = tmp_path / "store"
    StoreWriter(root).close()
    done = cli("query", sql, "--store", root, "--format", "csv")
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[1].split(",")[0] == first


def planted_log(root: Path, tmp_path: Path) -> bytes:
    """A write-ahead log that adds a row to `meta` when the store's database replays it: made on a copy
    of the store by a connection that leaves its log (as a query's COPY ... (FORMAT blob) can write it)."""
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    con = duckdb.connect(str(copy / DB_FILE))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("INSERT INTO meta VALUES ('planted', 'by a query')")
    con.close()
    return (copy / (DB_FILE + ".wal")).read_bytes()


def test_a_log_written_through_a_read_only_connection_is_refused_by_the_next_read_run_and_repair(tmp_path, spec_file, small_spec):
    root = tmp_path / "store"
    StoreWriter(root).close()
    log = planted_log(root, tmp_path)
    with connect_read_only(root) as con:  # what SQL through langspec.connect() can do: the settings allow it
        con.execute(f"COPY (SELECT from_hex($log)) TO '{root / (DB_FILE + '.wal')}' (FORMAT blob)", {"log": log.hex()})
    before = store_bytes(root)
    assert DB_FILE + ".wal" in before
    for args in (("query", "SELECT * FROM meta"), ("verify", "--repair"), ("run", small_spec, "--executor", "local")):
        done = cli(*args, "--store", root)
        said = " ".join(done.output.split())
        assert done.exit_code == 2 and "has a write-ahead log that no langspec run left" in said, (args, said)
        assert "planted" not in said
        assert store_bytes(root) == before, args
    (root / (DB_FILE + ".wal")).rename(root / "moved-away")  # as the message says
    assert "planted" not in cli("query", "SELECT * FROM meta", "--store", root, "--format", "csv").output


def test_a_killed_writers_log_is_replayed(tmp_path):
    root = tmp_path / "store"
    StoreWriter(root).close()
    log = planted_log(root, tmp_path)
    (root / (DB_FILE + ".wal")).write_bytes(log)
    (root / GATE_FILE).write_text("12345 a-host")  # the mark a writer leaves when it is killed with the database open
    with connect_read_only(root) as con:
        assert ("planted", "by a query") in con.sql("SELECT * FROM meta").fetchall()
    with StoreWriter(root) as writer, writer._open() as con:  # the next writer replays it, checkpoints and closes clean
        assert ("planted", "by a query") in con.sql("SELECT * FROM meta").fetchall()
    assert not (root / (DB_FILE + ".wal")).exists() and (root / GATE_FILE).read_text() == ""


def test_a_view_in_place_of_a_table_is_refused_before_a_migration_reads_it(tmp_path):
    (tmp_path / "secret.txt").write_text("the victim's secret")
    root = tmp_path / "store"
    StoreWriter(root).close()
    con = duckdb.connect(str(root / DB_FILE))  # what a planted log does when it is replayed
    con.execute("ALTER TABLE tasks RENAME TO tasks_before")
    con.execute(f"CREATE VIEW tasks AS SELECT 1 AS run_id, content AS task_key FROM read_text('{tmp_path / 'secret.txt'}')")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")  # migration 1 copies `tasks` into `points`
    con.close()
    with pytest.raises(StoreError, match="`tasks` is view .* where the schema has a base table"):
        StoreWriter(root)
    con = duckdb.connect(str(root / DB_FILE), read_only=True)
    assert con.sql("SELECT count(*) FROM points").fetchall() == [(0,)]


def test_the_writer_reads_no_file_outside_the_stores_tasks(tmp_path):
    (tmp_path / "secret.txt").write_text("the victim's secret")
    with StoreWriter(tmp_path / "store") as writer, writer._open() as con:
        with pytest.raises(duckdb.Error, match="disabled by configuration|disabled through configuration"):
            con.sql(f"SELECT content FROM read_text('{tmp_path / 'secret.txt'}')").fetchall()
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")


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


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_store_directory_made_by_another_user_is_refused_and_its_links_followed_nowhere(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the victim's file")
    root = tmp_path / "store"
    root.mkdir(mode=0o755)
    (root / LOCK_FILE).symlink_to(victim)  # left by the user who made the directory first
    os.lchown(root / LOCK_FILE, 65534, 65534)
    os.chown(root, 65534, 65534)
    with pytest.raises(StoreError, match="belongs to another user"):
        StoreWriter(root)
    assert victim.read_text() == "the victim's file"


@pytest.mark.parametrize("name", [LOCK_FILE, GATE_FILE])
def test_a_lock_file_that_is_a_link_empties_nothing(tmp_path, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("the victim's file")
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    (root / name).symlink_to(victim)
    with pytest.raises(StoreError, match="cannot write the store|Too many levels of symbolic links"):
        StoreWriter(root).close()
    assert victim.read_text() == "the victim's file"


def test_a_store_open_to_other_users_is_made_private_with_a_note(tmp_path):
    root = tmp_path / "store"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    notes = []
    StoreWriter(root, notify=notes.append).close()
    assert root.stat().st_mode & 0o777 == 0o700
    assert notes and "was open to other users (mode 777); it is now 0700" in notes[0]


@pytest.mark.parametrize("path", ["/dev/zero", "../../../outside.bin", "tables/../../../outside.bin", "link.bin"])
def test_verify_reads_no_file_a_manifest_names_outside_its_task(tmp_path, path):
    key = "0123456789abcdef" * 4
    root = tmp_path / "store"
    StoreWriter(root).close()
    plant(root, key)
    (tmp_path / "outside.bin").write_bytes(b"x" * 10)
    (root / "tasks" / key / "link.bin").symlink_to(tmp_path / "outside.bin")
    manifest_path = artifacts.task_dir(root, key) / artifacts.SUCCESS_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["files"].append({"path": path, "bytes": 0 if path == "/dev/zero" else 10, "sha256": "0" * 64})
    manifest_path.write_text(json.dumps(manifest))
    script = "import sys; from langspec import verify; print([p.detail for p in verify.verify_store(sys.argv[1])])"
    done = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=60)  # /dev/zero hung
    assert done.returncode == 0, done.stderr[-2000:]
    assert "outside its task directory" in done.stdout or "not a regular file of the task's" in done.stdout, done.stdout


def test_hints_quote_the_store_path_for_the_shell(tmp_path):
    import shlex

    root = tmp_path / "my store; touch pwned"
    with pytest.raises(StoreError) as refused:
        connect_read_only(root)
    assert f"--store {shlex.quote(str(root))}`" in str(refused.value)
    assert f"--store {shlex.quote(str(root))}`" in " ".join(cli("verify", "--store", root).output.split())


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


def test_rays_directory_sits_in_a_private_parent_never_one_made_by_someone_else(monkeypatch):
    from langspec.backends import ray_temp_dir

    tmp_path = Path(tempfile.mkdtemp(prefix="ls", dir="/tmp"))  # pytest's own is too long for Ray's sockets
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    own = Path(ray_temp_dir())
    assert own == tmp_path / f"langspec-{os.getuid()}" / "ray" and own.parent.stat().st_mode & 0o777 == 0o700
    own.parent.chmod(0o755)  # opened by the user, or by an earlier version
    assert Path(ray_temp_dir()).parent.stat().st_mode & 0o777 == 0o700
    own.parent.rmdir()
    own.parent.symlink_to(tmp_path)  # taken first by someone else (a link to where they want Ray's sockets)
    fresh = Path(ray_temp_dir())
    assert fresh.parent != own.parent and fresh.parent.parent == tmp_path and fresh.parent.stat().st_mode & 0o777 == 0o700
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / ("a-temp-dir-too-long-for-unix-sockets" * 2)))
    assert len(ray_temp_dir()) <= 40  # Ray's socket paths must fit in 107 bytes
    shutil.rmtree(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_no_other_user_can_list_or_enter_a_directory_the_runs_ray_made():
    base = Path(tempfile.mkdtemp())  # outside pytest's own temp dir, which no other user may enter
    try:
        base.chmod(0o755)  # a system temp dir as shared machines have it
        store = base / "store"
        store.mkdir(mode=0o755)  # a store its user opened to others (ray/ sat in it before)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"TMPDIR": str(base)}
        done = subprocess.run([sys.executable, "-c", PRIVATE_RAY, str(store)], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        temp_dir = Path(json.loads(done.stdout.strip().splitlines()[-1])["temp_dir"])
        made = [temp_dir, *(path for path in temp_dir.rglob("*") if path.is_dir() and not path.is_symlink())]
        assert len(made) > 3 and any(path.stat().st_mode & 0o777 == 0o777 for path in made)  # Ray opens what it makes
        for path in made:
            assert as_nobody(lambda: os.listdir(path)) == "PermissionError", path
            assert as_nobody(lambda: os.chdir(path)) == "PermissionError", path
        assert not [path for path in store.rglob("*") if path.is_dir()]  # nothing of Ray's in the store
    finally:
        shutil.rmtree(base)


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
