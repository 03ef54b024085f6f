"""Where tasks run: in this process (LocalBackend, for debugging) or as Ray tasks (RayBackend) on a
private local Ray that only this run can use (start_private_ray) or on a cluster (--address)."""

from __future__ import annotations

import os
import secrets
import signal
import stat
import tempfile
import threading
import time
from pathlib import Path


from langspec.compile import Task
from langspec.errors import PlanError
from langspec.progress import RunDisplay
from langspec.spec import StageResources
from langspec.worker import WORKER_NICENESS, WORKER_PRELOAD, TaskCall, run_task
from store import attempts


class LocalBackend:
    """Runs each task in this process, in submission order; the same semantics as Ray, no Ray."""

    name = "local"

    def __init__(self, display: RunDisplay):
        self._queue: list[TaskCall] = []
        self._display = display

    def check_fits(self, pending: list[Task]) -> None:
        import torch

        _check_gpus(pending, torch.cuda.device_count(), "this machine")

    def has_room(self, resources: StageResources) -> bool:
        """One task at a time: the driver picks each next task from all that are ready then."""
        return not self._queue

    def submit(self, call: TaskCall, max_retries: int = 0) -> None:
        self._queue.append(call)  # nothing to retry: a crash here ends the driver too

    def wait(self) -> list[tuple[str, dict]]:
        call = self._queue.pop(0)
        return [(call.key, run_task(call, report=self._display.reporter(call.key)))]

    def close(self, interrupted: bool = False) -> None:
        pass


