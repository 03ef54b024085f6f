"""Specs and overrides cannot be turned against their user (issue 37, item 6): every problem in
loading a spec, a base file or a `--set` is exit 2 with its file:line and never a traceback;
`--set` and `--param` values have the bounds of a file; every number is finite and every count
and size has an upper bound. (test_load.py has the bounds of a spec file itself.)"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from langspec.cli import app
from langspec.errors import SpecError
from langspec.load import MAX_SPEC_DEPTH, MAX_SPEC_NODES, load_spec
from langspec.spec import Spec
from store.errors import QueryError
from store.queries import parse_params

GOOD = "name: t\nmodel:\n  tiny: {layers: 2}\n"
BASE = "model:\n  tiny: {layers: 2}\n"


def cli(*args):
    """The command's exit code and output; an exception (a traceback) is caught, not raised."""
    done = CliRunner().invoke(app, [str(a) for a in args])
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        return 1, f"Traceback: {type(done.exception).__name__}: {done.exception}"
    return done.exit_code, done.output


def refused(*args) -> str:
    """The output of a command that must refuse its input: exit 2, no traceback."""
    code, output = cli(*args)
    assert code == 2 and "Traceback" not in output, (code, output[-2000:])
    return output


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# --- what a spec or base file holds ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
@pytest.mark.parametrize("character", [b"\x00", b"\x01", b"\x1b"])
def test_a_control_character_in_a_spec_is_exit_2_at_its_line(tmp_path, command, character):
    spec = write(tmp_path / "spec.yaml", b"name: t\nmodel: {tiny: {layers: 2}}\nfinetune: {epochs: 2" + character + b"}\n")
    output = refused(command, spec, *(("--store", tmp_path / "store") if command != "validate" else ()))
    assert f"{spec}:3:21: character U+{character[0]:04X} is not allowed in YAML" in output
    assert character.decode() not in output and not (tmp_path / "store").exists()


def test_a_control_character_in_a_base_file_is_exit_2_at_its_line(tmp_path):
    write(tmp_path / "base.yaml", b"model:\n  tiny: {layers: 2}\n\x00\n")
    spec = write(tmp_path / "spec.yaml", b"extends: base.yaml\nname: t\n")
    assert f"{tmp_path / 'base.yaml'}:3:1: character U+0000 is not allowed in YAML" in refused("validate", spec)


def test_extends_proc_self_environ_is_exit_2_at_the_first_nul(tmp_path):
    spec = write(tmp_path / "spec.yaml", b"extends: /proc/self/environ\nname: t\n")
    output = refused("validate", spec)
    assert "/environ:1:" in output and "character U+0000 is not allowed in YAML" in output


def test_a_spec_or_base_that_is_not_utf8_is_exit_2_at_its_line(tmp_path):
    spec = write(tmp_path / "spec.yaml", b"name: t\nmodel: {tiny: {layers: 2}}\ndata: {languages: [\xff]}\n")
    assert f"{spec}:3:20: byte 0xff is not UTF-8 text" in refused("validate", spec)
    write(tmp_path / "latin1.yaml", b"model: {tiny: {layers: 2}}\n# caf\xe9\n")
    child = write(tmp_path / "child.yaml", b"extends: latin1.yaml\nname: t\n")
    assert f"{tmp_path / 'latin1.yaml'}:2:6: byte 0xe9 is not UTF-8 text" in refused("validate", child)


@pytest.mark.parametrize("target, why", [
    ("/proc/self/mem", "cannot read /proc/self/mem (Input/output error)"),  # a regular file that fails to read
    ("loop.yaml", "(Too many levels of symbolic links)"),
    ('"a\\0b.yaml"', "(embedded null byte)"),
    ("x" * 5000, "(File name too long)"),
])
def test_extends_a_file_that_cannot_be_read_is_exit_2_at_the_extends_line(tmp_path, target, why):
    os.symlink("loop.yaml", tmp_path / "loop.yaml")
    spec = write(tmp_path / "spec.yaml", f"name: t\nextends: {target}\n".encode())
    output = refused("validate", spec)
    assert f"{spec}:2:1: extends: " in output and why in output


