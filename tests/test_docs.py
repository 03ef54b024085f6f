"""Every `bash` and `python` block of the README and of docs/ runs, in document order, against a store
that one real run of the whole study made (conftest.py's `everyday_study`, copied), from a directory
where that store is `results` and the repository's `specs/` is at hand: as a reader who ran
`make demo` would run them. A block that cannot run here (a GPU, the hub, hours of work) is marked
just above it with `<!-- not run: REASON -->`, and the reason must be given. Other blocks (`text`,
`yaml`, bare) are outputs or files, not commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # docs/reference/ is generated and has no blocks
RUNNABLE = {"bash": ["bash", "-e", "-o", "pipefail", "-c"], "python": [sys.executable, "-c"]}
NOT_RUN = re.compile(r"<!-- not run: (.*\S) -->")


def blocks(page: Path) -> list[tuple[int, str, str, str | None]]:
    """(line, language, code, the not-run reason or None) of each fenced block of a page."""
    found, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            language, start = lines[i][3:].strip(), i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            marked = NOT_RUN.fullmatch(above.strip())
            found.append((start + 1, language, "\n".join(lines[start + 1:end]) + "\n", marked.group(1) if marked else None))
            i = end
        i += 1
    return found


CASES = [(page, line, language, code, reason) for page in PAGES for line, language, code, reason in blocks(page)]


def test_the_docs_have_blocks_and_each_not_run_mark_gives_its_reason():
    assert len([c for c in CASES if c[2] in RUNNABLE and c[4] is None]) >= 15  # the collector finds them
    for page in PAGES:
        text = page.read_text()
        assert text.count("<!-- not run") == len(NOT_RUN.findall(text)), f"{page.name}: a not-run mark without a reason"


@pytest.fixture(scope="module")
def reader_dir(everyday_study, tmp_path_factory) -> Path:
    """A directory as a reader has it after `make demo`: `results/` (a copy: the blocks write reports
    and exports) and `specs/`."""
    here = tmp_path_factory.mktemp("reader")
    shutil.copytree(everyday_study["store"], here / "results")
    (here / "specs").symlink_to(ROOT / "specs")
    return here


@pytest.mark.parametrize(
    "page, line, language, code, reason",
    [c for c in CASES if c[2] in RUNNABLE],
    ids=[f"{c[0].relative_to(ROOT)}:{c[1]}" for c in CASES if c[2] in RUNNABLE],
)
def test_a_documented_block_runs(page, line, language, code, reason, reader_dir):
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    done = subprocess.run([*RUNNABLE[language], code], cwd=reader_dir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{page.name}:{line} failed ({done.returncode}):\n{code}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"


# The README's glossary: the table with this header, one term a row in its first column (in bold,
# code in backticks). A newcomer reads the README top to bottom, so no term may come before its row.
GLOSSARY_HEADER = "| term | what it means |"
HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def glossary(text: str) -> list[tuple[str, int]]:
    """(term, where its row starts) for each row of the glossary in `text`."""
    offset = text.index(GLOSSARY_HEADER)
    lines = text[offset:].splitlines(keepends=True)
    terms, offset = [], offset + len(lines[0]) + len(lines[1])  # past the header and its |---| line
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        terms.append((line.split("|")[1].strip().strip("*").strip("`"), offset))
        offset += len(line)
    return terms


def term_pattern(term: str) -> re.Pattern:
    """A use of `term`: as a whole word, or a plural; any case for a lower-case word (`Subnetworks`),
    exact for a name (TracIn, not the `tracin` stage) or a symbol (S+, last_run())."""
    plural = "(?:s|es)?(?!\\w)" if term[-1].isalnum() else ""
    return re.compile(f"(?<!\\w){re.escape(term)}{plural}", re.IGNORECASE if term.islower() else 0)


def test_the_readme_defines_every_term_of_its_glossary_before_using_it():
    text = HTML_COMMENT.sub(lambda comment: " " * len(comment.group()), (ROOT / "README.md").read_text())
    terms = glossary(text)
    assert {"TracIn", "SFT", "subnetwork", "S+", "M+", "Q1", "Q6", "P1", "sweep point", "run", "key", "cached",
            "last_run()"} <= {term for term, _ in terms}
    first_output = text.index("```text")
    for term, defined_at in terms:
        assert defined_at < first_output, f"the glossary's {term!r} comes after the README's first output"
        first_use = term_pattern(term).search(text)
        line = text.count("\n", 0, first_use.start()) + 1
        assert first_use.start() >= defined_at, (f"README.md:{line} uses {term!r} ({first_use.group()!r}) before the glossary "
                                                 f"defines it at line {text.count(chr(10), 0, defined_at) + 1}")
