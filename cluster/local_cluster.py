#!/usr/bin/env python
"""A multi-node Ray cluster on one machine, for trying the cluster paths out (and for tests).

Each node is a separate ``ray start`` (a head without GPUs, workers with *logical* GPUs: Ray
schedules on them like real ones, and TensorFlow simply runs on the CPU). Every node is started
in its own session, so a worker can be removed *ungracefully*: SIGKILL to its raylet and
every worker process it forked, exactly what a machine dying looks like to the rest of the
cluster.

Command line::

    python cluster/local_cluster.py up --workers 2 --gpus-per-worker 1   # prints the addresses
    nhance-batch run in/ out/ --address 127.0.0.1:PORT                   # or:
    nhance-batch submit jobs/example.toml --address http://127.0.0.1:DASHBOARD_PORT --wait
    python cluster/local_cluster.py add-worker                           # the pool grows
    python cluster/local_cluster.py kill-worker                          # a node dies
    python cluster/local_cluster.py down

From Python::

    cluster = LocalCluster()
    cluster.start_head(dashboard=True)
    node = cluster.add_worker(num_gpus=1)
    cluster.remove_worker(node, graceful=False)
    cluster.stop_all()

The state (ports, node sessions) of a cluster started by ``up`` is kept in a JSON file
(``--state``, default ``$TMPDIR/nhance-local-cluster.json``) for the later commands. Nothing
here calls ``ray stop``, which would stop every Ray on the machine, not just this cluster.
Ray 2.5x+ clusters use token authentication when a token exists (``~/.ray/auth_token``); the
nodes and clients started here inherit the environment, so set ``RAY_AUTH_MODE`` in it to choose.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_STATE = Path(tempfile.gettempdir()) / "nhance-local-cluster.json"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def auth_mode() -> str:
    """``RAY_AUTH_MODE`` if set, else ``token`` when a Ray token is available (what a
    ``ray start --head`` does by itself), else ``disabled``."""
    if os.environ.get("RAY_AUTH_MODE"):
        return os.environ["RAY_AUTH_MODE"]
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(path):
        return "token"
    return "disabled"


def _ray_executable() -> str:
    """The ``ray`` next to this Python (the project's virtual environment), else on PATH."""
    candidate = Path(sys.executable).with_name("ray")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if not found:
        raise RuntimeError("the `ray` command was not found: install ray[default]")
    return found


@dataclass
class NodeHandle:
    """One ``ray start``: its session (``pgid``, the session and process-group id of the
    ``ray start`` that began the node; every process of the node is in it) and Ray node id."""

    name: str
    pgid: int
    node_id: str | None = None
    num_gpus: float = 0
    num_cpus: int = 1
    head: bool = False

    def pids(self) -> list[int]:
        """The live processes of this node (raylet, agents, Ray workers)."""
        return _group_pids(self.pgid)


def _group_pids(sid: int) -> list[int]:
    """The live processes of session ``sid``: a node's raylet, agents and Ray workers (the
    raylet puts each worker in a process group of its own, but they stay in its session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # fields after the ")" that closes the command name: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def _raylet_node_id(pgid: int) -> str | None:
    for pid in _group_pids(pgid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0].decode()) == "raylet":
            for arg in args:
                if arg.startswith(b"--node_id="):
                    return arg.split(b"=", 1)[1].decode()
    return None


@dataclass
class LocalCluster:
    """A head plus worker nodes on this machine, each ``ray start`` in its own session.

    Attributes:
        temp_dir: Ray's root temporary folder for this cluster (a fresh one by default, so
            several clusters on one machine do not share ``/tmp/ray``).
        env: extra environment for every node (e.g. ``RAY_AUTH_MODE``).
        system_config: Ray system config for the head (e.g. faster node-death detection).
    """

    temp_dir: str = ""
    env: dict[str, str] = field(default_factory=dict)
    system_config: dict = field(default_factory=dict)
    gcs_port: int = 0
    dashboard_port: int | None = None
    head: NodeHandle | None = None
    workers: list[NodeHandle] = field(default_factory=list)
    _counter: int = 0

    def __post_init__(self) -> None:
        if not self.temp_dir:
            # short: Ray's unix socket paths live under it (max ~107 characters)
            self.temp_dir = tempfile.mkdtemp(prefix="nhray-", dir="/tmp")
        # Every node must agree on token authentication. `ray start --head` turns it on by
        # itself when a token exists, but `ray start --address` (and `ray.init(address=...)`)
        # do not, so the mode is decided once here and given to every node explicitly.
        self.env.setdefault("RAY_AUTH_MODE", auth_mode())

    def client_env(self) -> dict[str, str]:
        """Environment for a client of this cluster (``nhance-batch run --address`` ...)."""
        return {**os.environ, "RAY_AUTH_MODE": self.env["RAY_AUTH_MODE"]}

    # -- addresses --------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The GCS address, for ``ray.init(address=...)`` / ``nhance-batch run --address``."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str | None:
        """The Jobs API / dashboard address, for ``nhance-batch submit --address``."""
        return f"http://127.0.0.1:{self.dashboard_port}" if self.dashboard_port else None

    # -- nodes ------------------------------------------------------------------------
    def _ray_start(self, name: str, args: list[str], timeout: float) -> NodeHandle:
        env = {**os.environ, **self.env}
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Job entrypoints (`python -m nhance_batch ...`) find this Python first.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        log = Path(self.temp_dir) / f"{name}.start.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([_ray_executable(), "start", *args], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                raise RuntimeError(f"`ray start` for {name} took over {timeout:.0f}s; "
                                   f"see {log}") from None
        if rc != 0:
            _kill_group(proc.pid)
            raise RuntimeError(f"`ray start` for {name} failed (exit {rc}):\n"
                               + log.read_text(errors="replace")[-3000:])
        return NodeHandle(name=name, pgid=proc.pid, node_id=_raylet_node_id(proc.pid))

    def start_head(self, *, num_cpus: int = 2, dashboard: bool = True,
                   object_store_memory: int = 256 << 20, timeout: float = 120) -> NodeHandle:
        """Start the head node (no GPUs). With ``dashboard``, the Jobs API is served too."""
        if self.head is not None:
            raise RuntimeError("the head is already running")
        self.gcs_port = free_port()
        args = ["--head", f"--port={self.gcs_port}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={num_cpus}", "--num-gpus=0", f"--temp-dir={self.temp_dir}",
                f"--object-store-memory={object_store_memory}",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}", "--disable-usage-stats"]
        if dashboard:
            self.dashboard_port = free_port()
            args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={self.dashboard_port}"]
        else:
            args += ["--include-dashboard=false"]
        if self.system_config:
            args.append(f"--system-config={json.dumps(self.system_config)}")
        self.head = self._ray_start("head", args, timeout)
        self.head.head, self.head.num_cpus = True, num_cpus
        if dashboard:
            self._wait_http(timeout)
        return self.head

    def add_worker(self, *, num_gpus: float = 1, num_cpus: int = 1,
                   object_store_memory: int = 128 << 20, timeout: float = 120) -> NodeHandle:
        """Start one worker node with ``num_gpus`` logical GPUs and join it to the head."""
        if self.head is None:
            raise RuntimeError("start the head first")
        self._counter += 1
        name = f"worker{self._counter}"
        # Each worker has a temporary folder of its own, as a node on its own machine would:
        # nodes sharing one session folder share its runtime_resources, and each node's agent
        # removes and unpacks a job's working_dir again there when one of that job's actors
        # starts on it, under the feet of the job's driver on the head (a lazy import of the
        # driver then finds its module gone).
        node_temp = Path(self.temp_dir) / f"n{self._counter}"  # short: socket paths
        node_temp.mkdir(exist_ok=True)
        args = [f"--address={self.address}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", f"--temp-dir={node_temp}",
                f"--object-store-memory={object_store_memory}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}", "--include-log-monitor=false",
                "--disable-usage-stats"]
        node = self._ray_start(name, args, timeout)
        node.num_gpus, node.num_cpus = num_gpus, num_cpus
        self.workers.append(node)
        return node

    def remove_worker(self, node: NodeHandle, *, graceful: bool = False,
                      timeout: float = 15) -> None:
        """Remove a worker node: SIGKILL every process of it (a machine dying), or
        SIGTERM first when ``graceful``."""
        if graceful:
            _signal_group(node.pgid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while node.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
        _kill_group(node.pgid)
        if node in self.workers:
            self.workers.remove(node)

    def stop_all(self, *, remove_temp: bool = True) -> None:
        """Kill every node of this cluster (workers first) and remove its temporary folder."""
        for node in list(self.workers):
            self.remove_worker(node)
        if self.head is not None:
            _kill_group(self.head.pgid)
            self.head = None
        if remove_temp:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    # -- waiting ----------------------------------------------------------------------
    def _wait_http(self, timeout: float) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        url = f"{self.dashboard_url}/api/version"
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                return
            except urllib.error.HTTPError:
                return  # it answers (401 when token authentication is on)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard at {self.dashboard_url} did not come up "
                                       f"in {timeout:.0f}s; see {self.temp_dir}") from None
                time.sleep(0.5)

    # -- persistence (for the command line) -------------------------------------------
    def save(self, path: Path) -> None:
        data = asdict(self)
        path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: Path) -> "LocalCluster":
        data = json.loads(path.read_text())
        head = data.pop("head")
        workers = data.pop("workers")
        cluster = cls(**data)
        cluster.head = NodeHandle(**head) if head else None
        cluster.workers = [NodeHandle(**w) for w in workers]
        return cluster


def _signal_group(sid: int, sig: int) -> None:
    """Signal every process of a node's session (raylet first, then its workers)."""
    for pid in _group_pids(sid):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_group(sid: int, timeout: float = 10) -> None:
    """SIGKILL every process of a node's session and wait until they are gone."""
    deadline = time.monotonic() + timeout
    while True:
        _signal_group(sid, signal.SIGKILL)
        if not _group_pids(sid) or time.monotonic() > deadline:
            return
        time.sleep(0.1)


