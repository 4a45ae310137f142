"""`striata train` with the reward server on, as users run it: labels reach the learner, and a reward
server killed mid-training costs labels, never the run.

Each test runs `striata train configs/panda_pick_vlm.yaml` in a subprocess with its own local Ray on
127.0.0.1 and a reward server it starts itself (torch backend, random weights: what is tested is the
wiring, not the model). Frames are small and episodes short so that runs stay short; every wait is
bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "reward_model.server.backend.checkpoint": "null",
    "reward_model.camera": "workspace",
    "reward_model.height": 32,
    "reward_model.width": 32,
    "reward_model.every_k": 2,
    "reward_model.audit_every_s": 1,
    "reward_model.label_timeout_s": 10,
    "reward_model.deadline_ms": 3000,
    "task_config.episode_length_s": 1.0,
    "actors.num_actors": 1,
    "actors.envs_per_actor": 2,
    "actors.chunk_length": 5,
    "learner.learning_starts": 20,
    "sac.batch_size": 16,
    "eval.every_s": 600,
    "eval.episodes": 2,
    "eval.num_envs": 2,
    "checkpoint_every_s": 600,
}


def _train(tmp_path: Path, **extra: object) -> subprocess.Popen:
    overrides = [arg for key, value in {**SMALL, **extra}.items() for arg in ("--set", f"{key}={value}")]
    log = (tmp_path / "train.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "striata", "train", "configs/panda_pick_vlm.yaml", *overrides,
         "--runs", str(tmp_path / "runs")],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def _status(tmp_path: Path) -> dict:
    for path in (tmp_path / "runs").glob("*/status.json"):
        with contextlib.suppress(json.JSONDecodeError, OSError):
            return json.loads(path.read_text())
    return {}


def _labels_ok(status: dict) -> int:
    return status.get("reward_model", {}).get("label_statuses", {}).get("ok", 0)


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen, tmp_path: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    tail = (tmp_path / "train.log").read_text()[-3000:]
    pytest.fail(f"timed out after {timeout_s} s (or the run ended) waiting for {what}\n{tail}")


def _finish(proc: subprocess.Popen, timeout_s: float) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise


def _summary(tmp_path: Path) -> dict:
    (path,) = list((tmp_path / "runs").glob("*/summary.json"))
    return json.loads(path.read_text())


def test_labels_reach_the_learner(tmp_path: Path) -> None:
    proc = _train(tmp_path, total_env_steps=150)
    code = _finish(proc, 240)
    log = (tmp_path / "train.log").read_text()
    assert code == 0, log[-3000:]
    reward = _summary(tmp_path)["reward_model"]
    assert reward["label_statuses"].get("ok", 0) > 0, reward
    assert reward["labelled_steps"] > 0
    # SAC learns from labelled steps only: every replayed transition was relabelled, none other.
    assert _summary(tmp_path)["replay_size"] == reward["labelled_steps"]
    assert reward["audit"]["count"] > 0
    assert reward["server_pid"] is not None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tb,) = list((tmp_path / "runs").glob("*/tb"))
    tags = EventAccumulator(str(tb)).Reload().Tags()["scalars"]
    assert {"reward_model/labelled_steps", "reward_model/labels_ok", "reward_model/count"} <= set(tags)


@pytest.mark.slow
def test_killed_reward_server_costs_labels_not_the_run(tmp_path: Path) -> None:
    proc = _train(tmp_path, total_env_steps=10**6, max_minutes=4)
    try:
        first = _wait_for(
            lambda: _labels_ok(s := _status(tmp_path)) and s,
            150, "the first labels", proc, tmp_path,
        )  # fmt: skip
        os.kill(first["reward_model"]["server_pid"], signal.SIGKILL)
        killed_at_steps = first["env_steps"]
        # The run notices, starts the server again on the same port; meanwhile the actors keep stepping.
        back = _wait_for(
            lambda: (s := _status(tmp_path)).get("reward_model", {}).get("server_restarts") and s,
            120, "the reward server to be restarted", proc, tmp_path,
        )  # fmt: skip
        assert back["env_steps"] > killed_at_steps
        ok_when_back = _labels_ok(back)
        resumed = _wait_for(
            lambda: _labels_ok(s := _status(tmp_path)) > ok_when_back and s,
            90, "labels after the restart", proc, tmp_path,
        )  # fmt: skip
        statuses = resumed["reward_model"]["label_statuses"]
        assert statuses.get("dropped", 0) + statuses.get("late", 0) > 0, statuses
        assert resumed["reward_model"]["server_pid"] != first["reward_model"]["server_pid"]
        proc.send_signal(signal.SIGTERM)  # a graceful stop: checkpoint, final evaluation, summary
        code = _finish(proc, 120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert code == 0, (tmp_path / "train.log").read_text()[-3000:]
    summary = _summary(tmp_path)
    assert summary["reward_model"]["labelled_steps"] > 0
    assert summary["reward_model"]["server_restarts"] == 1
