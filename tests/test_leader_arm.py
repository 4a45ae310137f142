"""The SO-101 leader arm as the console's teleop device (actors/console/leader_arm.py): the mapping from
the leader's pose to the task's actions, and, end to end, a leader on a fake Feetech bus (``StsBus`` on
a pty, read by the real scservo_sdk) taking over an env of a real `striata train` so101_reach job
through `striata intervene --leader-arm`, driving it, and its steps reaching the learner's demo buffer.

Every wait is bounded; everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import numpy as np
import pytest
import websockets
from console_job import hil_job, intervene, wait_for

from striata.actors.console.leader_arm import GRIPPER_CLOSED, GRIPPER_OPEN, JOINT_STEP, leader_action
from striata.deploy.arms.feetech import ADDR_PRESENT_POSITION, ADDR_TORQUE_ENABLE, RAD_PER_STEP
from striata.deploy.arms.sts_bus import StsBus
from striata.envs.tasks.so101.config import REACH_OBS_TERMS, obs_slices

JOINT_TARGET = obs_slices(REACH_OBS_TERMS)["joint_target"]
# so101_reach with the ports on: one actor of 2 envs, no learner update (it would hold the actor between
# chunks), no evaluation or checkpoint within the test; the test stops the run.
LEADER_JOB = (
    "configs/so101_reach.yaml",
    *("--set", "hil.enabled=true"),
    *("--set", "actors.num_actors=1"),
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
    *("--set", "max_minutes=5"),
)
# Where the test moves the leader (rad, servo order, gripper last): within every joint's limits.
POSE = np.array([0.4, -0.3, 0.3, 0.2, 0.1, 0.3])
HOLD_STEPS = 5  # taken-over steps with the follower already on the leader's pose
TOLERANCE = 0.02  # rad: the leader's pose is read in servo steps of 0.0015 rad


class LeaderBus(StsBus):
    """A leader's six servos whose present positions the test sets; it records torque writes."""

    def __init__(self) -> None:
        self.torque_writes: list[int] = []
        super().__init__([1, 2, 3, 4, 5, 6])
        self.pose(np.array([0.0, 0.0, 0.0, 0.0, 0.0, GRIPPER_OPEN]))

    def pose(self, q: np.ndarray) -> None:
        """Put the leader at ``q`` (rad; the default calibration: 2048 steps at 0 rad, direction +1)."""
        with self.lock:
            for servo, angle in enumerate(q, start=1):
                self.set_register(servo, ADDR_PRESENT_POSITION, 2048 + round(float(angle) / RAD_PER_STEP))

    def written(self, servo: int, address: int, length: int) -> None:
        if address <= ADDR_TORQUE_ENABLE < address + length:
            self.torque_writes.append(self.register(servo, ADDR_TORQUE_ENABLE, 1))


def test_leader_pose_maps_to_target_deltas_and_gripper_opening() -> None:
    target = np.array([0.0, 0.05, -0.3, 0.0, 0.0, 0.0])
    leader = np.array([0.05, 0.05, 0.5, -0.5, 0.0, GRIPPER_OPEN])
    np.testing.assert_allclose(leader_action(leader, target), [0.5, 0.0, 1.0, -1.0, 0.0, -1.0])
    leader[-1] = GRIPPER_CLOSED
    assert leader_action(leader, target)[-1] == pytest.approx(1.0)
    leader[-1] = (GRIPPER_OPEN + GRIPPER_CLOSED) / 2
    assert leader_action(leader, target)[-1] == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"need 6 joints each, got \(5,\)"):
        leader_action(leader[:5], target)


def _on_pose(step: dict[str, Any]) -> bool:
    """Whether the follower's targets after ``step`` are on the leader's pose."""
    return bool(np.abs(np.asarray(step["next_obs"]["state"])[JOINT_TARGET] - POSE).max() < TOLERANCE)


class Page:
    """The console's websocket as a page holds it, read in the background."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if isinstance(raw, str):
                    self.messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def wait(self, predicate: Any, what: str, timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {what} within {timeout_s} s; last messages: {self.messages[-3:]}")

    def steps(self) -> list[dict[str, Any]]:
        return [s for m in self.messages if m["type"] == "steps" for s in m["items"]]

    def controlled(self, value: bool) -> bool:
        return any(m["type"] == "control" and m["controlled"] is value for m in self.messages)

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def _drive(url: str, bus: LeaderBus) -> list[dict[str, Any]]:
    """Move the leader to take over, follow it until the follower holds its pose, hand back by the page;
    the taken-over steps the page saw."""
    page = Page(await websockets.connect(url.replace("http://", "ws://") + "ws", max_size=None))
    try:
        await page.wait(
            lambda: any(
                m["type"] == "state" and m["connected"] and m["leader_arm"] and m["task"] == "so101_reach"
                for m in page.messages
            ),
            "state: connected, with the leader arm",
        )
        await page.wait(lambda: page.steps(), "the watched env's steps")  # the leader's rest pose was read
        assert not page.controlled(True)
        bus.pose(POSE)
        await page.wait(lambda: page.controlled(True), "control: taken over by the leader's motion")

        def holding() -> bool:
            taken = [s for s in page.steps() if s["intervention"]]
            on_pose = 0
            for step in taken:
                on_pose = on_pose + 1 if _on_pose(step) else 0
            return on_pose >= HOLD_STEPS

        await page.wait(holding, f"{HOLD_STEPS} taken-over steps with the follower on the leader's pose")
        await page.ws.send(json.dumps({"type": "handback"}))
        await page.wait(lambda: page.controlled(False), "control: handed back")
        # Steps after the handback show the policy acting: every taken-over step has reached the page.
        await page.wait(
            lambda: any(not s["intervention"] for s in page.steps()[-3:]), "a step of the policy after it"
        )
        return [s for s in page.steps() if s["intervention"]]
    finally:
        await page.close()


def test_leader_arm_takes_over_a_training_run_and_its_steps_reach_the_demo_buffer(tmp_path) -> None:
    bus = LeaderBus()
    try:
        with (
            hil_job(tmp_path, job=LEADER_JOB) as job,
            intervene(str(job.run_dir), tmp_path, "--leader-arm", bus.path) as console,
        ):
            taken = asyncio.run(asyncio.wait_for(_drive(console.url, bus), timeout=180))
            # The leader drove: far from its pose, the follower's targets moved by the task's joint_step
            # (deltas clipped to 1), then held on it.
            assert any(np.abs(s["action"][:5]).max() == 1.0 for s in taken)
            # On the pose, the next action holds it (the gripper's is its opening, not a delta).
            held = [
                step["action"][:5]
                for before, step in itertools.pairwise(taken)
                if (before["episode"], before["t"] + 1) == (step["episode"], step["t"]) and _on_pose(before)
            ]
            assert len(held) >= HOLD_STEPS - 1 and np.abs(held).max() < TOLERANCE / JOINT_STEP
            wait_for(
                lambda: job.status().get("hil", {}).get("intervention_transitions", 0) >= len(taken),
                60,
                "the learner to receive the taken-over steps",
                job.log,
            )
            console.stop()
            summary = job.stop()
    finally:
        bus.close()
    assert bus.torque_writes and not any(bus.torque_writes)  # switched off, never on
    # Each step the leader drove reached the learner flagged, and SAC copied each into its demo buffer.
    assert summary["intervention_transitions"] == len(taken)
    assert summary["demo_size"] == len(taken)
