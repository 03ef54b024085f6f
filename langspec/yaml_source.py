"""A spec's YAML as langspec reads it: a file read without surprises (a regular UTF-8 file of bounded
size, never a device or a FIFO), parsed with bounds on its depth and its entries (aliases included),
and every value's `file:line:col`, so that each problem is reported where it was written."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any, Iterator

import yaml

from langspec.errors import SpecError, SpecProblem

Loc = tuple[str | int, ...]

# Bounds that keep a spec file from being turned against its user. A real spec has a few hundred
# entries nested a few levels deep.
MAX_SPEC_NODES = 10_000  # YAML aliases repeat what an anchor defines: nine nested levels of ten make 1e9
MAX_SPEC_DEPTH = 50  # PyYAML nests nodes by recursion, and runs out of Python's stack at a few hundred levels
MAX_SPEC_BYTES = 1_000_000  # a spec is a few KB: a log or a device named by `extends:` is not read whole


def read_file(path: Path, where: str, field: str, missing: str) -> str:
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


def parse_yaml(text: str, where: str) -> tuple[dict, dict[Loc, str]]:
    """The data of the spec file's YAML `text`, and the position of each of its keys and list items."""
    with _reading(text, where) as loader:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([SpecProblem(where, "", "the spec is empty; start from specs/demo.yaml")])
        if not isinstance(node, yaml.MappingNode):
            message = "a spec is a mapping of sections (name:, data:, model:, ...)"
            raise SpecError([SpecProblem(_at(where, node), "", message)])
        return _construct(loader, node, where)


def parse_value(text: str, where: str, loc: Loc) -> Any:
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
    return SpecError([SpecProblem(at, dotted(loc[:1]), message)])


def _too_many(at: str, loc: Loc) -> SpecError:
    message = (f"the spec expands to more than {MAX_SPEC_NODES} entries; YAML aliases *name repeat what an anchor "
               "&name defines: write the values out or use fewer aliases")
    return SpecError([SpecProblem(at, dotted(loc), message)])


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
                problems.append(SpecProblem(_at(where, key_node), dotted(loc), "a key is a name, not a list or mapping"))
                continue
            key = key_node.value
            if key_node.tag not in (_NAME, _MERGE):  # `1:`, `on:` or `null:` read as a number, true, or null
                kind = key_node.tag.rsplit(":", 1)[-1]
                message = f"{key} is read as {kind}, not as a name; a key is a field name (quote it to mean the name)"
                problems.append(SpecProblem(_at(where, key_node), dotted(loc + (key,)), message))
                continue
            if key in seen:
                problems.append(SpecProblem(_at(where, key_node), dotted(loc + (key,)), "key given twice; keep one"))
                continue
            seen.add(key)
            positions[loc + (key,)] = _at(where, key_node)
            _record_positions(value_node, loc + (key,), where, positions, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            positions[loc + (index,)] = _at(where, item)
            _record_positions(item, loc + (index,), where, positions, problems)


def dotted(loc: Loc) -> str:
    """A location as the field path a user writes: finetune.lr, seeds[0]."""
    return ".".join(f"[{part}]" if isinstance(part, int) else part for part in loc).replace(".[", "[")