# -- module-level convenience (one cluster per process) ----------------------------------
_default: LocalCluster | None = None


def start_head(**kwargs) -> NodeHandle:
    global _default
    _default = _default or LocalCluster()
    return _default.start_head(**kwargs)


def add_worker(**kwargs) -> NodeHandle:
    if _default is None:
        raise RuntimeError("call start_head() first")
    return _default.add_worker(**kwargs)


def remove_worker(node: NodeHandle, graceful: bool = False) -> None:
    if _default is None:
        raise RuntimeError("no cluster")
    _default.remove_worker(node, graceful=graceful)


def stop_all() -> None:
    global _default
    if _default is not None:
        _default.stop_all()
        _default = None


# -- command line ---------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE,
                        help=f"where the cluster's state is kept [{DEFAULT_STATE}]")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a head and worker nodes")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--gpus-per-worker", type=float, default=1)
    up.add_argument("--cpus-per-worker", type=int, default=1)
    up.add_argument("--head-cpus", type=int, default=2)
    up.add_argument("--no-dashboard", action="store_true",
                    help="no dashboard (and so no Jobs API / submit)")
    add = sub.add_parser("add-worker", help="add one worker node")
    add.add_argument("--gpus", type=float, default=1)
    add.add_argument("--cpus", type=int, default=1)
    kill = sub.add_parser("kill-worker", help="SIGKILL a worker node (default: the newest)")
    kill.add_argument("name", nargs="?")
    sub.add_parser("status", help="print the addresses and nodes")
    sub.add_parser("down", help="kill every node and forget the cluster")
    args = parser.parse_args(argv)

    if args.command == "up":
        if args.state.exists():
            parser.error(f"{args.state} exists: run `down` first (or pass another --state)")
        cluster = LocalCluster()
        try:
            cluster.start_head(num_cpus=args.head_cpus, dashboard=not args.no_dashboard)
            for _ in range(args.workers):
                cluster.add_worker(num_gpus=args.gpus_per_worker, num_cpus=args.cpus_per_worker)
        except BaseException:
            cluster.stop_all()
            raise
        cluster.save(args.state)
        _print_status(cluster)
        return 0
    if not args.state.exists():
        parser.error(f"no cluster state at {args.state}: run `up` first")
    cluster = LocalCluster.load(args.state)
    if args.command == "add-worker":
        node = cluster.add_worker(num_gpus=args.gpus, num_cpus=args.cpus)
        print(f"added {node.name} (node {node.node_id})")
    elif args.command == "kill-worker":
        if not cluster.workers:
            parser.error("no worker nodes")
        node = next((w for w in cluster.workers if w.name == args.name), None) \
            if args.name else cluster.workers[-1]
        if node is None:
            parser.error(f"no worker named {args.name}")
        cluster.remove_worker(node, graceful=False)
        print(f"killed {node.name} (node {node.node_id})")
    elif args.command == "down":
        cluster.stop_all()
        args.state.unlink()
        print("stopped")
        return 0
    cluster.save(args.state)
    _print_status(cluster)
    return 0


def _print_status(cluster: LocalCluster) -> None:
    print(f"ray address:   {cluster.address}        (nhance-batch run ... --address)")
    if cluster.dashboard_url:
        print(f"dashboard/jobs: {cluster.dashboard_url}  (nhance-batch submit ... --address)")
    for node in [cluster.head, *cluster.workers]:
        if node is not None:
            alive = "alive" if node.pids() else "gone"
            print(f"  {node.name:8s} gpus={node.num_gpus:g} cpus={node.num_cpus} "
                  f"pgid={node.pgid} node_id={node.node_id} {alive}")


if __name__ == "__main__":
    sys.exit(main())
