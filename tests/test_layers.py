"""The import contracts of pyproject.toml, checked by import-linter: a package imports only the
packages below it (langspec -> runners -> store), no stage imports another stage, and what the stages
share (runners.methods, runners.inputs, ...) imports no stage; an import that breaks one fails the
test suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports over the packages under `root`, with the contracts of `root`/pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True,
    )


def test_the_packages_keep_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("importer, imported, contract", [
    ("store/db.py", "langspec.errors", "nothing imported upward"),
    ("runners/tracin.py", "runners.prune", "no stage imports another stage"),
    ("runners/methods/models.py", "runners.finetune", "what the stages share imports no stage"),
    ("runners/inputs.py", "runners.data", "what the stages share imports no stage"),
    ("langspec/science/report.py", "langspec.cli", "the science imports none of the engine and no stage"),
    ("langspec/science/findings.py", "runners.tracin", "the science imports none of the engine and no stage"),
])
def test_an_import_against_a_contract_breaks_it(tmp_path, importer, imported, contract):
    # The project's contracts over empty stubs of the project's modules, one of which makes the import.
    contracts = (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1].split("\n[tool.", 1)[0]
    (tmp_path / "pyproject.toml").write_text("[tool.importlinter]" + contracts)
    for module in [path.relative_to(ROOT) for package in ("langspec", "runners", "store") for path in (ROOT / package).rglob("*.py")]:
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).touch()
    clean = lint(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (tmp_path / importer).write_text(f"import {imported}\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout
    assert f"{importer[:-3].replace('/', '.')} -> {imported}" in result.stdout
