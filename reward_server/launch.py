"""Starting a reward server for ``striata train`` and tests: a subprocess, or a Ray actor on a chosen node.

``start_reward_server(config)`` runs ``python -m striata.reward_server.server`` and returns once the server
answers ``health``; the handle gives ``endpoint``, ``stop()`` (SIGTERM, then SIGKILL) and ``kill()``.
``start_reward_server_actor(config, num_gpus=..., resources=...)`` places the server on a Ray node
by resources (a GPU node when ``num_gpus`` > 0); it must bind an address other nodes reach.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any

from striata.reward_server.client import RewardServerUnavailable, wait_until_healthy
from striata.reward_server.config import RewardServerConfig


class RewardServerHandle:
    """A reward server subprocess."""

    def __init__(self, process: subprocess.Popen, endpoint: str) -> None:
        self.process = process
        self.endpoint = endpoint

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask it to end (SIGTERM); kill it if it has not within ``timeout_s``."""
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipes()

    def kill(self) -> None:
        """End it at once (SIGKILL), as a crash would."""
        if self.alive:
            self.process.kill()
            self.process.wait(timeout=10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> RewardServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_reward_server(config: RewardServerConfig, timeout_s: float = 120.0) -> RewardServerHandle:
    """Start a server subprocess and wait until it is healthy; raises ``RewardServerUnavailable``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "striata.reward_server.server", "--config-json", config.model_dump_json()],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    give_up = time.monotonic() + timeout_s
    try:
        endpoint = _read_endpoint(process, give_up)
        wait_until_healthy(endpoint, max(1.0, give_up - time.monotonic()))
    except BaseException:
        process.kill()
        process.wait(timeout=10)
        raise
    return RewardServerHandle(process, endpoint)


def _read_endpoint(process: subprocess.Popen, give_up: float) -> str:
    """The first stdout line of the server is ``{"endpoint": ...}``, printed once it has bound."""
    assert process.stdout is not None
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RewardServerUnavailable(
                f"reward server exited with code {process.returncode} while starting"
            )
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline().decode(errors="replace").strip()
            if line.startswith("{"):
                return str(json.loads(line)["endpoint"])
    raise RewardServerUnavailable("reward server did not report its endpoint in time")


class RewardServerActor:
    """Body of the Ray actor: the server runs in the actor's background threads."""

    def __init__(self, config_json: str) -> None:
        from striata.reward_server.server import RewardServer

        self._server = RewardServer(RewardServerConfig.model_validate_json(config_json))
        self._endpoint = self._server.start()

    def endpoint(self) -> str:
        return self._endpoint

    def metrics(self) -> dict[str, Any]:
        return self._server.snapshot()

    def stop(self) -> None:
        self._server.stop()


def start_reward_server_actor(
    config: RewardServerConfig,
    *,
    num_gpus: float = 0.0,
    num_cpus: float = 1.0,
    resources: dict[str, float] | None = None,
    timeout_s: float = 120.0,
) -> tuple[Any, str]:
    """(actor handle, endpoint) of a server in a Ray actor; Ray must be initialised."""
    import ray

    actor = (
        ray.remote(RewardServerActor)
        .options(num_gpus=num_gpus, num_cpus=num_cpus, resources=resources or {}, max_restarts=-1)
        .remote(config.model_dump_json())
    )
    endpoint = ray.get(actor.endpoint.remote(), timeout=timeout_s)
    wait_until_healthy(endpoint, timeout_s)
    return actor, endpoint
