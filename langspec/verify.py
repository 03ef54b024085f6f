"""`langspec verify`: every task directory against its manifest and the database, and the repair.

What can be wrong: a task directory whose files disagree with its manifest (missing, truncated,
changed: sizes and sha256 are compared), a complete task whose rows were never ingested, rows
whose task directory is gone, attempts left by dead processes, a database file that DuckDB cannot
open. Repair sets each broken result aside (the next run computes it again), ingests what is
complete, and never touches a good result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from langspec.compile import stage_tables
from store import artifacts, attempts
from store.errors import StoreError
from store.queries import internal
from store.connections import (DB_FILE, connect_read_only, damaged_database, database_dir, is_damage, quoted,
                               read_every_block)
from store.db import StoreWriter


@dataclass(frozen=True)
class Problem:
    kind: str  # damaged | not ingested | rows without a result | leftover attempt | damaged database | not a task
    what: str  # a task's name and key, or a path
    detail: str
    repair: str  # what --repair does about it


def verify_store(root: Path, repair: bool = False) -> list[Problem]:
    """The problems found in the store; with repair=True, each is also repaired."""
    root = Path(root)
    if not (root / DB_FILE).is_file() and not (root / "tasks").is_dir():
        raise StoreError(f"no store at {root}: run `langspec run SPEC --store {quoted(root)}` first")
    problems = []
    try:
        with connect_read_only(root) as con:
            read_every_block(con)
            ingested = dict(internal(con, "ingested_tasks"))
    except (StoreError, duckdb.Error) as err:
        if isinstance(err, duckdb.Error) and is_damage(err):
            err = damaged_database(root, err)
        elif "damaged" not in str(err):
            raise
        problems.append(Problem("damaged database", str(database_dir(root) / DB_FILE), str(err).split(";")[0],
                                "set aside as langspec.duckdb.damaged-<time>; a new one is built from the task directories"))
        ingested = {}
    complete, damaged = {}, {}
    for directory in sorted((root / "tasks").glob("[!.]*")):
        key = directory.name
        if not artifacts.is_task_key(key):  # never read, never bound into SQL: planted, or put there by hand
            problems.append(Problem("not a task", str(directory.relative_to(root)), "its name is not a task key (64 hexadecimal digits)",
                                    "left alone: no run reads it; look at it and remove it by hand"))
            continue
        manifest = artifacts.read_manifest(root, key) or {}
        stage = manifest.get("stage")
        tables = _tables(stage)
        problem = artifacts.check_complete(root, key, tables or (), hashes=True)
        name = manifest.get("name", ingested.get(key, "?"))
        if problem is None and tables is not None:
            complete[key] = (stage, name, tables)
            if key not in ingested:
                problems.append(Problem("not ingested", f"{name} ({key[:12]})", "complete, but its rows are not in the database",
                                        "ingested"))
        else:
            damaged[key] = name
            problems.append(Problem("damaged", f"{name} ({key[:12]})", problem or f"unknown stage {stage!r}",
                                    "set aside and its rows deleted; the next run computes it again"))
    for key, name in sorted(ingested.items()):
        if key not in complete and key not in damaged:
            problems.append(Problem("rows without a result", f"{name} ({key[:12]})", "its task directory is gone",
                                    "rows deleted; the next run computes it again"))
    problems += [Problem("leftover attempt", str(attempt.relative_to(root)), "its process is gone", "deleted")
                 for attempt in _leftovers(root, complete)]
    if repair and problems:
        _repair(root, problems, complete, damaged, ingested)
    return problems


def _leftovers(root: Path, complete: dict) -> list[Path]:
    """Attempts of dead processes that no run will resume (the ones clean_attempts removes)."""
    return [attempt for attempt in sorted(artifacts.attempts_dir(root).glob("*"))
            if attempts.is_dead(attempt) and (attempt.name.split(".", 1)[0] in complete
                                                or not (attempt / artifacts.RESUME_FILE).is_file())]


def _tables(stage: str | None) -> tuple[str, ...] | None:
    try:
        return stage_tables(stage) if stage else None
    except KeyError:  # a manifest naming no stage of this langspec
        return None


def _repair(root: Path, problems: list[Problem], complete: dict, damaged: dict, ingested: dict) -> None:
    if any(problem.kind == "damaged database" for problem in problems):
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        where = database_dir(root)  # the store's own directory, or the driver's disk (`run --db-dir`)
        os.rename(where / DB_FILE, where / f"{DB_FILE}.damaged-{stamp}")
        wal = where / f"{DB_FILE}.wal"
        if wal.exists():
            os.rename(wal, where / f"{DB_FILE}.wal.damaged-{stamp}")
        ingested = {}
    with StoreWriter(root) as writer:
        for key in damaged:
            artifacts.discard(root, key)
            writer.forget(key)
        for key in set(ingested) - set(complete) - set(damaged):
            writer.forget(key)
        for key, (stage, name, tables) in complete.items():
            if key not in ingested:
                writer.ingest(key, stage, name, tables)
        attempts.clean_attempts(root, lambda key: key in complete)
