"""Load a YAML spec with line numbers, apply `extends:`, `--set` overrides and `sweep:`, validate it all.

Every problem is reported at once, located as `file:line:col` (or `--set path`), with the field path,
the bad value and what is allowed.

`extends: base.yaml` (a path relative to the spec) starts from another YAML file: mappings merge
key by key, the spec's own values (scalars, lists) replace the base's, and the merged result is
validated as one spec. A base may extend another base; an error points into the file that wrote
the value.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from langspec.errors import SpecError, SpecProblem
from langspec.spec import Spec
from langspec.yaml_source import (MAX_SPEC_BYTES, MAX_SPEC_DEPTH, MAX_SPEC_NODES, Loc, dotted, parse_value,  # noqa: F401
                                  parse_yaml, read_file)
from store.points import primary_assignments

# A bound that keeps a spec from being turned against its user (those of its YAML: langspec.yaml_source):
# a real spec sweeps tens of points.
MAX_SWEEP_POINTS = 1_000  # each point is validated (about 1 ms) and planned as its own set of tasks


@dataclass(frozen=True)
class SweepPoint:
    """One combination of swept values and the spec it gives."""

    assignments: dict[str, Any]  # {"prune.threshold": 0.9}
    spec: Spec


@dataclass(frozen=True)
class LoadedSpec:
    path: Path
    text: str  # the YAML as written, for provenance
    overrides: tuple[str, ...]
    spec: Spec  # the spec with sweep values left unapplied
    points: tuple[SweepPoint, ...]  # one per sweep combination (one when there is no sweep)

    @property
    def spec_hash(self) -> str:
        canonical = "\n".join(p.spec.model_dump_json() for p in self.points)
        return hashlib.sha256(canonical.encode()).hexdigest()


def load_spec(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, allow_large_sweep: bool = False
) -> LoadedSpec:
    """The spec at `path`; `allow_large_sweep` lets a sweep have more than MAX_SWEEP_POINTS points."""
    path = Path(path)
    text = read_file(path, str(path), "", _no_such_spec(path))
    data, positions = _read_extended(path, text, ())
    problems: list[SpecProblem] = []
    for override in overrides:  # a bad override is left out, and the spec is checked with the others
        problems += _apply_override(data, override, positions)

    spec = _validate(data, positions, str(path), problems)
    points = _expand_sweep(data, positions, str(path), problems, allow_large_sweep) if spec is not None else ()
    if problems:
        raise SpecError(problems)
    assert spec is not None
    return LoadedSpec(path, text, tuple(overrides), spec, tuple(points))


# --- YAML with positions ----------------------------------------------------------------------


def _no_such_spec(path: Path) -> str:
    """What to say of a spec path that names no file: where it was looked for, and the specs that are there."""
    folder = next((f for f in (path.parent, Path("specs"), Path(".")) if f.is_dir() and any(f.glob("*.yaml"))), None)
    near = f"; the specs in {folder}/: {', '.join(sorted(found.name for found in folder.glob('*.yaml'))[:8])}" if folder else ""
    return f"spec file not found (the current directory is {Path.cwd()}){near}"


def _read_extended(path: Path, text: str, chain: tuple[Path, ...]) -> tuple[dict, dict[Loc, str]]:
    """The YAML `text` of `path` merged over the base it `extends:` (recursively), with positions."""
    data, positions = parse_yaml(text, str(path))
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, positions
    where = positions.pop(("extends",))
    if not isinstance(base_name, str):
        raise SpecError([SpecProblem(where, "extends", "extends: takes the path of a base YAML file, e.g. base/paper.yaml")])
    base = path.parent / base_name
    base_text = read_file(base, where, "extends", f"base spec {base_name} not found (looked for {base.absolute()})")
    base = base.resolve()  # once it opened: resolve() raises on a NUL byte or a link loop
    if base in chain + (path.resolve(),):
        raise SpecError([SpecProblem(where, "extends", f"{base_name} extends itself (through {' -> '.join(p.name for p in chain)})")])
    base_data, base_positions = _read_extended(base, base_text, chain + (path.resolve(),))
    for loc in list(base_positions):  # the spec's own scalars and lists replace the base's, positions too
        if any(loc[: len(own)] == own and not isinstance(_get(data, own), dict) for own in positions if own):
            del base_positions[loc]
    return _merge(base_data, data), {**base_positions, **positions}


def _merge(base: dict, own: dict) -> dict:
    merged = dict(base)
    for key, value in own.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _locate(loc: Loc, positions: dict[Loc, str]) -> str:
    """The position of the deepest part of `loc` that the YAML (or an override) wrote."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in positions:
            return positions[loc[:end]]
    return positions[()]