class RayBackend:
    """Plain `ray.remote` tasks with the spec's resources; a local Ray unless `address` is given."""

    name = "ray"

    def __init__(self, root: Path, display: RunDisplay, address: str | None = None, queued_report_s: float = 60.0,
                 env: dict[str, str] | None = None):
        import ray

        self._ray = ray
        self._root = root
        self._display = display
        self._owned = False
        if not ray.is_initialized():
            term = signal.getsignal(signal.SIGTERM)
            if address:  # the cluster's authentication is its administrator's: the user's settings stand
                ray.init(address=address, log_to_driver=False)
            else:
                start_private_ray()
            self._owned = True
            if callable(term) and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, term)  # Ray's own handler exits on the spot, leaving the run "running"
        self._remote = ray.remote(run_task)
        # On a cluster every task (and each node's preflight) gets the driver's settings through Ray's runtime_env.
        # A Ray on this machine alone inherited them from this process; a runtime_env there would only cost each
        # run its prestarted workers (5 s of a 40 s run measured), since Ray starts workers for each environment.
        cluster = address is not None or sum(1 for node in ray.nodes() if node.get("Alive")) > 1
        self._runtime_env = {"env_vars": dict(env)} if env and cluster else None
        self._pending: dict = {}  # ObjectRef -> (task call, submitted at), in the order of submission
        self._reported: set[str] = set()
        self._queued_report_s = queued_report_s
        self._capacity_seen: dict[str, float] | None = None  # as wait() last looked

    def check_fits(self, pending: list[Task]) -> None:
        """Every task's request fits on at least one live node; otherwise Ray would queue it forever."""
        nodes = [node["Resources"] for node in self._ray.nodes() if node.get("Alive")]
        _check_gpus(pending, max((node.get("GPU", 0) for node in nodes), default=0), "the largest node of the Ray cluster")
        for task in pending:
            request = _request(task.resources)
            if not any(_fits(request, node) for node in nodes):
                largest = max(nodes, key=lambda node: (node.get("CPU", 0), node.get("GPU", 0)), default={})
                raise PlanError(
                    f"stage {task.stage} asks for {_describe(request)} per task, but no node of the Ray cluster has that: "
                    f"the largest of its {len(nodes)} node(s) has {_describe({k: largest.get(k, 0) for k in request})}; "
                    f"lower resources.{task.stage}.num_cpus (or num_gpus; or resources.default) in the spec, or add a bigger node"
                )

    def has_room(self, resources: StageResources) -> bool:
        """Whether to submit a task asking for `resources` now: while it and the run's tasks submitted
        before it fit in the cluster's CPUs and GPUs at once, and beyond that for LOOKAHEAD tasks more,
        which wait in Ray's queue. The driver holds the rest, so that a task it finds ready later (the
        next stage of the critical path) can go before them: once submitted, a task keeps its place in
        Ray's queue."""
        if self._capacity_seen is None:
            self._capacity_seen = self._capacity()
        free, waiting = dict(self._capacity_seen), 0
        for submitted, _ in self._pending.values():  # as Ray starts them: in the order of submission
            request = _request(submitted)
            if _fits(request, free):
                free = {name: round(amount - request.get(name, 0), 6) for name, amount in free.items()}  # 0.1 GPUs ten times
            else:
                waiting += 1
        return _fits(_request(resources), free) or waiting < LOOKAHEAD

    def _capacity(self) -> dict[str, float]:
        """The CPUs and GPUs of the cluster's live nodes together. On a cluster that other jobs share,
        what they hold counts as free: more of the run's tasks may then wait in Ray's queue."""
        total = self._ray.cluster_resources()
        return {"CPU": total.get("CPU", 0), "GPU": total.get("GPU", 0)}

    def submit(self, call: TaskCall, max_retries: int = 3) -> None:
        # Ray retries a task whose worker or node died; an error in the task comes back as a result, never retried.
        options = {"num_cpus": call.num_cpus, "num_gpus": call.num_gpus, "max_retries": max_retries,
                   "runtime_env": self._runtime_env}
        self._pending[self._remote.options(**options).remote(call)] = (call, time.monotonic())

    def on_every_node(self, function, argument, pending: list[Task], timeout_s: float) -> dict[str, object]:
        """`function(argument)` once on each live node that could run one of `pending` (a head node started
        with no CPUs runs none), in the tasks' environment: node -> its result, or the error it raised or
        a TimeoutError. A node is named by its host, address and Ray node id."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = self._ray.remote(function)
        refs = {}
        for node in self._ray.nodes():
            resources = node["Resources"]
            if not node.get("Alive") or not any(_fits(_request(task.resources), resources) for task in pending):
                continue
            label = f"{node['NodeManagerHostname']} ({node['NodeManagerAddress']}, Ray node {node['NodeID'][:12]})"
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            options = {"num_cpus": 0, "max_retries": 0, "runtime_env": self._runtime_env, "scheduling_strategy": strategy}
            refs[remote.options(**options).remote(argument)] = label
        ready, _ = self._ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        results = {}
        for ref, label in refs.items():
            if ref not in ready:
                self._ray.cancel(ref, force=True)
                results[label] = TimeoutError(f"it did not answer within {timeout_s:.0f} s")
                continue
            try:
                results[label] = self._ray.get(ref)
            except self._ray.exceptions.RayError as err:
                results[label] = err
        return results

    def wait(self) -> list[tuple[str, dict]]:
        while True:
            ready, _ = self._ray.wait(list(self._pending), num_returns=1, timeout=0.25)
            self._display.poll_files(self._root)
            if ready:
                break
            capacity = self._capacity()
            if capacity != self._capacity_seen:  # nodes joined (an autoscaler's) or left: the driver submits to fit them
                self._capacity_seen = capacity
                return []
            self._report_queued()
        results = []
        for ref in ready:
            call, _ = self._pending.pop(ref)
            try:
                results.append((call.key, self._ray.get(ref)))
            except self._ray.exceptions.RayError as err:  # the worker died, retries used up
                error = f"{type(err).__name__}: {err}".rstrip() + f"\nRay's logs: {self._logs()}"
                results.append((call.key, {"ok": False, "error": error, "traceback": ""}))
        return results

    def _report_queued(self) -> None:
        """While none of the run's tasks is running, say what a task that has not started after
        resources.queued_report_s waits for: never a silent wait."""
        now = time.monotonic()
        # Begun: its worker made its attempt directory (a task may load a model for a while before its
        # first progress report).
        started = {call.key for call, _ in self._pending.values() if attempts.attempt_started(self._root, call.key, call.token)}
        if started:  # the run's own tasks hold the nodes: an ordinary queue, not a stall
            return
        for call, submitted in self._pending.values():
            if call.key in self._reported or now - submitted < self._queued_report_s:
                continue
            self._reported.add(call.key)
            free = self._ray.available_resources()
            self._display.note(
                f"{call.name} has waited {now - submitted:.0f} s for a node with {call.num_cpus:g} CPU(s) and "
                f"{call.num_gpus:g} GPU(s); free in the cluster now: {free.get('CPU', 0):g} CPU(s), {free.get('GPU', 0):g} GPU(s)"
            )

    def _logs(self) -> str:
        try:
            session = self._ray._private.worker._global_node.get_session_dir_path()
            return f"{Path(session).resolve() / 'logs'} (raylet.out, worker-*.err)"
        except Exception:  # a client connection has no local session
            return "session_latest/logs/raylet.out under the head node's Ray temp dir"

    def close(self, interrupted: bool = False) -> None:
        if interrupted:  # tasks already running on a cluster that stays up must stop too
            for ref in self._pending:
                self._ray.cancel(ref, force=True)
        if self._owned:
            self._ray.shutdown()


# How many of the run's tasks the driver submits beyond those the cluster can run at once: they start
# the moment a task ends (no round trip to the driver), and an autoscaler, which scales on the demand
# waiting in Ray's queue, still sees some. Few, since each keeps its place ahead of any task found
# ready after it.
LOOKAHEAD = 2


def _request(resources: StageResources | TaskCall) -> dict[str, float]:
    request = {"CPU": resources.num_cpus}
    if resources.num_gpus:
        request["GPU"] = resources.num_gpus
    return request


def _fits(request: dict[str, float], free: dict[str, float]) -> bool:
    return all(free.get(name, 0) >= amount for name, amount in request.items())


def _describe(resources: dict[str, float]) -> str:
    return ", ".join(f"{amount:g} {name}" + ("s" if name in ("CPU", "GPU") and amount != 1 else "") for name, amount in resources.items())


def _check_gpus(pending: list[Task], available: float, where: str) -> None:
    needed = max((task.resources.num_gpus for task in pending), default=0)
    if needed > available:
        stages = sorted({task.stage for task in pending if task.resources.num_gpus > available})
        raise PlanError(
            f"stage(s) {', '.join(stages)} ask for {needed:g} GPU(s) per task, but {where} has {available:g}; "
            "set resources.<stage>.num_gpus: 0 to run on CPU, or join a cluster with GPUs via --address"
        )


def start_private_ray() -> None:
    """Start a local Ray that only this run can use: every port on loopback, and token authentication
    with a fresh token that lives only in the environment of this process and the Ray processes it
    starts (never on disk). Ray 2.60 binds its servers to the node's address on every interface
    unless that address is loopback, and resolves a `_node_ip_address` of 127.0.0.1 back to the
    network's: `ENABLE_RAY_CLUSTER`, the switch its laptop mode reads, makes loopback the node's
    address, and is put back once Ray has started (a later `--address` in this process joins as usual).
    Its workers run at the user's priority and import what the stages run as they start
    (WORKER_NICENESS, WORKER_PRELOAD: settings its raylet reads from the environment). It has the CPUs
    this process may use (usable_cpus), not the host's."""
    import ray
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ["RAY_worker_niceness"] = str(WORKER_NICENESS)  # read by the raylet it starts
    os.environ["RAY_preload_python_modules"] = ",".join(WORKER_PRELOAD)  # imported as a worker starts
    cpus = usable_cpus()
    for name, value in idle_worker_settings(cpus).items():
        os.environ.setdefault(name, value)  # a user's own setting stands
    Config.initialize("")  # Ray read both when it was imported; as its own switch to token mode does
    AuthenticationTokenLoader.instance().reset_cache()
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    temp_dir = ray_temp_dir()
    try:
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=128 * 1024**2,
                 _temp_dir=temp_dir, log_to_driver=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
    try:
        check_ray_dir_private(temp_dir)
    except PlanError:
        ray.shutdown()
        raise


