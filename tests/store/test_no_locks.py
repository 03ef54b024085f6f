"""A filesystem without working file locks (NFS without its lock service, Lustre without `flock`):
flock(2) fails there with ENOLCK or EOPNOTSUPP. The store refuses it with exit 2 and that reason,
for the writer (`langspec run`) and the readers (`langspec query`), and changes nothing on disk.
flock itself is what the test replaces: the filesystem's answer, which this machine cannot give."""

from __future__ import annotations

import errno
import fcntl

import pytest
from typer.testing import CliRunner

from langspec.cli import app
from store import artifacts
from store.db import StoreWriter
from store.errors import StoreError


@pytest.fixture
def no_locks(monkeypatch):
    real = fcntl.flock

    def flock(handle, operation):
        if operation & fcntl.LOCK_UN:
            return real(handle, operation)
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", flock)


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_writer_refuses_a_filesystem_without_locks(tmp_path, no_locks):
    with pytest.raises(StoreError, match=r"gives no working file locks \(No locks available\).*local disk"):
        StoreWriter(tmp_path / "results")


def test_a_reader_refuses_it_with_exit_2_and_the_store_unchanged(tmp_path, monkeypatch):
    root = tmp_path / "results"
    StoreWriter(root).close()
    before = files(root)
    monkeypatch.setattr(fcntl, "flock", lambda handle, operation: (_ for _ in ()).throw(OSError(errno.EOPNOTSUPP, "Operation not supported")))
    result = CliRunner().invoke(app, ["query", "SELECT 1", "--store", str(root)])
    assert result.exit_code == 2, result.output
    assert "gives no working file locks (Operation not supported)" in " ".join(result.output.split())
    assert files(root) == before


def test_a_lock_held_elsewhere_is_still_a_wait_not_a_refusal(tmp_path):
    path = tmp_path / "lock"
    with artifacts.open_private(path) as first, artifacts.open_private(path) as second:
        artifacts.lock(first, fcntl.LOCK_EX | fcntl.LOCK_NB, path)
        with pytest.raises(BlockingIOError):
            artifacts.lock(second, fcntl.LOCK_EX | fcntl.LOCK_NB, path)
