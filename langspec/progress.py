"""Progress of a run: a Rich display in the driver, fed by the tasks.

Ray tasks run in other processes (maybe other nodes), so a task writes its progress to a small file
under the store, `<root>/tasks/.progress/<key>.json`, which the driver polls; in-process tasks
report straight to the display.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from store import artifacts

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class ProgressFile:
    """A task's side: (done, total, note) written atomically, at most a few times a second."""

    def __init__(self, root: Path, key: str, interval: float = 0.3):
        self.path = artifacts.progress_path(root, key)
        self.interval = interval
        self._last = 0.0

    def write(self, done: int, total: int, note: str) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"done": done, "total": total, "note": note, "pid": os.getpid(), "host": socket.gethostname()}))
            os.replace(tmp, self.path)
        except OSError:  # progress is a hint: a full disk fails the task where it writes its results, with its own message
            tmp.unlink(missing_ok=True)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def read_progress(root: Path, key: str) -> str | None:
    """A running task's progress as `langspec status` shows it ("2/3 checkpoint 3: 100 x 1000 scores"; "" when
    it has only started), None when it is not running."""
    try:
        state = json.loads(artifacts.progress_path(root, key).read_text())
    except (OSError, ValueError):
        return None
    if not state.get("total"):
        return "" if state.get("note") == "started" else state.get("note", "")
    return f"{state['done']}/{state['total']} {state.get('note', '')}".strip()


def shown(text: str) -> str:
    """A task's name or note as the display prints it: never a terminal control nor Rich markup (a name
    holds sweep values, a note comes from a file under the store)."""
    from langspec.output import literal  # here, by the driver alone: a worker imports this module for ProgressFile

    return literal(str(text))


class RunDisplay:
    """The driver's side: one bar for the whole run and one per running task."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._bars: dict[str, TaskID] = {}
        self._names: dict[str, str] = {}

    def start(self, graph, done: int) -> None:
        if self.quiet:
            return
        # imported here, by the driver alone: `langspec status` reads the progress files without it
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}", justify="left"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=self.console, transient=False,
        )
        self._progress.start()
        self._overall = self._progress.add_task("[bold]tasks", total=len(graph.tasks), completed=done, note=f"{done} cached")

    def begin(self, task) -> None:
        self._names[task.key] = task.name
        if self._progress:
            self._bars[task.key] = self._progress.add_task(f"  {shown(task.name)}", total=None, note="starting")

    def reporter(self, key: str):
        def report(done: int, total: int, note: str) -> None:
            if self._progress and key in self._bars:
                self._progress.update(self._bars[key], completed=done, total=total, note=shown(note))

        return report

    def poll_files(self, root: Path) -> None:
        if not self._progress:
            return
        for key, bar in self._bars.items():
            path = artifacts.progress_path(root, key)
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            self._progress.update(bar, completed=state["done"], total=state["total"], note=shown(state["note"]))

    def note(self, text: str) -> None:
        """A line above the bars (a damaged result, a task waiting for resources)."""
        if not self.quiet:
            (self._progress.console if self._progress else self.console).print(f"[yellow]note:[/] {shown(text)}", highlight=False, soft_wrap=True)

    def finish(self, task, outcome: str, error: str | None = None) -> None:
        if not self._progress:
            return
        bar = self._bars.pop(task.key, None)
        if bar is not None:
            self._progress.remove_task(bar)
        style = {"ran": "green", "failed": "red", "skipped": "yellow"}.get(outcome, "")
        detail = " (its error is in the summary at the end)" if error else ""  # said once, not twice
        self._progress.console.print(f"[{style}]{outcome:>7}[/] {shown(task.name + detail)}", highlight=False, soft_wrap=True)
        self._progress.advance(self._overall)

    def stop(self) -> None:
        if self._progress:
            self._progress.stop()
            self._progress = None
