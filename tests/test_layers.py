"""The layers, langspec -> runners -> store, checked by import-linter: a package
imports only the packages below it, so an upward import fails the test suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports over the packages under `root`, with the contracts of `root`/pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True,
    )


def test_no_package_imports_a_layer_above_it():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # The project's contracts over three stub packages in which the store imports langspec.
    contracts = (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1].split("\n[tool.", 1)[0]
    (tmp_path / "pyproject.toml").write_text("[tool.importlinter]" + contracts)
    for package in ("langspec", "runners", "store"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "langspec" / "errors.py").write_text("")
    (tmp_path / "store" / "db.py").write_text("from langspec import errors\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "store.db -> langspec.errors" in result.stdout