# --- field paths ------------------------------------------------------------------------------


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The Pydantic model inside an annotation such as `TinyModelSpec | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Spec
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        model = _model_in(model.model_fields[part].annotation)
    return model


def _check_field_path(dotted: str) -> str | None:
    """None if `dotted` names a spec field, else what is wrong with it (with a did-you-mean)."""
    parts = tuple(dotted.split("."))
    for depth, part in enumerate(parts):
        model = _model_at(parts[:depth])
        if model is None:
            return f"{'.'.join(parts[:depth])} has no fields below it"
        if part not in model.model_fields:
            return f"unknown field '{part}'{_did_you_mean(part, list(model.model_fields))}"
    return None


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} (allowed: {', '.join(choices)})"


# --- overrides and validation -----------------------------------------------------------------


def _apply_override(data: dict, override: str, positions: dict[Loc, str]) -> list[SpecProblem]:
    where = f"--set {override}"
    dotted, sep, raw = override.partition("=")
    dotted = dotted.strip()
    if not sep or not dotted:
        return [SpecProblem(where, "", "an override is path=value, e.g. --set finetune.epochs=2")]
    wrong = _check_field_path(dotted)
    if wrong:
        return [SpecProblem(where, dotted, wrong)]
    parts = tuple(dotted.split("."))
    try:
        value = parse_value(raw, f"--set {dotted}", parts)
    except SpecError as error:
        return error.problems
    _set_path(data, dotted, value)
    for loc in [key for key in positions if key[: len(parts)] == parts]:
        del positions[loc]
    positions[parts] = f"--set {dotted}"
    return []


def _set_path(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[leaf] = value


def _validate(data: dict, positions: dict[Loc, str], where: str, problems: list, prefix: str = "") -> Spec | None:
    try:
        return Spec.model_validate(data)
    except ValidationError as err:
        for error in err.errors(include_url=False):
            loc = tuple(error["loc"])
            problems.append(SpecProblem(_locate(loc, positions), prefix + dotted(loc), _explain(error, loc)))
        return None


def _explain(error: dict, loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        choices = list(model.model_fields) if model else []
        return f"unknown key '{loc[-1]}'{_did_you_mean(str(loc[-1]), choices)}"
    if kind == "missing":
        model = _model_at(loc[:-1])
        field = model.model_fields.get(str(loc[-1])) if model else None
        about = f" ({field.description})" if field and field.description else ""
        return f"required field is missing{about}"
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind.startswith(("value_error", "assertion_error")) or isinstance(error.get("input"), dict):
        return message
    if kind == "list_type" and isinstance(error.get("input"), str | int | float):  # seeds: 0
        return f"{message} (got {error['input']!r}); write a list, e.g. [{error['input']!r}]"
    return f"{message} (got {error['input']!r})"


def _expand_sweep(
    data: dict, positions: dict[Loc, str], where: str, problems: list, allow_large: bool
) -> list[SweepPoint]:
    sweep: dict[str, list] = data.get("sweep") or {}
    found_before = len(problems)
    for dotted in sweep:
        wrong = "seeds are swept with the top-level `seeds:` list" if dotted in ("seeds", "sweep") else None
        if dotted.split(".")[0] == "analysis":  # the analyses' settings are query parameters, not tasks
            wrong = "analysis settings change no task: set them when analysing, e.g. `langspec analyze NAME --param k=20`"
        wrong = wrong or _check_field_path(dotted)
        if wrong:
            problems.append(SpecProblem(_locate(("sweep", dotted), positions), f"sweep.{dotted}", wrong))
    chosen = (data.get("analysis") or {}).get("primary_point")
    if chosen and len(problems) == found_before:  # checked against a sweep whose fields are sound
        try:
            primary_assignments(sweep, chosen)
        except ValueError as error:
            problems.append(SpecProblem(_locate(("analysis", "primary_point"), positions), "analysis.primary_point", str(error)))
    if len(problems) > found_before:
        return []
    count = math.prod(len(values) for values in sweep.values())
    if count > MAX_SWEEP_POINTS and not allow_large:
        problems.append(SpecProblem(_locate(("sweep",), positions), "sweep", f"the sweep has {count} points, more than "
                                    f"{MAX_SWEEP_POINTS}; sweep fewer values, or pass --yes to run it anyway"))
        return []
    points = []
    for values in itertools.product(*sweep.values()):
        assignments = dict(zip(sweep, values))
        point_data = copy.deepcopy(data)
        point_data["sweep"] = {}
        for dotted, value in assignments.items():
            _set_path(point_data, dotted, value)
        label = ",".join(f"{k}={v}" for k, v in assignments.items())
        spec = _validate(point_data, _sweep_positions(positions, assignments), where, problems, prefix=f"[sweep {label}] " if label else "")
        if spec is not None:
            points.append(SweepPoint(assignments, spec))
    return points


def _sweep_positions(positions: dict[Loc, str], assignments: dict[str, Any]) -> dict[Loc, str]:
    """Errors in a swept value point at the value in the `sweep:` list."""
    located = dict(positions)
    for dotted in assignments:
        located[tuple(dotted.split("."))] = _locate(("sweep", dotted), positions)
    return located
