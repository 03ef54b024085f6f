"""A two-node Ray cluster on this machine whose worker node is another machine as far as a run's inputs
go: it runs from another working directory, with an empty HF_HOME and no HF_HUB_OFFLINE, and in a mount
namespace of its own where the driver's project directory (its data) is an empty tmpfs. The head node
has no CPUs, so every task runs on the worker node (and is the one node asked). A spec whose data is
only in the driver's project, and whose model is in no cache there, is refused before any task, naming
that node, the path and the model; with the data on a path both see, given relative to the driver's
project, it runs there with the driver's Hugging Face settings, recorded in each manifest without
secrets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.reliability.test_cluster import start_cluster, stop_cluster

# Another slot of the port range than test_cluster's cluster in the same process.
BASE = 20000 + (os.getpid() + 125) % 250 * 50

SPEC = """\
    name: inputs
    data: {{source: files, path: {path}, languages: [ka, la], train_per_language: 12, validation_per_language: 4,
           test_per_language: 4}}
    model: {model}
    finetune: {{epochs: 1, batch_size: 8, max_length: 16}}
    prune: {{enabled: false}}
    sparse_finetune: {{enabled: false}}
    tracin: {{enabled: false}}
    resources: {{default: {{num_cpus: 1}}{more}}}
"""


def write_data(root: Path) -> None:
    for language in ("ka", "la"):
        for split, count in (("train", 12), ("validation", 4), ("test", 4)):
            rows = [{"text_a": f"{language} word{i % 5} thing{i % 3}", "label": i % 3} for i in range(count)]
            (root / language).mkdir(parents=True, exist_ok=True)
            (root / language / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def far_cluster():
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs mount namespaces (unshare --mount) to hide the driver's files from the worker node")
    tmp = Path(f"/tmp/lsi-{os.getpid()}")  # short: Ray's unix socket paths have a length limit
    project, elsewhere, empty_hf = tmp / "project", tmp / "nodes" / "worker", tmp / "hf-empty"
    for folder in (project, elsewhere, empty_hf):
        folder.mkdir(parents=True, exist_ok=True)
    write_data(project / "data")
    worker_env = {name: value for name, value in os.environ.items() if name != "HF_HUB_OFFLINE"} | {"HF_HOME": str(empty_hf)}
    hide = ("unshare", "--mount", "--", "sh", "-c", f'mount -t tmpfs none {project} && exec "$@"', "sh")
    address, nodes = start_cluster(tmp, BASE, head={"cpus": 0},
                                   worker={"cwd": elsewhere, "env": worker_env, "prefix": hide})
    probe = ("import ray,sys,json\nray.init(address=sys.argv[1])\n"
             "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive'] and n['NodeManagerPort'] == int(sys.argv[2])]))")
    try:
        found = subprocess.run([sys.executable, "-c", probe, address, str(BASE + 20)], capture_output=True, text=True, timeout=60)
        yield {"address": address, "tmp": tmp, "project": project, "worker": json.loads(found.stdout.splitlines()[-1])[0]}
    finally:
        stop_cluster(nodes)
        shutil.rmtree(tmp, ignore_errors=True)


TINY = "{tiny: {layers: 1, heads: 2, hidden: 16, intermediate: 32, vocab_size: 100}}"


def run_in_project(cluster, name: str, path: str, env: dict | None = None, model: str = TINY, resources: str = ""):
    spec = cluster["project"] / f"{name}.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(path=path, model=model, more=resources)))
    store = cluster["tmp"] / name
    done = subprocess.run([sys.executable, "-m", "langspec", "run", spec.name, "--store", str(store), "--address", cluster["address"]],
                          cwd=cluster["project"], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    return done, " ".join((done.stdout + done.stderr).split()), store


def test_a_node_without_the_drivers_data_or_model_refuses_the_run_before_any_task(far_cluster):
    model = "{pretrained: no-such-org/no-such-model}"  # an id: the node's Hugging Face cache must hold it
    done, said, store = run_in_project(far_cluster, "refused", "data", {"HF_HUB_OFFLINE": "1"}, model=model)
    assert done.returncode == 2, said
    missing = far_cluster["project"] / "data"
    assert f"Ray node {far_cluster['worker'][:12]}" in said and f"data.path {missing} (not there)" in said, said
    assert "model 'no-such-org/no-such-model': HF_HUB_OFFLINE is set" in said, said
    assert "1 of the 1 node(s)" in said  # the head node, with no CPUs, runs no task and is not asked
    assert not any((store / "tasks").glob("[!.]*")), "no task may start"
    assert not list((store / "tasks").glob(".preflight-*")), "the preflight's mark is cleaned up"


def test_data_on_a_shared_path_runs_on_the_node_with_the_drivers_settings(far_cluster):
    shared = far_cluster["tmp"] / "shared"
    shutil.copytree(far_cluster["project"] / "data", shared / "data", dirs_exist_ok=True)
    driver_hf = far_cluster["tmp"] / "hf-driver"
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(driver_hf), "LANGSPEC_TEST_SETTING": "seven", "HF_TOKEN": "hf_not_for_the_store"}
    more = ", env_vars: [LANGSPEC_TEST_SETTING, HF_TOKEN]"
    done, said, store = run_in_project(far_cluster, "shared", "../shared/data", env, resources=more)  # relative to the project
    assert done.returncode == 0, said
    manifests = [path.read_text() for path in (store / "tasks").glob("*/_SUCCESS.json")]
    assert len(manifests) == 2  # data and finetune
    for text in manifests:
        manifest = json.loads(text)
        assert manifest["env"]["HF_HUB_OFFLINE"] == "1" and manifest["env"]["HF_HOME"] == str(driver_hf)
        assert manifest["env"]["LANGSPEC_TEST_SETTING"] == "seven"
        assert "HF_TOKEN" not in manifest["env"] and manifest["env_withheld"] == ["HF_TOKEN"]
        assert "hf_not_for_the_store" not in text
