"""The Ray langspec starts keeps a bounded number of idle workers (#40): each holds the stage imports
(WORKER_PRELOAD, about 390 MB measured), and Ray's defaults keep one per CPU, prestarted, which on a
128-CPU host is 35-50 GB. Checked on what the raylet is started with (its environment and CPU count),
since this machine's 2 cores cannot show 128 workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# start_private_ray up to ray.init, which records what the raylet would be started with instead of starting it
STARTED_WITH = """
import json, os, sys
import ray
from langspec import backends
backends.usable_cpus = lambda: int(sys.argv[1])
backends.check_ray_dir_private = lambda temp_dir: None
seen = {}
def init(**options):
    seen.update(num_cpus=options["num_cpus"], soft_limit=os.environ.get("RAY_num_workers_soft_limit"),
                prestart=os.environ.get("RAY_prestart_worker_first_driver"),
                preload=os.environ.get("RAY_preload_python_modules"))
ray.init = init
backends.start_private_ray()
print(json.dumps(seen))
"""
SETTINGS = ("RAY_num_workers_soft_limit", "RAY_prestart_worker_first_driver")


def started_with(cpus: int, **env: str) -> dict:
    clean = {name: value for name, value in os.environ.items() if name not in SETTINGS} | env
    done = subprocess.run([sys.executable, "-c", STARTED_WITH, str(cpus)], capture_output=True, text=True, timeout=60, env=clean)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_host_of_more_than_eight_cpus_keeps_at_most_eight_idle_workers_and_prestarts_none():
    from langspec.backends import IDLE_WORKERS_MAX

    assert IDLE_WORKERS_MAX == 8
    small, big = started_with(8), started_with(9)
    assert (small["soft_limit"], small["prestart"]) == (None, None)  # Ray's defaults: one warm worker per CPU
    assert (big["soft_limit"], big["prestart"]) == ("8", "0")
    assert (small["num_cpus"], big["num_cpus"]) == (8, 9)  # every CPU still runs tasks: only the idle pool is bounded
    assert "torch" in big["preload"].split(",")


def test_a_users_own_setting_stands():
    seen = started_with(128, RAY_num_workers_soft_limit="32")
    assert (seen["soft_limit"], seen["prestart"]) == ("32", "0")
