"""An SO-101 leader arm as the console's teleop device: a second SO-101, moved by hand, drives the
watched env of an SO-101 task (``so101_reach``, ``so101_pick``).

The leader's servos are only read: its torque is switched off when it is attached and never switched
on, so the person moves it freely. A daemon thread reads its joint positions (rad, servo order, gripper
last; the leader is calibrated as the follower, the same zero pose and directions) through a
``JointReader``: ``striata intervene --leader-arm PORT`` hands it a ``FeetechArm`` on the leader's own
bus (the console cannot import ``deploy``, a sibling layer, so the reader comes from the CLI).

Mapping to the follower task's actions (envs/tasks/so101/config.py: five arm joint-target deltas of
``joint_step`` = 0.1 rad at |a| = 1, then the gripper's target opening, -1 open at ``gripper_open`` ..
+1 closed at the joint's lower limit). The follower's last targets are ``joint_target`` in the watched
env's observation (``next_obs`` of its latest ``step``), so each action brings them to the leader's pose:

    a[i] = clip((leader_q[i] - joint_target[i]) / joint_step, -1, 1)          i = 0..4 (arm)
    a[5] = clip(-1 + 2 (gripper_open - leader_q[5]) / (gripper_open - gripper_closed), -1, 1)

Far from the leader the follower moves ``joint_step`` a step toward it (1 rad/s at 10 Hz); within a
step it lands on it. Deltas of the targets, not of the measured positions: a servo pressing on the
table sits off its target, and a delta of the measured position would push it further every step.

Takeover and handback: moving the leader more than ``TAKEOVER_RAD`` (any joint) from where it rested
when the env was first watched, or last handed back, takes the env over; while the env is taken over,
the leader's actions replace the page's (the person at the arm wins, as with the SpaceMouse). Handback,
labels and resets stay the page's (its keys and buttons): the leader has no buttons. After a handback
the leader's pose then is its new rest, so it takes over again only when moved again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import numpy as np

from striata.envs.tasks.so101.config import (
    PICK_OBS_TERMS,
    REACH_OBS_TERMS,
    SO101_ACTION_DIM,
    So101TaskConfig,
    obs_slices,
)

log = logging.getLogger(__name__)

# The tasks' own defaults: a job that overrides them (task_config.joint_step) needs LeaderMapping's.
JOINT_STEP = So101TaskConfig.model_fields["joint_step"].default
GRIPPER_OPEN = So101TaskConfig.model_fields["gripper_open"].default
GRIPPER_CLOSED = -0.174533  # the SO-101 gripper's lower limit (its URDF; the task's "closed")
TAKEOVER_RAD = 0.15
# The watched env's observation layout, by task: where the follower's last joint targets are.
JOINT_TARGET = {
    "so101_reach": obs_slices(REACH_OBS_TERMS)["joint_target"],
    "so101_pick": obs_slices(PICK_OBS_TERMS)["joint_target"],
}


class JointReader(Protocol):
    """What the leader needs of an arm adapter (``deploy.arms.feetech.FeetechArm`` has it)."""

    name: str

    def read_positions(self) -> np.ndarray: ...

    def set_torque(self, enabled: bool) -> None: ...

    def close(self) -> None: ...


def leader_action(
    leader_q: np.ndarray,
    joint_target: np.ndarray,
    joint_step: float = JOINT_STEP,
    gripper_open: float = GRIPPER_OPEN,
    gripper_closed: float = GRIPPER_CLOSED,
) -> list[float]:
    """The SO-101 task action that moves the follower's targets ``joint_target`` [6] to ``leader_q`` [6]."""
    leader_q = np.asarray(leader_q, dtype=np.float64)
    joint_target = np.asarray(joint_target, dtype=np.float64)
    if leader_q.shape != (SO101_ACTION_DIM,) or joint_target.shape != (SO101_ACTION_DIM,):
        raise ValueError(
            f"leader_q and joint_target: need {SO101_ACTION_DIM} joints each, "
            f"got {leader_q.shape} and {joint_target.shape}"
        )
    arm = (leader_q[:-1] - joint_target[:-1]) / joint_step
    gripper = -1.0 + 2.0 * (gripper_open - leader_q[-1]) / (gripper_open - gripper_closed)
    return np.clip(np.append(arm, gripper), -1.0, 1.0).tolist()


class LeaderArm:
    """A leader arm read in a daemon thread; the hub feeds it the watched env's steps and asks it for
    actions (``action``) and whether it was moved to take over (``moved``)."""

    def __init__(self, reader: JointReader, period_s: float = 0.02) -> None:
        self.reader = reader
        self.name = f"leader arm {reader.name}"
        self.period_s = period_s
        # A leader left with torque on (a follower's config, a crash) would resist the hand.
        reader.set_torque(False)
        self._lock = threading.Lock()
        self._q: np.ndarray | None = None
        self._rest: np.ndarray | None = None
        self._target: np.ndarray | None = None  # the follower's last joint targets
        self.failed: str | None = None  # why the leader stopped answering
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="leader-arm", daemon=True)
        self._thread.start()

    def check_task(self, task: str | None, action_dim: int | None) -> str | None:
        """None when the leader can drive ``task``, else why not (for the page)."""
        if task not in JOINT_TARGET or action_dim != SO101_ACTION_DIM:
            return (
                f"leader arm: task {task!r} (action_dim {action_dim}) is not an SO-101 task; "
                f"it drives {', '.join(JOINT_TARGET)}"
            )
        return None

    def observe(self, task: str | None, next_obs: dict[str, Any] | None) -> None:
        """The watched env's latest observation: where the follower's targets are now."""
        state = (next_obs or {}).get("state")
        if task not in JOINT_TARGET or state is None:
            return
        target = np.asarray(state, dtype=np.float64)[JOINT_TARGET[task]]
        with self._lock:
            self._target = target

    def rest(self) -> None:
        """The leader's pose now is where it rests: it takes over when moved away from it."""
        with self._lock:
            self._rest = None if self._q is None else self._q.copy()

    def moved(self) -> bool:
        """Whether the leader is more than ``TAKEOVER_RAD`` from its rest pose (on any joint)."""
        with self._lock:
            if self._q is None:
                return False
            if self._rest is None:  # the first reading is the rest pose
                self._rest = self._q.copy()
            return bool(np.max(np.abs(self._q - self._rest)) > TAKEOVER_RAD)

    def action(self) -> list[float] | None:
        """The action toward the leader's pose; None before both the leader and the env were read."""
        with self._lock:
            if self._q is None or self._target is None:
                return None
            return leader_action(self._q, self._target)

    def _read(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                q = np.asarray(self.reader.read_positions(), dtype=np.float64)
            except Exception as exc:  # a bus error or an unplugged adapter: the console goes on without it
                self.failed = str(exc)
                log.warning("leader arm stopped answering: %s", exc)
                return
            if q.shape != (SO101_ACTION_DIM,):
                self.failed = f"leader arm: read {q.size} joints, need {SO101_ACTION_DIM}"
                log.warning("%s", self.failed)
                return
            with self._lock:
                self._q = q

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self.reader.close()
