"""Where the intervention ports of a job are: a run folder's ``hil.json`` (rewritten when an actor
restarts) or one ``tcp://HOST:PORT`` endpoint given by hand (any process that serves the port)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HIL_FILE = "hil.json"
_TCP = re.compile(r"^tcp://(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")


class ConsoleError(ValueError):
    """A job or choice the console cannot use, as one line for the user."""


@dataclass(frozen=True)
class Port:
    """One actor's intervention port."""

    actor_id: int
    endpoint: str
    num_envs: int | None = None
    pid: int | None = None


class Job:
    """The ports of a job. ``refresh`` re-reads them; ``finished`` is set when the job says it ended."""

    def __init__(self, description: str, ports: list[Port], run_dir: Path | None = None) -> None:
        self.description = description
        self.ports = ports
        self.run_dir = run_dir
        self.finished = False
        self.task: str | None = None

    def port(self, actor_id: int) -> Port:
        for port in self.ports:
            if port.actor_id == actor_id:
                return port
        known = ", ".join(str(p.actor_id) for p in self.ports) or "none"
        raise ConsoleError(f"--actor {actor_id}: the job has no such actor (actors: {known})")

    def refresh(self) -> bool:
        """Re-read the ports; True when they changed. A fixed address never changes."""
        if self.run_dir is None:
            return False
        data = _read_hil(self.run_dir)
        if data is None:
            return False
        ports = _ports(data, self.run_dir)
        self.finished = bool(data.get("finished", False))
        changed = ports != self.ports
        self.ports = ports
        return changed


def open_job(job: str, wait_s: float = 60.0) -> Job:
    """The job named by ``--job``: a run folder of `striata train` with hil on, or a tcp:// address."""
    if job.startswith("tcp://"):
        match = _TCP.match(job)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ConsoleError(f"--job {job!r}: not an address of the form tcp://HOST:PORT")
        return Job(job, [Port(0, job)])
    run_dir = Path(job)
    if not run_dir.is_dir():
        raise ConsoleError(f"--job {job!r}: neither a run folder nor a tcp://HOST:PORT address")
    data = _read_hil(run_dir)
    if data is None and _hil_enabled(run_dir):
        # The driver writes hil.json once its actors are up; a console started with the run waits for it.
        deadline = time.monotonic() + wait_s
        while data is None and time.monotonic() < deadline:
            time.sleep(0.5)
            data = _read_hil(run_dir)
    if data is None:
        raise ConsoleError(
            f"--job {job}: no {HIL_FILE} in the run folder; start training with `--set hil.enabled=true`"
        )
    if data.get("finished"):
        raise ConsoleError(f"--job {job}: the job has finished ({HIL_FILE} says finished: true)")
    found = Job(str(run_dir), _ports(data, run_dir), run_dir)
    found.task = data.get("task")
    return found


def _read_hil(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / HIL_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ConsoleError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise ConsoleError(f"{path}: expected a map with v: 1 (got v: {data.get('v')!r})")
    return data


def _ports(data: dict[str, Any], run_dir: Path) -> list[Port]:
    try:
        return [
            Port(int(a["actor_id"]), str(a["endpoint"]), a.get("num_envs"), a.get("pid"))
            for a in data.get("actors", [])
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConsoleError(f"{run_dir / HIL_FILE}: bad actor entry ({exc!r})") from None


def _hil_enabled(run_dir: Path) -> bool:
    """Whether the run's resolved config turns hil on (then hil.json is still to come)."""
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (FileNotFoundError, yaml.YAMLError):
        return False
    hil = config.get("hil") if isinstance(config, dict) else None
    return isinstance(hil, dict) and bool(hil.get("enabled"))
