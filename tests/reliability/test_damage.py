"""Damaged artifacts never give silently wrong results: a deleted or truncated checkpoint or table
is found by the next run, which says so and computes the task again; `langspec verify` finds every
kind (contents changed at the same size too) and `--repair` sets the broken results aside without
touching the good ones; a damaged database is refused with what to do, and rebuilt by the repair."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from contents import store_contents
from langspec.cli import app
from langspec.compile import compile_spec
from langspec.load import load_spec
from store import artifacts

SPEC = """\
    name: damage
    data: {source: toy, languages: [ka, la], train_per_language: 60, validation_per_language: 20, test_per_language: 10}
    model: {tiny: {layers: 2, heads: 2, hidden: 16, intermediate: 32, vocab_size: 200}}
    seeds: [0]
    finetune: {epochs: 2, lr: 1.0e-3, batch_size: 16, max_length: 32}
    prune: {enabled: true, threshold: 0.9}
    sparse_finetune: {enabled: false}
    tracin: {enabled: true, variants: [full], train_per_language: 10, test_per_language: 3}
    analysis: {top_k: 3}
    resources: {default: {num_cpus: 1}}
"""


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One clean store, copied by each test before it damages it."""
    root = tmp_path_factory.mktemp("damage")
    spec = root / "spec.yaml"
    spec.write_text("\n".join(line[4:] for line in SPEC.splitlines()) + "\n")
    store = root / "clean"
    assert cli("run", spec, "--store", store, "--executor", "local").exit_code == 0
    keys = {task.name: task.key for task in compile_spec(load_spec(spec)).tasks}
    return spec, store, keys, store_contents(store)


def damaged_copy(study, tmp_path):
    spec, clean, keys, contents = study
    store = tmp_path / "store"
    shutil.copytree(clean, store)
    return spec, store, keys, contents


def truncate(path):
    os.truncate(path, path.stat().st_size // 2)


def flip_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(255 - b for b in data[middle:middle + 8])
    path.write_bytes(bytes(data))


# (task, what is damaged, how, what the run or verify says)
DAMAGE = {
    "checkpoint deleted": ("finetune[seed=0]", "checkpoints/epoch-1/model.safetensors", os.remove, "is missing"),
    "table truncated": ("prune[seed=0,language=ka]", "tables/subnetworks.parquet", truncate, "has"),
    "manifest deleted": ("tracin[seed=0,variant=full]", artifacts.SUCCESS_FILE, os.remove, "_SUCCESS.json is missing"),
    "manifest garbled": ("prune[seed=0,language=la]", artifacts.SUCCESS_FILE, truncate, "_SUCCESS.json is damaged"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_the_next_run_finds_the_damage_says_so_and_recomputes(study, tmp_path, kind):
    spec, store, keys, clean = damaged_copy(study, tmp_path)
    task, path, damage, said = DAMAGE[kind]
    damage(artifacts.task_dir(store, keys[task]) / path)
    found = cli("verify", "--store", store)
    assert found.exit_code == 1 and task in found.output and said in " ".join(found.output.split())
    rerun = cli("run", spec, "--store", store, "--executor", "local")
    assert rerun.exit_code == 0, rerun.output
    said = " ".join(rerun.output.split())
    assert f"task {task}: " in said and "running it again" in said
    assert "1 ran" in said  # that task alone: its dependents' keys did not change
    assert store_contents(store) == clean
    assert cli("verify", "--store", store).exit_code == 0


def test_contents_changed_at_the_same_size_are_found_by_verify_and_repaired(study, tmp_path):
    spec, store, keys, clean = damaged_copy(study, tmp_path)
    task = "tracin[seed=0,variant=full]"
    flip_bytes(artifacts.task_dir(store, keys[task]) / "tables/influence.parquet")
    found = cli("verify", "--store", store)
    assert found.exit_code == 1 and "does not match its sha256" in found.output
    repaired = cli("verify", "--repair", "--store", store)
    assert repaired.exit_code == 1 and "set aside" in repaired.output
    assert not artifacts.task_dir(store, keys[task]).exists()
    good = [name for name in keys if name != task]
    assert all(artifacts.check_complete(store, keys[name], hashes=True) is None for name in good)  # untouched
    assert cli("run", spec, "--store", store, "--executor", "local").exit_code == 0
    assert store_contents(store) == clean


def test_a_manifest_naming_an_unknown_stage_is_damage_not_a_crash(study, tmp_path):
    spec, store, keys, clean = damaged_copy(study, tmp_path)
    path = artifacts.task_dir(store, keys["prune[seed=0,language=ka]"]) / artifacts.SUCCESS_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "stage": "no_such_stage"}))
    found = cli("verify", "--store", store)
    assert found.exit_code == 1 and "unknown stage 'no_such_stage'" in " ".join(found.output.split())


