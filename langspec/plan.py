"""`langspec plan`: the task graph as a tree, with each task's key and why it will run or not, and
what the spec's seeds could detect, sized on a pilot run of the same spec in the store."""

from __future__ import annotations

import json
from pathlib import Path

from rich.tree import Tree

from langspec.compile import Task, TaskGraph, stage_tables
from langspec.load import LoadedSpec
from langspec.output import literal
from store import artifacts
from store.connections import connect_read_only
from store.queries import internal
from store.errors import StoreError


def explain(graph: TaskGraph, root: Path) -> dict[str, str]:
    """For each task key: 'cached', or 'will run: <why>'."""
    previous = _previous_params(root)
    reasons: dict[str, str] = {}
    for task in graph.tasks:
        problem = artifacts.check_complete(root, task.key, stage_tables(task.stage))
        if problem is None:
            reasons[task.key] = "cached"
            continue
        if problem != "no result":
            reasons[task.key] = f"will run: its result is damaged ({problem})"
            continue
        rerun_inputs = [graph[key].name for _, key in task.inputs if reasons[key] != "cached"]
        if rerun_inputs:
            reasons[task.key] = f"will run: input {rerun_inputs[0]} will run"
        elif task.name in previous:
            changes = changed_fields(previous[task.name], task.params.model_dump(mode="json"))
            why = ", ".join(changes[:3]) + (" ..." if len(changes) > 3 else "") if changes else "an input or the stage version changed (its own fields did not)"
            reasons[task.key] = f"will run: {why}"
        else:
            reasons[task.key] = "will run: no result yet"
    return reasons


def plan_tree(graph: TaskGraph, root: Path) -> Tree:
    reasons = explain(graph, root)
    on_gpu = [t.resources.num_gpus for t in graph.tasks if reasons[t.key] != "cached" and t.resources.num_gpus > 0]
    running = sum(reason != "cached" for reason in reasons.values())
    tree = Tree(f"[bold]{len(graph.tasks)} tasks[/]: {running} to run, {len(graph.tasks) - running} cached"
                + (f"; {len(on_gpu)} need a GPU ({max(on_gpu):g} each), as many run at once as the cluster has"
                   if on_gpu else ""))
    nodes: dict[str, Tree] = {}
    for task in graph.tasks:
        parent = nodes[_parent(task)] if task.inputs else tree
        nodes[task.key] = parent.add(_label(task, reasons[task.key], graph))
    return tree


def _parent(task: Task) -> str:
    """The input a task is drawn under: the model it starts from if it has one, else its last input."""
    roles = dict(task.inputs)
    return roles.get("sft") or roles.get("finetune") or task.inputs[-1][1]


def _label(task: Task, reason: str, graph: TaskGraph) -> str:
    style = "dim" if reason == "cached" else "yellow"
    resources = f" gpus={task.resources.num_gpus:g}" if task.resources.num_gpus else ""
    others = [role for role, key in task.inputs if key != _parent(task) and role != "data"]
    reads = f" [dim](also reads {literal(', '.join(others))})[/]" if others else ""
    return f"{literal(task.name)} [dim]{task.short_key}{resources}[/]{reads} [{style}]{literal(reason)}[/]"  # names hold sweep values


def changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted paths whose value differs, as 'path old -> new'."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b, path = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            changes += changed_fields(a, b, path + ".")
        elif a != b:
            changes.append(f"{path} {json.dumps(a)} -> {json.dumps(b)}")
    return changes


def _previous_params(root: Path) -> dict[str, dict]:
    """Params of each task name as last recorded in the store (empty if there is no store yet)."""
    try:
        con = connect_read_only(root)
    except StoreError:
        return {}
    with con:
        rows = internal(con, "previous_params")
    return {name: json.loads(params) for name, params in rows}


def pilot_power(loaded: LoadedSpec, root: Path) -> str:
    """What the spec's seeds could detect, question by question: the minimum detectable effect at
    80% power and alpha = 0.05 (Holm's strictest alpha in brackets), from the variance components of
    the last completed run of the same spec name in the store (its primary sweep point): the seeds'
    part shrinks with seeds, the test examples' part stays, so it assumes the pilot's test examples."""
    from langspec.science import findings, study  # numpy and the statistics: only when there is a pilot

    name, seeds = loaded.spec.name, len(loaded.spec.seeds)
    try:
        con = connect_read_only(root)
    except StoreError:
        con = None
    if con is None:
        return f"Power: no store at {literal(str(root))} holds a run of {literal(name)} to size detectable effects on."
    with con:
        run_id = internal(con, "last_completed_run_of", spec_name=name)[0][0]
        if run_id is None:
            return (f"Power: the store holds no completed run of {literal(name)}; a pilot run with 2 or more seeds lets "
                    "`plan` say what this spec's seeds could detect.")
        k = internal(con, "run_top_k", run_id=run_id)[0][0]
        point = study.primary_point(con, run_id)
        data = study.load(con, run_id, point, k)
    answers = findings.findings(data, power_seeds=(seeds,))
    pilot = len(data.seeds)
    lines = [f"Power, sized on run {run_id} of {literal(name)} ({pilot} seed{'s' * (pilot != 1)}"
             f"{f', point {literal(point)}' if point else ''}): the smallest effect each question detects 80% of the time at "
             "alpha = 0.05 (at Holm's strictest alpha in parentheses), with this spec's "
             f"{seeds} seed{'s' * (seeds != 1)} and with more; the test examples as in the pilot."]
    for finding in answers:
        table = finding.power.get("seeds")
        unit = f", {finding.power['unit']}" if finding.power.get("unit") else ""
        if not table:
            lines.append(f"  {finding.question}{unit}: {literal(finding.power['detectable'])}")
            continue
        sizes = [f"{count} seeds{_which(int(count), pilot, seeds)} {_size(values)}" for count, values in table.items()]
        lines.append(f"  {finding.question}{unit}: " + "; ".join(sizes))
    return "\n".join(lines)


def _size(values: list) -> str:
    """'>= 0.031 (0.052)': the minimum detectable effect at alpha and at Holm's strictest alpha; None
    is an effect beyond what the statistic can be."""
    low, high = (f"{v:.2g}" if v is not None else "nothing" for v in values)
    if low == "nothing":
        return "nothing detectable"
    return f">= {low}" + (f" ({high})" if high != low else "")


def _which(count: int, pilot: int, seeds: int) -> str:
    named = [name for name, n in (("the pilot", pilot), ("this spec", seeds)) if n == count]
    return f" ({' and '.join(named)})" if named else ""