# The most idle workers the Ray langspec starts keeps, each holding WORKER_PRELOAD (388 MB RSS measured, 78 MB
# without it): Ray prestarts one per CPU and keeps that many idle, about 50 GB on a 128-CPU host. Eight is as
# many tasks as the paper's study runs at once on a machine of 8 GPUs (its CPU-only tasks are short).
IDLE_WORKERS_MAX = 8


def idle_worker_settings(cpus: int) -> dict[str, str]:
    """The raylet's settings (read from its environment) that keep at most IDLE_WORKERS_MAX idle workers:
    above that, idle workers end after a second (`num_workers_soft_limit`), and Ray does not prestart one
    per CPU (`prestart_worker_first_driver`), so the first tasks start their own workers. A host of up to
    IDLE_WORKERS_MAX CPUs keeps Ray's defaults: a worker per CPU, prestarted while the driver plans."""
    if cpus <= IDLE_WORKERS_MAX:
        return {}
    return {"RAY_num_workers_soft_limit": str(IDLE_WORKERS_MAX), "RAY_prestart_worker_first_driver": "0"}


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup"), own_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """The CPUs this process may use, not the host's: its affinity (taskset, a Slurm job's cpuset), capped by
    its cgroup's CPU quota (a container's --cpus, a Slurm job's cgroup), rounded down, at least 1."""
    count = len(os.sched_getaffinity(0))
    try:
        unified = [line for line in own_cgroup.read_text().splitlines() if line.startswith("0::")]  # cgroup v2: "0::/a/group"
        quota, period = (cgroup_root / unified[0][3:].strip("/") / "cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, IndexError, ValueError):  # cgroup v1 alone, or no quota file: the affinity alone
        pass
    return count


# Ray's unix sockets live under its temp dir (<dir>/session_<time>_<pid>/sockets/plasma_store), and a
# socket's path must fit in 107 bytes: the directory's own path gets at most 40 of them.
RAY_DIR_LENGTH = 40


def ray_temp_dir() -> str:
    """Ray's temp dir: `ray/` inside a 0700 directory of the user's own in the system's temp dir
    (`langspec-<uid>`). Ray 2.60 makes the directory it is given, and the session, sockets and logs
    directories in it, 0777 whatever their mode was; the private parent is what keeps other users
    out of its sockets and logs, so it is never the store (whose mode is its user's choice). The
    parent's name can be guessed: one that someone else made first (or a link) is passed over for
    a fresh private one."""
    base = Path(tempfile.gettempdir())
    if len(str(base)) > RAY_DIR_LENGTH - len(f"/langspec-{os.getuid()}/ray"):
        base = Path("/tmp")
    parent = base / f"langspec-{os.getuid()}"
    try:
        parent.mkdir(mode=0o700)
    except FileExistsError:
        pass
    found = parent.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        parent = Path(tempfile.mkdtemp(prefix="langspec-", dir=base))
    parent.chmod(0o700)  # earlier langspec versions, or the user, may have opened it
    return str(parent / "ray")


def check_ray_dir_private(temp_dir: str) -> None:
    """After Ray started: its directory's parent is still the user's alone (Ray changes the modes of
    what it makes, and must not have changed this one)."""
    found = Path(temp_dir).parent.lstat()
    if found.st_uid != os.getuid() or stat.S_IMODE(found.st_mode) != 0o700:
        raise PlanError(f"Ray's directory {Path(temp_dir).parent} is open to other users (mode {stat.S_IMODE(found.st_mode):o}) "
                        "after Ray started; its sockets would be reachable: report this with your Ray version")
