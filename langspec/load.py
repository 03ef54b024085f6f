"""Load a YAML spec with line numbers, apply `extends:`, `--set` overrides and `sweep:`, validate it all.

Every problem is reported at once, located as `file:line:col` (or `--set path`), with the field path,
the bad value and what is allowed.

`extends: base.yaml` (a path relative to the spec) starts from another YAML file: mappings merge
key by key, the spec's own values (scalars, lists) replace the base's, and the merged result is
validated as one spec. A base may extend another base; an error points into the file that wrote
the value.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import itertools
import math
import os
import stat
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic import BaseModel, ValidationError

from langspec.errors import SpecError, SpecProblem
from langspec.spec import Spec

Loc = tuple[str | int, ...]

# Bounds that keep a spec file from being turned against its user. A real spec has a few hundred
# entries nested a few levels deep, and a sweep of tens of points.
MAX_SPEC_NODES = 10_000  # YAML aliases repeat what an anchor defines: nine nested levels of ten make 1e9
MAX_SPEC_DEPTH = 50  # PyYAML nests nodes by recursion, and runs out of Python's stack at a few hundred levels
MAX_SWEEP_POINTS = 1_000  # each point is validated (about 1 ms) and planned as its own set of tasks
MAX_SPEC_BYTES = 1_000_000  # a spec is a few KB: a log or a device named by `extends:` is not read whole


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
    text = _read_file(path, str(path), "", _no_such_spec(path))
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


def _read_file(path: Path, where: str, field: str, missing: str) -> str:
    """The text of the spec or base file `path`. A problem is located at `where`, `field` (the file
    itself, or the `extends:` line that names it); `missing` says what to do when there is no such file."""

    def problem(message: str) -> SpecError:
        return SpecError([SpecProblem(where, field, message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # O_NONBLOCK: a FIFO opens without waiting
    except FileNotFoundError:
        raise problem(missing) from None
    except (OSError, ValueError) as err:  # no permission, a link loop, a name too long, a NUL byte in the name
        reason = err.strerror if isinstance(err, OSError) else err
        raise problem(f"cannot open {path} ({reason}); give the path of a YAML file you can read") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # a directory, a FIFO, a device such as /dev/zero
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise problem(f"{path} is {kind}; give the path of a YAML file")
        with open(fd, "rb", closefd=False) as file:
            raw = file.read(MAX_SPEC_BYTES + 1)
    except OSError as err:  # /proc/self/mem opens, then fails to read
        raise problem(f"cannot read {path} ({err.strerror}); give the path of a YAML file") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_SPEC_BYTES:
        raise problem(f"{path} is larger than {MAX_SPEC_BYTES:,} bytes; a spec is a few KB of YAML")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line, column = raw.count(b"\n", 0, err.start) + 1, err.start - raw.rfind(b"\n", 0, err.start)
        message = f"byte 0x{raw[err.start]:02x} is not UTF-8 text; save the file as UTF-8, or delete the byte"
        raise SpecError([SpecProblem(f"{path}:{line}:{column}", "", message)]) from None


def _read_extended(path: Path, text: str, chain: tuple[Path, ...]) -> tuple[dict, dict[Loc, str]]:
    """The YAML `text` of `path` merged over the base it `extends:` (recursively), with positions."""
    data, positions = _parse_yaml(text, str(path))
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, positions
    where = positions.pop(("extends",))
    if not isinstance(base_name, str):
        raise SpecError([SpecProblem(where, "extends", "extends: takes the path of a base YAML file, e.g. base/paper.yaml")])
    base = path.parent / base_name
    base_text = _read_file(base, where, "extends", f"base spec {base_name} not found (looked for {base.absolute()})")
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


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, stopping at MAX_SPEC_DEPTH levels: its composer recurses once a level
    (and its scanner slows down with the square of the depth) before Python's stack runs out."""

    def __init__(self, text: str, where: str, loc: Loc):
        super().__init__(text)
        self.where = where
        self.loc = loc  # of the top node in the spec: () for a file, the field of an override
        self.levels = 0  # above the node being composed; the top mapping has none

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.levels > MAX_SPEC_DEPTH:
            raise _too_deep(_at(self.where, self.peek_event()), self.loc)
        self.levels += 1
        node = super().compose_node(parent, index)
        self.levels -= 1
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        # What Python raises on a scalar its tag cannot hold: !!int abc, !!bool maybe, 2001-13-45,
        # an integer of more than 4,300 digits
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as err:
            kind, value = node.tag.rsplit(":", 1)[-1], str(node.value)
            shown = value if len(value) <= 40 else f"{value[:40]}... ({len(value)} characters)"
            reason = str(err).split(";")[0]  # not Python's advice to raise its limit on digits
            problem = f"cannot read {shown} as {kind} ({reason}); write a valid {kind}, or quote it to keep it as text"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


@contextlib.contextmanager
def _reading(text: str, where: str, loc: Loc = ()) -> Iterator[_Loader]:
    """A loader of `text`; every YAML error, the reader's refusal of a control character included,
    becomes a SpecError located in `where`."""
    try:
        loader = _Loader(text, where, loc)  # the reader checks every character at once
    except yaml.YAMLError as err:
        raise _yaml_problem(err, text, where) from None
    try:
        yield loader
    except yaml.YAMLError as err:
        raise _yaml_problem(err, text, where) from None
    finally:
        loader.dispose()