def test_extends_a_directory_fifo_or_device_is_refused_without_reading_it(tmp_path):
    (tmp_path / "base").mkdir()
    os.mkfifo(tmp_path / "fifo.yaml")  # opened without O_NONBLOCK, it waits for a writer forever
    for target, kind in (("base", "a directory"), ("fifo.yaml", "not a regular file"), ("/dev/zero", "not a regular file")):
        spec = write(tmp_path / "spec.yaml", f"name: t\nextends: {target}\n".encode())
        output = refused("validate", spec)
        assert f"{spec}:2:1: extends: " in output and f"is {kind}; give the path of a YAML file" in output
    assert f"{tmp_path / 'base'} is a directory" in refused("validate", tmp_path / "base")


def test_a_spec_larger_than_the_bound_is_not_read_whole(tmp_path):
    from langspec.load import MAX_SPEC_BYTES

    big = write(tmp_path / "big.yaml", b"#" * (MAX_SPEC_BYTES + 1))
    spec = write(tmp_path / "spec.yaml", b"extends: big.yaml\nname: t\n")
    assert f"{spec}:1:1: extends: {big} is larger than {MAX_SPEC_BYTES:,} bytes" in refused("validate", spec)


@pytest.mark.parametrize("value, why", [
    ("!!int abc", "cannot read abc as int"),
    ("!!bool maybe", "cannot read maybe as bool"),
    ("!!timestamp soon", "cannot read soon as timestamp"),
    ("2001-13-45", "cannot read 2001-13-45 as timestamp (month must be in 1..12)"),
    ("9" * 5000, "(Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits)"),
])
def test_a_scalar_its_tag_cannot_hold_is_exit_2_at_its_line(tmp_path, value, why):
    spec = write(tmp_path / "spec.yaml", f"{GOOD}data: {{seed: {value}}}\n".encode())
    output = refused("validate", spec)
    assert f"{spec}:4:14: invalid YAML: " in output and why in output


def test_a_key_yaml_reads_as_a_boolean_or_number_is_refused_at_its_line(tmp_path):
    write(tmp_path / "base.yaml", f"{BASE}data: {{on: 1}}\n".encode())  # `on:` is true in YAML 1.1
    spec = write(tmp_path / "spec.yaml", b"extends: base.yaml\nname: t\ndata: {on: 2}\n1: x\n")
    output = refused("validate", spec)
    assert f"{spec}:3:8: data.on: on is read as bool, not as a name; a key is a field name (quote it to mean the name)" in output
    assert f"{spec}:4:1: 1: 1 is read as int, not as a name" in output


# --- --set and --param ------------------------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    """A YAML list of `levels` nested lists of ten, each repeating the one before: 10**levels entries."""
    value = "&a0 [x, x, x, x, x, x, x, x, x, x]"
    for level in range(1, levels):
        value = f"[{value}, &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]]"
    return value


@pytest.mark.parametrize("value, why", [
    ("[" * 3000, f"--set data.languages:1:{MAX_SPEC_DEPTH + 2}: data: the spec is nested more than {MAX_SPEC_DEPTH} levels deep"),
    ("[" * 300 + "]" * 300, f"the spec is nested more than {MAX_SPEC_DEPTH} levels deep"),
    ("&loop [*loop]", "the spec is nested more than"),  # an alias inside its own anchor
    (alias_bomb(4), f"expands to more than {MAX_SPEC_NODES} entries"),
    ("[ka, la\x01]", "--set data.languages:1:8: character U+0001 is not allowed in YAML"),
    ("9" * 5000, "--set data.languages:1:1: invalid YAML: cannot read 9999"),
])
def test_set_values_have_the_bounds_of_a_file(tmp_path, value, why):
    spec = write(tmp_path / "spec.yaml", GOOD.encode())
    assert why in refused("validate", spec, "--set", f"data.languages={value}")
    with pytest.raises(SpecError) as caught:  # the override is left out, and the spec checked with the others
        load_spec(spec, [f"data.languages={value}", "finetune.epochz=1"])
    found = [str(problem) for problem in caught.value.problems]
    assert len(found) == 2 and why in found[0] and "unknown field 'epochz'" in found[1]


