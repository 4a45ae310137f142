"""``striata bench hil``: does a person's help make learning faster? Env steps to a target success rate
for the same run with and without interventions.

Both runs are ``striata train CONFIG`` with the intervention ports on and the same seed; they stop at
the first evaluation (every ``eval_every`` env steps, deterministic policy) that reaches ``target``.
In the run with interventions, ``striata intervene`` serves the console on the job and a scripted
operator (``striata.actors.console.operator``) drives its websocket the way a person's page does: it claims
control, takes over the watched env for its first ``episodes`` episodes and picks the cube, then lets
go. Its transitions reach the learner flagged, and SAC/RLPD samples them from the demo buffer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from striata.actors.console.operator import ScriptedOperator
from striata.experiment import ExperimentConfig

STRIATA = [sys.executable, "-m", "striata"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(predicate: Any, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process ended with exit code {proc.returncode}")
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _console_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen, timeout_s: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def _run(
    config: Path,
    settings: list[str],
    folder: Path,
    episodes: int,
    ee_step: float,
    timeout_s: float,
) -> dict[str, Any]:
    runs = folder / "runs"
    log = (folder / "train.log").open("w")
    train = subprocess.Popen(
        [*STRIATA, "train", str(config), "--runs", str(runs), *settings],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )  # fmt: skip
    console = None
    operator: dict[str, Any] | None = None
    try:
        if episodes > 0:
            hil_file = _wait(lambda: next(runs.glob("*/hil.json"), None), 300, "hil.json", train)
            port = _free_port()
            console_log = (folder / "console.log").open("w")
            console = subprocess.Popen(
                [*STRIATA, "intervene", "--job", str(hil_file.parent), "--port", str(port),
                 "--no-spacemouse"],
                stdout=console_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            _wait(lambda: _console_up(port), 120, "the console", console)
            scripted = ScriptedOperator(f"ws://127.0.0.1:{port}/ws", episodes, ee_step)
            operator = asyncio.run(scripted.run(timeout_s=episodes * 60.0))
        train.wait(timeout_s)
    finally:
        if console is not None:
            _stop(console, 30)
        _stop(train, 120)
    summary_file = next(runs.glob("*/summary.json"), None)
    if summary_file is None:
        raise RuntimeError(f"the training run wrote no summary; see {folder / 'train.log'}")
    summary = json.loads(summary_file.read_text())
    return {"summary": summary, "operator": operator}


def _figures(result: dict[str, Any], target: float) -> dict[str, Any]:
    summary = result["summary"]
    reached = next((e for e in summary["evaluations"] if e["success"] >= target), None)
    figures = {
        "env_steps_to_target": reached["env_steps"] if reached else None,
        "minutes_to_target": reached["minutes"] if reached else None,
        "env_steps": summary["env_steps"],
        "final_success": summary["evaluations"][-1]["success"] if summary["evaluations"] else None,
        "intervention_transitions": summary.get("intervention_transitions", 0),
        "demo_size": summary.get("demo_size", 0),
        "curve": [(e["env_steps"], e["success"]) for e in summary["evaluations"]],
    }
    if result["operator"] is not None:
        figures["operator"] = result["operator"]
    return figures


def bench_hil(
    config_path: Path,
    config: ExperimentConfig,
    overrides: list[str],
    episodes: int,
    target: float,
    eval_every: int,
    max_env_steps: int,
    max_minutes: float,
) -> dict[str, Any]:
    """Env steps to ``target`` eval success with a scripted operator's first ``episodes`` and without."""
    if config.task != "panda_pick":
        raise ValueError(f"task: the scripted operator picks cubes (panda_pick), not {config.task}")
    settings = [
        "hil.enabled=true", f"eval.every_env_steps={eval_every}", f"eval.stop_at_success={target}",
        f"total_env_steps={max_env_steps}", f"max_minutes={max_minutes}", "eval.every_s=100000",
        "checkpoint_every_s=100000", *overrides,
    ]  # fmt: skip
    args = [item for setting in settings for item in ("--set", setting)]
    ee_step = config.task_settings().ee_step
    results = {}
    with tempfile.TemporaryDirectory(prefix="striata-bench-hil-") as tmp:
        for name, k in (("with_interventions", episodes), ("without_interventions", 0)):
            folder = Path(tmp) / name
            folder.mkdir()
            outcome = _run(config_path, args, folder, k, ee_step, timeout_s=max_minutes * 60 + 300)
            results[name] = _figures(outcome, target)
    with_steps = results["with_interventions"]["env_steps_to_target"]
    without_steps = results["without_interventions"]["env_steps_to_target"]
    return {
        "task": config.task,
        "target_success": target,
        "intervened_episodes": episodes,
        **results,
        "steps_ratio": round(with_steps / without_steps, 3) if with_steps and without_steps else None,
    }