def _yaml_problem(err: yaml.YAMLError, text: str, where: str) -> SpecError:
    if isinstance(err, yaml.reader.ReaderError):  # a character YAML does not allow: NUL, ESC, other controls
        line = text.count("\n", 0, err.position) + 1
        column = err.position - text.rfind("\n", 0, err.position)
        message = (f"character U+{err.character:04X} is not allowed in YAML; delete it, "
                   f"or write it as \"\\u{err.character:04x}\" inside double quotes")
        return SpecError([SpecProblem(f"{where}:{line}:{column}", "", message)])
    mark = getattr(err, "problem_mark", None)
    at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
    problem = getattr(err, "problem", None) or str(err)
    return SpecError([SpecProblem(at, "", f"invalid YAML: {problem}")])


def _parse_yaml(text: str, where: str) -> tuple[dict, dict[Loc, str]]:
    """The data of the spec file's YAML `text`, and the position of each of its keys and list items."""
    with _reading(text, where) as loader:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([SpecProblem(where, "", "the spec is empty; start from specs/demo.yaml")])
        if not isinstance(node, yaml.MappingNode):
            message = "a spec is a mapping of sections (name:, data:, model:, ...)"
            raise SpecError([SpecProblem(_at(where, node), "", message)])
        return _construct(loader, node, where)


def _parse_value(text: str, where: str, loc: Loc) -> Any:
    """The value of the YAML `text` of an override of the field at `loc`, within the bounds of a spec file."""
    with _reading(text, where, loc) as loader:
        node = loader.get_single_node()
        return None if node is None else _construct(loader, node, where, loc)[0]


def _construct(loader: _Loader, node: yaml.Node, where: str, loc: Loc = ()) -> tuple[Any, dict[Loc, str]]:
    """The value of `node` (at `loc` in the spec) and the positions under it. The nodes are walked
    (bounded by MAX_SPEC_NODES and MAX_SPEC_DEPTH) before they are turned into Python values, so
    that no spec expands past those bounds in memory."""
    positions: dict[Loc, str] = {loc: _at(where, node)}
    problems: list[SpecProblem] = []
    _record_positions(node, loc, where, positions, problems)
    if problems:
        raise SpecError(problems)
    return loader.construct_document(node), positions


def _at(where: str, node: yaml.Node | yaml.Event) -> str:
    return f"{where}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _too_deep(at: str, loc: Loc) -> SpecError:
    message = (f"the spec is nested more than {MAX_SPEC_DEPTH} levels deep; a spec's sections nest a few levels "
               "(an alias *name inside its own anchor &name nests without end)")
    return SpecError([SpecProblem(at, _dotted(loc[:1]), message)])


def _too_many(at: str, loc: Loc) -> SpecError:
    message = (f"the spec expands to more than {MAX_SPEC_NODES} entries; YAML aliases *name repeat what an anchor "
               "&name defines: write the values out or use fewer aliases")
    return SpecError([SpecProblem(at, _dotted(loc), message)])


_NAME, _MERGE = "tag:yaml.org,2002:str", "tag:yaml.org,2002:merge"  # the tags of a key: a name, or `<<`


def _record_positions(node: yaml.Node, loc: Loc, where: str, positions: dict, problems: list) -> None:
    """Record where each node under `node` is written, walking an alias each time it appears, as
    loading expands it; stop at MAX_SPEC_DEPTH levels or MAX_SPEC_NODES nodes."""
    if len(loc) > MAX_SPEC_DEPTH:
        raise _too_deep(_at(where, node), loc)
    if len(positions) > MAX_SPEC_NODES:  # each node walked has a position of its own (a repeated key is not walked)
        raise _too_many(_at(where, node), loc)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(SpecProblem(_at(where, key_node), _dotted(loc), "a key is a name, not a list or mapping"))
                continue
            key = key_node.value
            if key_node.tag not in (_NAME, _MERGE):  # `1:`, `on:` or `null:` read as a number, true, or null
                kind = key_node.tag.rsplit(":", 1)[-1]
                message = f"{key} is read as {kind}, not as a name; a key is a field name (quote it to mean the name)"
                problems.append(SpecProblem(_at(where, key_node), _dotted(loc + (key,)), message))
                continue
            if key in seen:
                problems.append(SpecProblem(_at(where, key_node), _dotted(loc + (key,)), "key given twice; keep one"))
                continue
            seen.add(key)
            positions[loc + (key,)] = _at(where, key_node)
            _record_positions(value_node, loc + (key,), where, positions, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            positions[loc + (index,)] = _at(where, item)
            _record_positions(item, loc + (index,), where, positions, problems)


def _locate(loc: Loc, positions: dict[Loc, str]) -> str:
    """The position of the deepest part of `loc` that the YAML (or an override) wrote."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in positions:
            return positions[loc[:end]]
    return positions[()]


def _dotted(loc: Loc) -> str:
    return ".".join(f"[{part}]" if isinstance(part, int) else part for part in loc).replace(".[", "[")


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
        value = _parse_value(raw, f"--set {dotted}", parts)
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
            problems.append(SpecProblem(_locate(loc, positions), prefix + _dotted(loc), _explain(error, loc)))
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
