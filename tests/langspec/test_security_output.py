"""Safe by default II, what langspec prints and writes: a value from a store, a dataset or a spec is
shown, never obeyed by the terminal, and never taken for a path; a file that `--out` or `export`
writes goes through no link. Each finding of the review, reproduced on a real store (a copy of the
one conftest.py's run made, changed as someone with write access to it could) or through the CLI.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import duckdb
import pytest
from rich.console import Console
from typer.testing import CliRunner

from langspec.cli import app
from store.connections import DB_FILE

# What a terminal obeys: OSC 52 writes the clipboard, OSC 0 the window title, CSI 2J clears the screen.
CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4K\x07"
TITLE_AND_CLEAR = "\x1b]0;pwned\x07\x1b[2J"
OBEYED = {"\x1b", "\x07", "\x9b"}


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def shown(text: str) -> str:
    """`text` as langspec shows it: each control written out."""
    return text.replace("\x1b", "\\x1b").replace("\x07", "\\x07")


def tampered(study_store: Path, where: Path, sql: str, *params) -> Path:
    """A copy of a real store with `sql` run on its database, as one with write access to it could."""
    root = where / "store"
    shutil.copytree(study_store, root, symlinks=True)
    con = duckdb.connect(str(root / DB_FILE))
    con.execute(sql, list(params))
    con.close()  # checkpointed: no log left behind
    return root


# --- terminal controls from the store, a dataset or a spec ---------------------------------------


def test_pivot_column_headers_from_store_languages_are_shown_not_obeyed(everyday_study, tmp_path):
    root = tampered(everyday_study["store"], tmp_path, "UPDATE metrics SET language = ? WHERE language = 'ka'", f"ka{CLIPBOARD}")
    pivot = "PIVOT (SELECT language, value FROM final_metrics WHERE split = 'test' AND metric = 'accuracy') ON language USING max(value)"
    for format in ("csv", "table"):
        printed = cli("query", pivot, "--store", root, "--format", format)
        assert printed.exit_code == 0, printed.output
        assert not set(printed.output) & OBEYED, (format, printed.output)
        assert shown(f"ka{CLIPBOARD}") in printed.output, format
    as_json = cli("query", pivot, "--store", root, "--format", "json")
    assert not set(as_json.output) & OBEYED and "\\u001b]52;" in as_json.output  # JSON escapes keys as it does values
    assert set(json.loads(as_json.output)[0]) == {f"ka{CLIPBOARD}", "la"}


def test_a_sweep_value_with_terminal_controls_is_shown_not_obeyed_by_plan(small_spec, spec_file, tmp_path):
    spec = spec_file(small_spec.read_text() + 'sweep: {data.dataset: ["\\e]0;pwned\\a\\e[2J"]}\n', "swept.yaml")
    planned = cli("plan", spec, "--store", tmp_path / "store")
    assert planned.exit_code == 0, planned.output
    assert not set(planned.output) & OBEYED, planned.output
    assert f"finetune[seed=0,data.dataset={shown(TITLE_AND_CLEAR)}]" in planned.output


def test_the_task_names_and_failures_of_a_run_are_shown_not_obeyed(spec_file, tmp_path):
    data = tmp_path / "data"
    for language in ("ka", "la"):
        (data / language).mkdir(parents=True)
        for split in ("train", "validation", "test"):
            (data / language / f"{split}.jsonl").write_text("not json\n")  # the data task fails on it
    spec = spec_file(f"""\
        name: broken
        data: {{source: files, path: {json.dumps(str(data))}, languages: [ka, la], train_per_language: 4,
               validation_per_language: 2, test_per_language: 2}}
        model: {{tiny: {{layers: 1, heads: 2, hidden: 8, intermediate: 16, vocab_size: 100}}}}
        finetune: {{epochs: 1}}
        prune: {{enabled: false}}
        sparse_finetune: {{enabled: false}}
        tracin: {{enabled: false}}
        resources: {{default: {{num_cpus: 1}}}}
        sweep: {{data.dataset: ["\\e]0;pwned\\a\\e[2J"]}}
    """)
    ran = cli("run", spec, "--store", tmp_path / "store", "--executor", "local")
    assert ran.exit_code == 1, ran.output
    assert not set(ran.output) & OBEYED, ran.output
    name = f"data[data.dataset={shown(TITLE_AND_CLEAR)}]"
    assert f" failed {name} (its error is in the summary at the end)" in ran.output  # the display's line
    assert f"failed {name}: JSONDecodeError" in ran.output  # the summary's


def test_progress_notes_and_task_names_are_shown_not_obeyed():
    from types import SimpleNamespace

    from langspec.progress import RunDisplay

    printed = io.StringIO()
    display = RunDisplay(Console(file=printed, width=200))
    task = SimpleNamespace(key="k" * 64, name=f"finetune[seed=0,data.dataset={TITLE_AND_CLEAR}]")
    display.start(SimpleNamespace(tasks=[task]), done=0)
    display.begin(task)
    display.reporter(task.key)(1, 2, f"epoch 1 [bold]{TITLE_AND_CLEAR}")  # Rich markup in a note is text too
    display.note(f"task {task.name}: its result is damaged")
    display.finish(task, "ran")
    display.stop()
    assert not set(printed.getvalue()) & OBEYED, printed.getvalue()
    assert f"note: task finetune[seed=0,data.dataset={shown(TITLE_AND_CLEAR)}]: its result is damaged" in printed.getvalue()
    assert f"ran finetune[seed=0,data.dataset={shown(TITLE_AND_CLEAR)}]" in printed.getvalue()


def test_the_accuracy_table_shows_store_languages_not_obeyed():
    from langspec.output import accuracy_table

    printed = io.StringIO()
    Console(file=printed, width=200).print(accuracy_table([{"language": f"ka{CLIPBOARD}", "variant": "full", "accuracy": 0.5, "sd": None}]))
    assert not set(printed.getvalue()) & OBEYED and shown(f"ka{CLIPBOARD}") in printed.getvalue()


def test_analyze_sql_shows_a_point_label_from_the_store_not_obeyed(everyday_study, tmp_path):
    root = tampered(everyday_study["store"], tmp_path, "UPDATE points SET point = ?", f"prune.threshold={TITLE_AND_CLEAR}")
    printed = cli("analyze", "in_language_share", "--sql", "--store", root)
    assert printed.exit_code == 0, printed.output
    assert not set(printed.output) & OBEYED, printed.output
    assert shown(TITLE_AND_CLEAR) in printed.output


# --- what comes from the store is data, never a path -------------------------------------------


def test_export_refuses_a_language_from_the_store_that_is_a_path(everyday_study, tmp_path):
    from langspec.science.subnetwork import LANGUAGE_CODE
    from runners.data import LANGUAGE_CODE as SPEC_LANGUAGE_CODE

    assert LANGUAGE_CODE.pattern == SPEC_LANGUAGE_CODE.pattern  # export takes the codes a spec takes, no other
    root = tampered(everyday_study["store"], tmp_path, "UPDATE subnetworks SET language = '../../escaped' WHERE language = 'la'")
    refused = cli("export", tmp_path / "out", "--store", root)
    assert refused.exit_code == 2, refused.output
    assert "language '../../escaped'" in refused.output and "changed outside langspec" in refused.output
    assert not (tmp_path / "escaped").exists()  # out/seed-0/../../escaped
    assert not list(tmp_path.joinpath("out").rglob("subnetwork.json"))  # nothing is written when one is refused


def test_report_refuses_a_point_from_the_store_that_names_another_directory(everyday_study, tmp_path):
    root = tampered(everyday_study["store"], tmp_path, "UPDATE points SET point = '..'")
    before = sorted(root.rglob("*"))  # the copied store may hold the reports other tests wrote
    refused = cli("report", "--store", root)
    assert refused.exit_code == 2, refused.output
    assert "sweep point '..'" in refused.output and "--out DIR" in refused.output
    assert sorted(root.rglob("*")) == before  # no report written, there or one directory up


# --- no link followed on write -------------------------------------------------------------------


@pytest.fixture
def victim(tmp_path) -> Path:
    """Another user's file, which a planted link points at."""
    path = tmp_path / "victim" / "authorized_keys"
    path.parent.mkdir()
    path.write_text("ssh-ed25519 AAAA the victim's key\n")
    return path


