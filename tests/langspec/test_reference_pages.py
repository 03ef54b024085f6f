"""The reference pages under docs/reference/ are generated from the code (langspec/reference.py):
they must match what the code generates now, and the code must give them something to say."""

import functools
import re

import pytest

from langspec import reference


@functools.cache
def generated() -> dict[str, str]:
    return reference.pages()


@pytest.mark.parametrize("name", ["spec.md", "store.md", "analyses.md", "cli.md"])
def test_reference_page_on_disk_is_what_the_code_generates(name):
    page = reference.PAGES_DIR / name
    assert page.is_file(), f"docs/reference/{name} is missing: run `make reference`"
    assert page.read_text() == generated()[name], f"docs/reference/{name} is out of date: run `make reference`"


def test_spec_page_lists_every_field_with_a_description():
    from langspec.spec import Spec

    rows = [line for line in generated()["spec.md"].splitlines() if line.startswith("| `")]
    listed = {re.match(r"\| `([^`]+)`", row).group(1) for row in rows}
    assert set(Spec.model_fields) <= listed
    # fields that were once undocumented (issue #28) are there, nested ones by their dotted path
    assert {"finetune.eval_batch_size", "model.tiny.vocab_size", "ablation.languages", "data.validation_per_language",
            "prune.enabled", "planted.overlap", "tracin.normalize", "resources.default.num_cpus"} <= listed
    undescribed = [row for row in rows if not row.removesuffix(" |").rsplit(" | ", 1)[-1].strip()]
    assert undescribed == []


def test_store_page_describes_every_table_view_and_macro_with_its_columns():
    import duckdb

    from store.migrations import schema_sql

    con = duckdb.connect()
    con.execute(schema_sql())
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'memory'").fetchall()}
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    macros = {r[0] for r in con.execute("SELECT DISTINCT function_name FROM duckdb_functions() "
                                        "WHERE function_type IN ('macro', 'table_macro') AND NOT internal").fetchall()}
    page = generated()["store.md"]
    sections = dict(re.findall(r"### `(\w+)[^`]*`\n\n(.*?)(?=\n### |\n## |\Z)", page, re.S))
    assert set(sections) == tables | views | macros
    undescribed = [name for name, body in sections.items() if body.startswith("|") or not body.strip()]
    assert undescribed == []
    # the columns are DESCRIBE's, not the DDL's text: a view's computed column is there with its type
    assert "| `finetune_key` | VARCHAR |" in sections["subnetwork_masks"]
    for name in tables | views:
        for column, type_, *_ in con.execute(f'DESCRIBE "{name}"').fetchall():
            assert f"| `{column}` | {type_} |" in sections[name]
    assert "| `outcome` | VARCHAR | cached \\| ran \\| failed \\| skipped" in sections["tasks"]  # a column's own note


def test_analyses_page_lists_every_analysis_with_its_parameters():
    from store.queries import named_queries

    page = generated()["analyses.md"]
    for query in named_queries().values():
        row = next(line for line in page.splitlines() if line.startswith(f"| [`{query.name}`]"))
        assert all(f"`{p}`" in row for p in query.params) and query.doc in row


def test_cli_page_lists_every_command_and_flag():
    import typer

    from langspec.cli import app

    group = typer.main.get_command(app)
    page = generated()["cli.md"]
    for name, command in group.commands.items():
        assert f"## `langspec {name}" in page
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert f"`{param.opts[0]}`" in page.split(f"## `langspec {name}")[1].split("\n## ")[0]


def test_cli_page_holds_every_paragraph_that_help_prints():
    """The page says `--help` prints the same: every paragraph of each command's help is on it (#39)."""
    from typer.testing import CliRunner

    from langspec.cli import app

    page = " ".join(generated()["cli.md"].split())
    for name in ("analyze", "query", "run", "report"):
        shown = CliRunner().invoke(app, [name, "--help"], terminal_width=10_000).output
        # the help's own text: Rich draws option boxes after it
        text = shown.split("Usage:")[1].split("╭")[0].split("\n", 1)[1]
        for paragraph in [" ".join(part.split()) for part in text.split("\n\n") if part.strip()]:
            assert paragraph in page, (name, paragraph)
