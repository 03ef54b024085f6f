"""Sweep points' names, as the store's `points` table holds them, and which point a spec calls primary.

Pure functions of a spec's `sweep:` and `analysis.primary_point`: the compiler names its points with
them, and the findings read a run's spec back from the store to tell its primary point from the rest.
"""

from __future__ import annotations


def point_label(assignments: dict[str, object]) -> str:
    """path=value pairs joined by commas: a sweep point's name ("prune.threshold=0.9,finetune.epochs=3";
    "" for no sweep) and what a task name has in brackets ("seed=0,language=ka"). A yes/no value is
    spelled as in the spec and --set (`data.shuffle_languages=false`), not as Python prints it."""
    return ",".join(f"{path}={str(value).lower() if isinstance(value, bool) else value}" for path, value in assignments.items())


def primary_assignments(sweep: dict[str, list], chosen: dict[str, object] | None) -> dict[str, object]:
    """The swept values of the primary point: `chosen`'s (analysis.primary_point), each taken as the
    sweep list's own element equal to it (so 1 and 1.0 name one point), and the first value of every
    swept field it leaves out. Raises ValueError naming a field that is not swept or a value not in its list."""
    chosen = chosen or {}
    unknown = [path for path in chosen if path not in sweep]
    if unknown:
        swept = ", ".join(sweep) or "none"
        raise ValueError(f"{', '.join(unknown)} is not swept (the swept fields: {swept}); name a point of the sweep")
    assignments = {}
    for path, values in sweep.items():
        if path not in chosen:
            assignments[path] = values[0]
            continue
        wanted = chosen[path]  # True == 1 in Python; a flag and a number are different points
        matching = [v for v in values if v == wanted and isinstance(v, bool) == isinstance(wanted, bool)]
        if not matching:
            raise ValueError(f"{path}: {wanted!r} is not one of its swept values {values}")
        assignments[path] = matching[0]
    return assignments