@pytest.mark.parametrize("value, why", [
    ("[" * 3000, "the value has 3,000 characters, more than 1,000"),
    ("[" * 400 + "]" * 400, "is not one value but a list, a mapping or several"),  # nests past PyYAML's recursion limit
    ("[ka, la]", "'[ka, la]' is not one value but a list"),
    ("{ka: 1}", "is not one value but a list, a mapping"),
    ("*a", "is not one value"),
    ("ka\x01", "cannot read 'ka\\x01' (unacceptable character #x0001"),
    ("!!int abc", "cannot read '!!int abc' (invalid literal for int()"),
])
def test_param_values_are_single_bounded_scalars(value, why):
    with pytest.raises(QueryError, match="^--param language: ") as caught:
        parse_params([f"language={value}"])
    assert why in str(caught.value)
    assert parse_params(["language=ka", "k=20", "point=", "point2=prune.threshold=0.9"]) == {
        "language": "ka", "k": 20, "point": "", "point2": "prune.threshold=0.9"}


def test_param_nested_past_the_recursion_limit_is_exit_2_not_a_traceback(tmp_path):
    output = refused("analyze", "cross_language", "--store", tmp_path / "store", "--param", "k=" + "[" * 900 + "]" * 900)
    assert "--param k: the value has 1,800 characters, more than 1,000" in output
    output = refused("analyze", "cross_language", "--store", tmp_path / "store", "--param", "k=" + "[" * 500 + "]" * 500)
    assert "--param k: '[[[[" in output and "is not one value" in output


# --- every number finite, every count bounded --------------------------------------------------------


def number_fields(model: type[BaseModel] = Spec, prefix: str = "") -> Iterator[tuple[str, type, bool]]:
    """Every int and float field of the spec, its sections' included: (dotted path, int or float, is a list)."""
    for name, field in model.model_fields.items():
        is_list = typing.get_origin(field.annotation) is list
        for arg in typing.get_args(field.annotation) or (field.annotation,):  # X | None, list[X]
            if typing.get_origin(arg) is typing.Annotated:
                arg = typing.get_args(arg)[0]
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from number_fields(arg, f"{prefix}{name}.")
            elif arg in (int, float):
                yield f"{prefix}{name}", arg, is_list


def test_every_number_is_finite_and_every_count_has_an_upper_bound(tmp_path):
    spec = write(tmp_path / "spec.yaml", GOOD.encode())
    fields = list(number_fields())
    assert {"seeds", "data.train_per_language", "finetune.epochs", "resources.default.num_cpus", "resources.tracin.num_gpus",
            "tracin.test_block_mb", "model.tiny.vocab_size", "analysis.top_k"} <= {path for path, _, _ in fields}
    accepted = []
    for path, kind, is_list in fields:
        huge = ".inf" if kind is float else "1000000000000"  # 1e12
        try:
            load_spec(spec, [f"{path}=[{huge}]" if is_list else f"{path}={huge}"])
            accepted.append(path)
        except SpecError as error:
            if not any(p.where == f"--set {path}" and p.path.removesuffix("[0]") == path for p in error.problems):
                accepted.append(path)
    assert accepted == []


@pytest.mark.parametrize("override, why", [  # the review's cases
    ("resources.default.num_cpus=.inf", "resources.default.num_cpus: Input should be a finite number"),
    ("data.train_per_language=1000000000000", "data.train_per_language: Input should be less than or equal to 10000000"),
    ("finetune.epochs=1000000000", "finetune.epochs: Input should be less than or equal to 1000"),
    ("seeds=[100000000000000000000]", "seeds[0]: Input should be less than or equal to 2147483647"),
])
def test_the_reviews_unbounded_values_are_exit_2_and_a_paper_size_study_passes(tmp_path, override, why):
    spec = write(tmp_path / "spec.yaml", GOOD.encode())
    assert f"--set {override.partition('=')[0]}: {why}" in refused("validate", spec, "--set", override)
    in_file = write(tmp_path / "in_file.yaml", (GOOD + "resources: {default: {num_cpus: .inf}}\n").encode())
    assert f"{in_file}:4:23: resources.default.num_cpus: Input should be a finite number" in refused("validate", in_file)
    xnli = Path(__file__).parents[2] / "specs" / "xnli.yaml"  # the whole of XNLI's train split: 392,702 per language
    code, output = cli("validate", xnli, "--set", "data.train_per_language=392702", "--set", "finetune.epochs=10",
                       "--set", "seeds=[0, 1, 2, 3, 4, 2147483647]", "--set", "resources.finetune={num_cpus: 64, num_gpus: 1}")
    assert code == 0, output
