"""A local multi-node Ray cluster on 127.0.0.1 for tests: a head and worker nodes, each its own raylet.

``ray start --head`` turns on token authentication (token in ~/.ray/auth_token); every node and
client that joins must then ask for it (``RAY_AUTH_MODE=token``), as users' machines do. Each node
gets its own temporary folder, as each machine of a real cluster has its own disk (nodes sharing
one would unpack a job's package over each other); Ray's socket paths must fit in 107 bytes, so the
folders live directly under /tmp.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).parent / "ray")


@dataclass(frozen=True)
class Cluster:
    address: str  # GCS, for `striata train --address` and ray.init
    dashboard: str | None  # job server, for `striata launch --cluster`


def cluster_env() -> dict[str, str]:
    """Environment of every process that talks to the cluster (this venv's python first on PATH).

    The nodes start their workers at nice 0 (``RAY_worker_niceness``), as docs/cluster.md advises for
    nodes shared with other work: at Ray's default 15 the actors starve beside any busy process."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_worker_niceness": "0",
        "PATH": path,
    }


@contextmanager
def local_cluster(
    port: int,
    head_cpus: int,
    head_resources: dict[str, float] | None = None,
    workers: tuple[tuple[int, dict[str, float]], ...] = (),
    dashboard_port: int | None = None,
) -> Iterator[Cluster]:
    """Start the nodes (``workers``: (num_cpus, custom resources) each); stop them all on exit."""
    env = cluster_env()
    temp_dirs = [tempfile.mkdtemp(prefix="ray-", dir="/tmp") for _ in range(1 + len(workers))]
    head = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", *_agent_ports(port, 0)]
    head += [f"--num-cpus={head_cpus}", f"--temp-dir={temp_dirs[0]}", "--disable-usage-stats"]
    if head_resources:
        head.append(f"--resources={json.dumps(head_resources)}")
    if dashboard_port is None:
        head.append("--include-dashboard=false")
    else:
        head += [
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
        ]
    try:
        subprocess.run(head, check=True, capture_output=True, timeout=180, env=env)
        for index, (num_cpus, resources) in enumerate(workers):
            worker = [RAY, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1"]
            worker += _agent_ports(port, index + 1)
            worker += [f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources)}"]
            worker += [f"--temp-dir={temp_dirs[index + 1]}", "--disable-usage-stats"]
            subprocess.run(worker, check=True, capture_output=True, timeout=180, env=env)
        dashboard = None if dashboard_port is None else f"127.0.0.1:{dashboard_port}"
        yield Cluster(f"127.0.0.1:{port}", dashboard)
    finally:
        stop_cluster(temp_dirs)
        for temp_dir in temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _agent_ports(port: int, node: int) -> list[str]:
    # Every node on one machine needs its own dashboard-agent ports (the defaults are fixed), or
    # only the first agent runs and the job server finds none to submit to.
    return [
        f"--dashboard-agent-listen-port={port + 100 + 2 * node}",
        f"--dashboard-agent-grpc-port={port + 101 + 2 * node}",
    ]


def stop_cluster(temp_dirs: list[str]) -> None:
    """Kill this cluster's processes only: `ray stop` would also end every other Ray on the machine.

    Every Ray process names its node's temporary folder on its command line; helpers it forked are
    its children.
    """
    spared = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    roots = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.pid not in spared and _mentions(p.info["cmdline"], temp_dirs)
    ]
    mine = {child for root in roots for child in _tree(root)}
    # SIGKILL at once: a node that outlives its head spins trying to reconnect, and a graceful
    # stop gains nothing for a throwaway test cluster.
    for process in mine:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(list(mine), timeout=10)


def _tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def _mentions(cmdline: list[str] | None, folders: list[str]) -> bool:
    text = " ".join(cmdline or ())
    return any(folder in text for folder in folders)


def query(address: str, code: str) -> object:
    """Run ``code`` (which must print one JSON line last) in a fresh Python joined to the cluster.

    A subprocess, because Ray reads RAY_AUTH_MODE once, at import, and earlier tests imported it here.
    """
    script = f"import json, ray; ray.init(address={address!r}, log_to_driver=False)\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=cluster_env()
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])
