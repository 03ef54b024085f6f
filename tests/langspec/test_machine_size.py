"""The machine's real size (#40): the private Ray gets the CPUs this process may use (its affinity
and its cgroup's quota), not the host's; a task runs on one GPU, so a stage cannot ask for more."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from langspec.backends import usable_cpus
from langspec.errors import SpecError
from langspec.load import load_spec

PRIVATE_RAY_CPUS = textwrap.dedent("""
    import json, ray
    from langspec.backends import start_private_ray
    start_private_ray()
    print(json.dumps(ray.cluster_resources().get("CPU")))
    ray.shutdown()
""")


@pytest.mark.skipif(shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2, reason="needs taskset and 2 CPUs")
def test_under_taskset_the_private_ray_has_one_cpu():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    done = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", PRIVATE_RAY_CPUS], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == 1.0  # os.cpu_count() says the host's 2


@pytest.mark.parametrize("quota, expected", [("max 100000", None), ("150000 100000", 1), ("50000 100000", 1), ("400000 100000", None)])
def test_a_cgroup_quota_caps_the_cpus(tmp_path, quota, expected):
    (tmp_path / "proc").write_text("12:cpu:/v1-noise\n0::/job/42\n")
    (tmp_path / "job" / "42").mkdir(parents=True)
    (tmp_path / "job" / "42" / "cpu.max").write_text(quota + "\n")
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(cgroup_root=tmp_path, own_cgroup=tmp_path / "proc") == (min(expected, affinity) if expected else affinity)


def test_a_stage_cannot_ask_for_more_gpus_than_it_uses(spec_file, small_spec):
    with pytest.raises(SpecError) as refused:
        load_spec(small_spec, ["resources.finetune={num_cpus: 1, num_gpus: 2}"])
    assert "less than or equal to 1" in str(refused.value)
    assert load_spec(small_spec, ["resources.finetune={num_cpus: 1, num_gpus: 0.5}"]).spec.resources.finetune.num_gpus == 0.5
