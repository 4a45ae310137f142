"""Helpers for the console tests: a small real `striata train` job with hil on, and `striata intervene`
on it, both as subprocesses on 127.0.0.1, stopped the way a user stops them; every wait is bounded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
STRIATA = [sys.executable, "-m", "striata"]
# panda_pick, 2 actors x 2 envs, with the intervention ports on; budgets far beyond a test's length
# (the test stops the run), no evaluation or checkpoint in between. The learner receives every chunk
# but starts no SAC update within a test: on a small shared machine the updates would hold the actors
# between chunks, and the test's takeovers want steps to act on.
HIL_JOB = [
    "configs/panda_pick.yaml",
    *("--set", "hil.enabled=true"),
    *("--set", "actors.num_actors=2"),
    *("--set", "actors.envs_per_actor=2"),
    *("--set", "actors.chunk_length=10"),
    *("--set", "actors.num_cpus=0.5"),
    *("--set", "eval.every_s=600"),
    *("--set", "eval.episodes=2"),
    *("--set", "eval.num_envs=2"),
    *("--set", "sac.batch_size=64"),
    *("--set", "learner.learning_starts=1000000"),
    *("--set", "checkpoint_every_s=600"),
    *("--set", "total_env_steps=10000000"),
    *("--set", "max_minutes=10"),
]


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}\n{tail}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class HilJob:
    proc: subprocess.Popen
    run_dir: Path
    log: Path

    def status(self) -> dict[str, Any]:
        path = self.run_dir / "status.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def stop(self, timeout_s: float = 120.0) -> dict[str, Any]:
        """SIGTERM, as Ctrl-C: the run finishes its loop and writes summary.json; returns the summary."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        assert code == 0, self.log.read_text()[-3000:]
        return json.loads((self.run_dir / "summary.json").read_text())


@contextlib.contextmanager
def hil_job(
    tmp_path: Path, extra: tuple[str, ...] = (), job: tuple[str, ...] | list[str] = tuple(HIL_JOB)
) -> Iterator[HilJob]:
    """A running job (``job``: config and overrides, default ``HIL_JOB``) whose hil.json is written;
    killed (with its local Ray) if the test did not stop it."""
    log = tmp_path / "train.log"
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [*STRIATA, "train", *job, *extra, "--runs", str(runs)],
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        run_dir = wait_for(
            lambda: (
                next((d for d in runs.glob("*") if (d / "hil.json").exists()), None)
                or (proc.poll() is not None and pytest.fail(log.read_text()[-3000:]))
            ),
            240,
            "hil.json",
            log,
        )
        yield HilJob(proc, run_dir, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@dataclass
class Console:
    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        """SIGTERM: the console hands back, closes the session writer and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


@contextlib.contextmanager
def intervene(job: str, tmp_path: Path, *args: str) -> Iterator[Console]:
    """`striata intervene --job JOB` on a free port, once its page answers."""
    port = free_port()
    log = tmp_path / "console.log"
    proc = subprocess.Popen(
        [*STRIATA, "intervene", "--job", job, "--port", str(port), "--no-spacemouse", *args],
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the console exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200
        return False

    try:
        wait_for(up, 60, "the console's page", log)
        yield Console(proc, url, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
