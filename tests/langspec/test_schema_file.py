"""specs/langspec.schema.json as editors and check-jsonschema use it: every shipped spec, a partial
base file included, passes; a whole spec that lacks a required field, or a base with a bad value, fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SPECS = Path(__file__).parents[2] / "specs"
SCHEMA = SPECS / "langspec.schema.json"


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("check-jsonschema")), "--schemafile", str(SCHEMA), *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_schema_names_its_draft():
    assert json.loads(SCHEMA.read_text())["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_shipped_spec_passes_a_base_file_included():
    files = sorted(SPECS.rglob("*.yaml"))
    assert SPECS / "base" / "paper.yaml" in files and SPECS / "demo.yaml" in files
    checked = check_jsonschema(*files)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("text, error", [
    ("name: t\nfinetune: {epochs: 2}\n", "'model' is a required property"),  # a whole spec: name, no extends
    ("model: {tiny: {layers: 2}}\nfinetune: {epochs: 0}\n", "0 is less than the minimum of 1"),  # a base file is still checked
    ("extends: base.yaml\nname: t\nfinetune: {epoch: 2}\n", "Additional properties are not allowed ('epoch' was unexpected)"),
])
def test_the_schema_finds_the_real_problem(tmp_path, text, error):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    checked = check_jsonschema(path)
    assert checked.returncode == 1 and error in checked.stdout, checked.stdout
    assert "'extends' is a required property" not in checked.stdout