def test_rows_without_a_task_directory_and_a_task_never_ingested(study, tmp_path):
    spec, store, keys, clean = damaged_copy(study, tmp_path)
    shutil.rmtree(artifacts.task_dir(store, keys["prune[seed=0,language=la]"]))
    from store.db import StoreWriter

    with StoreWriter(store) as writer:
        writer.forget(keys["prune[seed=0,language=ka]"])  # its rows lost, its directory fine
    found = " ".join(cli("verify", "--store", store).output.split())
    assert "rows without a result: prune[seed=0,language=la]" in found
    assert "not ingested: prune[seed=0,language=ka]" in found
    assert cli("verify", "--repair", "--store", store).exit_code == 1
    assert cli("verify", "--store", store).exit_code == 0
    assert cli("run", spec, "--store", store, "--executor", "local").exit_code == 0
    assert store_contents(store) == clean


def test_a_damaged_database_is_refused_with_what_to_do_and_rebuilt_by_repair(study, tmp_path):
    spec, store, keys, clean = damaged_copy(study, tmp_path)
    truncate(store / "langspec.duckdb")
    refused = cli("run", spec, "--store", store, "--executor", "local")
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "is damaged" in said and "langspec verify --repair" in said
    queried = [cli("query", f"SELECT sum(hash(COLUMNS(*))) FROM {table}", "--store", store) for table in clean]
    lost = [result for result in queried if result.exit_code != 0]  # the tables in the lost half of the file
    assert lost and all(r.exit_code == 2 and "langspec verify --repair" in " ".join(r.output.split()) for r in lost)
    repaired = cli("verify", "--repair", "--store", store)
    assert repaired.exit_code == 1 and "damaged database" in repaired.output
    assert list(store.glob("langspec.duckdb.damaged-*"))
    assert store_contents(store) == clean  # every result ingested again from the task directories
    rerun = cli("run", spec, "--store", store, "--executor", "local")
    assert rerun.exit_code == 0 and f"{len(keys)} cached" in " ".join(rerun.output.split())
    runs = json.loads(cli("query", "SELECT status FROM runs", "--store", store, "--format", "json").output)
    assert runs == [{"status": "completed"}]


FULL_SPEC = """\
name: full
data: {source: toy, languages: [ka, la], train_per_language: 60, validation_per_language: 10, test_per_language: 10}
model: {tiny: {layers: 2, heads: 2, hidden: 64, intermediate: 128, vocab_size: 2000}}
seeds: [0]
finetune: {epochs: 6, lr: 1.0e-3, batch_size: 32, max_length: 32}
prune: {enabled: false}
sparse_finetune: {enabled: false}
tracin: {enabled: false}
resources: {default: {num_cpus: 1}}
"""


@pytest.fixture
def small_disk(tmp_path):
    """A 3.5 MB tmpfs: the study below needs about 6 MB at its peak (root may mount; CI runs as root)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3500k", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_gives_a_clear_error_and_the_store_resumes_once_there_is_space(small_disk, tmp_path):
    import subprocess

    spec = tmp_path / "full.yaml"
    spec.write_text(FULL_SPEC)
    store = small_disk / "store"
    full = cli("run", spec, "--store", store, "--executor", "local")
    said = " ".join(full.output.split())
    assert full.exit_code != 0 and "no space left on the" in said and "then run again" in said, said
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = cli("run", spec, "--store", store, "--executor", "local")
    assert again.exit_code == 0 and "1 cached, 1 ran" in " ".join(again.output.split())  # data kept
    assert cli("verify", "--store", store).exit_code == 0
    clean = tmp_path / "clean"
    assert cli("run", spec, "--store", clean, "--executor", "local").exit_code == 0
    assert store_contents(store) == store_contents(clean)
