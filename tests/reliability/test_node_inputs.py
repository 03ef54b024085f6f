"""What a task takes from the driver, without a cluster: input paths made absolute for any node's
working directory, a data key that follows the content rather than the directory (a moved store stays
cached), a manifest that records the passed environment but never a secret, and a node check that
says what a node lacks. test_cluster_inputs.py runs the same on a two-node cluster."""

from __future__ import annotations

import json
import textwrap

import pytest

from langspec import preflight
from langspec.compile import compile_spec
from langspec.errors import SpecError
from langspec.execute import task_call
from langspec.load import load_spec
from langspec.worker import run_task
from store import artifacts

SPEC = """\
    name: inputs
    data: {{source: files, path: {path}, languages: [ka], train_per_language: 6, validation_per_language: 2,
           test_per_language: 2}}
    model: {model}
    prune: {{enabled: false}}
    sparse_finetune: {{enabled: false}}
    tracin: {{enabled: false}}
    resources: {{default: {{num_cpus: 1}}{more}}}
"""
TINY = "{tiny: {layers: 1, heads: 2, hidden: 16, intermediate: 32, vocab_size: 100}}"


def write_data(root, text="word"):
    for split, count in (("train", 6), ("validation", 2), ("test", 2)):
        (root / "ka").mkdir(parents=True, exist_ok=True)
        (root / "ka" / f"{split}.jsonl").write_text("".join(json.dumps({"text_a": f"{text} {i}", "label": i % 2}) + "\n"
                                                            for i in range(count)))
    return root


def graph_of(folder, path, model=TINY, more=""):
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(path=path, model=model, more=more)))
    loaded = load_spec(spec)
    return loaded, compile_spec(loaded)


def test_input_paths_reach_a_worker_absolute_and_hub_ids_stay_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_data(tmp_path / "data")
    (tmp_path / "models" / "xlmr").mkdir(parents=True)
    _, graph = graph_of(tmp_path, "data", model="{pretrained: models/xlmr}")
    calls = {task.stage: task_call(task, tmp_path / "store", "token") for task in graph.tasks}
    assert calls["data"].params.data.path == str(tmp_path / "data")
    assert calls["finetune"].params.model.pretrained == str(tmp_path / "models" / "xlmr")
    assert graph.tasks[0].params.data.path == "data"  # the task and its key keep the spec's own text
    _, graph = graph_of(tmp_path, "data", model="{pretrained: xlm-roberta-base}")
    assert task_call(graph.tasks[1], tmp_path / "store", "token").params.model.pretrained == "xlm-roberta-base"


def test_a_files_data_key_follows_the_content_not_the_directory(tmp_path):
    _, here = graph_of(tmp_path, write_data(tmp_path / "checkout" / "data"))
    _, moved = graph_of(tmp_path, write_data(tmp_path / "elsewhere" / "copy"))
    assert [task.key for task in here.tasks] == [task.key for task in moved.tasks]
    _, changed = graph_of(tmp_path, write_data(tmp_path / "changed", text="other"))
    assert changed.tasks[0].key != here.tasks[0].key


def test_the_manifest_records_the_passed_environment_but_no_secret(tmp_path, monkeypatch):
    secrets = {"HF_TOKEN": "hf_abc123", "WANDB_API_KEY": "wandb-456", "DB_PASSWORD": "pw-789"}
    for name, value in {**secrets, "HF_HUB_OFFLINE": "1", "LANGSPEC_SETTING": "on"}.items():
        monkeypatch.setenv(name, value)
    more = f", env_vars: [LANGSPEC_SETTING, {', '.join(secrets)}]"
    loaded, graph = graph_of(tmp_path, write_data(tmp_path / "data"), more=more)
    assert set(preflight.task_env(loaded.spec.resources.env_vars)) >= {"HF_HUB_OFFLINE", "LANGSPEC_SETTING", *secrets}
    root = tmp_path / "store"
    token = artifacts.new_token()
    artifacts.set_fence(root, token)
    assert run_task(task_call(graph.tasks[0], root, token, loaded.spec.resources.env_vars))["ok"]
    text = (artifacts.task_dir(root, graph.tasks[0].key) / artifacts.SUCCESS_FILE).read_text()
    manifest = json.loads(text)
    assert manifest["env"]["HF_HUB_OFFLINE"] == "1" and manifest["env"]["LANGSPEC_SETTING"] == "on"
    assert sorted(manifest["env_withheld"]) == sorted(secrets)
    assert not any(value in text for value in secrets.values())


@pytest.mark.parametrize("names, problem", [(["A-B"], "should match pattern"), (["X", "X"], "listed twice: X")])
def test_env_vars_must_be_names_listed_once(tmp_path, names, problem):
    with pytest.raises(SpecError, match=problem):
        graph_of(tmp_path, "data", more=f", env_vars: {json.dumps(names)}")


def test_a_node_is_told_what_it_lacks(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "MARK_WAIT_S", 0.2)
    loaded, graph = graph_of(tmp_path, write_data(tmp_path / "data"))
    root = tmp_path / "store"
    (root / "tasks").mkdir(parents=True)
    (root / "tasks" / ".mark").write_text("driver")
    needs = preflight.node_needs(list(graph.tasks), root, (".mark", "driver"))
    assert needs.paths == (("data.path", str(tmp_path / "data")),)
    assert preflight.check_node(needs) == []

    versions = tuple((name, version + 1 if name == "data" else version) for name, version in needs.stage_versions)
    other = preflight.NodeNeeds(paths=(("data.path", str(tmp_path / "nowhere")),), hub_ids=(), store=str(root),
                                mark=(".mark", "another driver"), langspec="0.0.0-other", stage_versions=versions)
    lacks = " | ".join(preflight.check_node(other))
    assert "langspec 0.0.0-other (it has " in lacks
    assert f"stage versions: data {dict(versions)['data']} (it has {dict(versions)['data'] - 1})" in lacks
    assert f"data.path {tmp_path / 'nowhere'} (not there)" in lacks
    assert f"the store's directory {root} as the driver has it" in lacks