def test_query_out_refuses_a_symlink_and_leaves_its_target_alone(everyday_study, tmp_path, victim):
    link = tmp_path / "answer.csv"
    link.symlink_to(victim)
    refused = cli("query", "SELECT 'planted' AS x", "--store", everyday_study["store"], "--out", link)
    assert refused.exit_code == 2, refused.output
    assert "is a symbolic link" in refused.output and "remove the link or name another file" in refused.output
    assert victim.read_text() == "ssh-ed25519 AAAA the victim's key\n"


def test_query_out_replaces_a_link_planted_after_the_check_instead_of_following_it(everyday_study, tmp_path, victim, monkeypatch):
    link = tmp_path / "answer.csv"
    link.symlink_to(victim)
    is_symlink = Path.is_symlink
    monkeypatch.setattr(Path, "is_symlink", lambda path: False if path == link else is_symlink(path))  # planted after every check
    written = cli("query", "SELECT 'planted' AS x", "--store", everyday_study["store"], "--out", link)
    monkeypatch.undo()
    assert written.exit_code == 0, written.output
    assert victim.read_text() == "ssh-ed25519 AAAA the victim's key\n"
    assert not link.is_symlink() and link.read_text() == "x\nplanted\n"  # the rename replaced the link
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answer.csv", "victim"]  # no temporary file left


@pytest.mark.parametrize("planted", ["seed-0/ka/subnetwork.json", "seed-0", "seed-0/ka"])
def test_export_writes_through_no_link_planted_in_its_directory(everyday_study, tmp_path, victim, planted):
    out = tmp_path / "out"
    link = out / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim if planted.endswith(".json") else victim.parent, target_is_directory=not planted.endswith(".json"))
    refused = cli("export", out, "--store", everyday_study["store"])
    assert refused.exit_code == 2, refused.output
    assert f"{link} is a symbolic link" in refused.output
    assert sorted(p.name for p in victim.parent.iterdir()) == ["authorized_keys"]
    assert victim.read_text() == "ssh-ed25519 AAAA the victim's key\n"
