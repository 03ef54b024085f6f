"""What `langspec run` prints when its run ends: what happened to the tasks (with the command that
shows a failed one's traceback), the test accuracy per language, where the results are, and each
question's verdict."""

from __future__ import annotations

import shlex
from pathlib import Path

from langspec.output import DEFAULT_STORE, accuracy_table, literal, out, say


def print_run_summary(result, store: Path) -> None:
    from store.connections import DB_FILE, connect_read_only, database_dir
    from store.queries import internal, run_named, run_points

    counts: dict[str, int] = {}
    for record in result.records.values():
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    say(f"run {result.run_id} {result.status}: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))
    if result.status == "completed":
        say(f"this is run {result.run_id}: every `langspec run` adds a run, even when all is cached; analyze, report and "
            f"last_run() read the latest completed one unless told another (--param run_id=N, --run N)")
    for record in result.failed:
        first_line = (record.error or "").splitlines()[0] if record.error else "unknown error"
        out.print(f"[red]failed[/] {literal(record.name)}: {literal(first_line)}", highlight=False, soft_wrap=True)
        say(f"  traceback: {traceback_command(result.run_id, record.name, store)}")
    with connect_read_only(store) as con:
        points = {point: run_named(con, "final_accuracy", run_id=result.run_id, point=point, split="test").to_pylist()
                  for point in run_points(con, result.run_id)}
        answers = _findings(con, result, points)
        seeds = internal(con, "run_seeds", run_id=result.run_id)[0][0]
    for point, accuracy in points.items():
        if accuracy:
            say(f"test accuracy at the last epoch{', ' + point if point else ''} (mean over seeds):")
            out.print(accuracy_table(accuracy))
    say(f"results: {database_dir(store) / DB_FILE}")
    where = store_flag(store)
    say(f"next: langspec analyze{where}  (the study's analyses)  ·  langspec report{where}  (findings and figures)")
    for point, findings in answers.items():
        role = "" if not point or not findings else " (exploratory)" if findings[0].point["exploratory"] else " (the primary point)"
        say(f"findings{' at ' + point if point else ''}{role} (langspec report{where}{' --point ' + shlex.quote(point) if point else ''} for the numbers):")
        for finding in findings:
            why = f" ({finding.reasons[0]})" if finding.reasons and finding.verdict != "supported" else ""
            say(f"  {finding.question} {finding.title}: {finding.verdict}{why}")
    if answers and seeds == 1:
        say("  one seed gives no intervals, so no verdict can be `supported`: list two or more under `seeds:`")


def traceback_command(run_id: int, name: str, store: Path) -> str:
    """The command that prints a failed task's traceback, quoted for the shell and for SQL: a task's
    name holds sweep values, which may hold anything."""
    from store.queries import sql_literal

    sql = f"SELECT error FROM tasks WHERE run_id = {run_id} AND name = {sql_literal(name)}"
    return f"langspec query {shlex.quote(sql)}{store_flag(store)}"


def store_flag(store: Path) -> str:
    """` --store DIR` for a command the user is told to paste, quoted for the shell; none for the default."""
    return "" if store == DEFAULT_STORE else f" --store {shlex.quote(str(store))}"


def _findings(con, result, points: dict) -> dict:
    """Each sweep point's findings at the run's analysis.top_k (none for a run that did not complete)."""
    from langspec.science.findings import compute
    from store.queries import internal

    if result.status != "completed":
        return {}
    k = internal(con, "run_top_k", run_id=result.run_id)[0][0]
    return {point: compute(con, result.run_id, point, k) for point, accuracy in points.items() if accuracy}
