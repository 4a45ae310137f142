"""Robot description as config: motor families, gains and default pose, applied to an MjSpec.

Actuators are added in code, never taken from the XML, so that the gains the policy is
trained with are the ones written here and exported with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import mujoco
import numpy as np

from striata.envs.arrays import Array

# The range a deployed robot's targets are clamped into (deploy/safety.py's soft limits), and so the
# range training clamps them into: the joint range shrunk by this factor...
SOFT_LIMIT_FACTOR = 0.95
# ...each end at most this far (rad) inside the joint's stop: a wider margin only costs range, since the
# robot's weight presses a limb onto its stop whatever the motor does.
MAX_SOFT_MARGIN = 0.035


def soft_joint_limits(
    joint_limits: np.ndarray, factor: float = SOFT_LIMIT_FACTOR, max_margin: float = MAX_SOFT_MARGIN
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper soft limits [J] of joint ranges [J, 2]: each end ``(1 - factor)`` of the half
    range inside the stop, and at most ``max_margin``."""
    limits = np.asarray(joint_limits, dtype=np.float64)
    margin = np.minimum((limits[:, 1] - limits[:, 0]) / 2 * (1 - factor), max_margin)
    return limits[:, 0] + margin, limits[:, 1] - margin


# A deploy bridge keeps a joint slow enough near its soft limits to stop there braking at no more than
# this (rad/s^2), and at no more than this share of the model's joint velocity limits (deploy/safety.py);
# faster, it brakes the joint whatever the policy commands. Training penalises the same envelope.
LIMIT_BRAKE_ACCEL = 200.0
VELOCITY_LIMIT_FACTOR = 0.5
# rad a deploy bridge moves a target per tick at most.
MAX_TARGET_STEP = 0.05
# A braked joint gets damping that spends its effort at its speed, within these (N m s/rad).
DAMPING_KD = 5.0
MAX_BRAKE_KD = 20.0


def braking_deceleration(
    model: mujoco.MjModel,
    joint_names: Sequence[str],
    effort_limits: np.ndarray,
    joint_positions: Sequence[np.ndarray] = (),
    share: float = 0.5,
    cap: float = LIMIT_BRAKE_ACCEL,
) -> np.ndarray:
    """[J] rad/s^2 a joint's motor can surely brake it at, at most ``cap``: ``share`` of its effort over its
    inertia with every other joint locked (``M_ii``, the largest it drives), the largest over the zero pose
    and ``joint_positions``. A bridge keeps a joint slow enough near its limits to stop at this rate."""
    joint_ids = [model.joint(name).id for name in joint_names]
    qpos_adr = model.jnt_qposadr[joint_ids]
    dof_adr = model.jnt_dofadr[joint_ids]
    data = mujoco.MjData(model)
    largest = np.zeros(len(joint_names))
    unit, column = np.zeros(model.nv), np.zeros(model.nv)
    for pose in (None, *joint_positions):
        data.qpos[:] = model.qpos0
        if pose is not None:
            data.qpos[qpos_adr] = np.asarray(pose, dtype=np.float64)
        mujoco.mj_forward(model, data)
        for j, dof in enumerate(dof_adr.tolist()):
            unit[:] = 0.0
            unit[dof] = 1.0
            mujoco.mj_mulM(model, data, column, unit)
            largest[j] = max(largest[j], column[dof])
    return np.minimum(share * np.asarray(effort_limits, dtype=np.float64) / largest, cap)


def braking_speeds(
    q: Array, lower: Array, upper: Array, brake_accel: Array, speed_limit: Array | None = None
) -> tuple[Array, Array]:
    """Per joint at positions ``q`` [..., J]: the speeds up and down from which braking at ``brake_accel``
    stops the joint at its soft limit, ``sqrt(2 a d)``, at most ``speed_limit`` (numpy or torch).

    Array methods both libraries share, not an array-API namespace: the bridge's safety filter calls
    this every tick at 500 Hz, and the namespace's dispatch cost 5x the arithmetic."""
    brake = 2.0 * brake_accel
    up = (brake * (upper - q).clip(min=0.0)) ** 0.5
    down = (brake * (q - lower).clip(min=0.0)) ** 0.5
    if speed_limit is not None:
        up, down = up.clip(max=speed_limit), down.clip(max=speed_limit)
    return up, down


def ramp_targets(
    target: np.ndarray, previous: np.ndarray, lower: np.ndarray, upper: np.ndarray, max_step: float
) -> np.ndarray:
    """Targets clipped into the soft limits, then moved at most ``max_step`` from ``previous`` (the last
    applied ones) in a tick: a jump becomes a ramp (a deploy bridge's ramp).

    A target is not slowed near a soft limit: a joint follows its target through its own gains, far slower
    than the target may move, and slowing the target there (to the braking envelope's ``sqrt(2 a d)``, 0.9
    rad/s 0.01 rad before the G1's waist-pitch limit) lagged a tracking policy's commands at the limits it
    dances at and, with a tick of latency, dropped the G1 (docs/results.md). A joint faster than the
    envelope is braked on its measured speed instead (deploy/safety.py)."""
    return np.clip(np.clip(target, lower, upper), previous - max_step, previous + max_step)


def braking_damping(
    dq: np.ndarray, effort: np.ndarray, min_kd: float = DAMPING_KD, max_kd: float = MAX_BRAKE_KD
) -> np.ndarray:
    """Damping [..., J] that spends each joint's effort at its speed ``dq``, within [min_kd, max_kd]."""
    return np.clip(effort / np.maximum(np.abs(dq), 1e-6), min_kd, max_kd)


@dataclass(frozen=True)
class MotorFamily:
    """Joints driven by one motor type; PD gains follow mjlab: kp = armature (2 pi f)^2, damping ratio."""

    patterns: tuple[str, ...]
    armature: float
    effort_limit: float
    velocity_limit: float = math.inf
    natural_freq_hz: float = 10.0
    damping_ratio: float = 2.0
    kp_override: float | None = None
    kd_override: float | None = None

    @property
    def kp(self) -> float:
        if self.kp_override is not None:
            return self.kp_override
        return self.armature * (2.0 * math.pi * self.natural_freq_hz) ** 2

    @property
    def kd(self) -> float:
        if self.kd_override is not None:
            return self.kd_override
        return 2.0 * self.damping_ratio * self.armature * 2.0 * math.pi * self.natural_freq_hz


@dataclass(frozen=True)
class RobotConfig:
    """An articulated robot: joint order, motor families, default pose and standby gains."""

    name: str
    joint_names: tuple[str, ...]
    families: tuple[MotorFamily, ...]
    default_joint_pos: dict[str, float]
    # (kp, kd) by joint pattern: gains for holding a pose (deploy hold state, standing tests).
    standby_gains: dict[str, tuple[float, float]] = field(default_factory=dict)
    action_scale_factor: float = 0.25

    def _per_joint(self, value_of) -> np.ndarray:
        out = np.empty(len(self.joint_names))
        for i, joint in enumerate(self.joint_names):
            family = self.family_of(joint)
            out[i] = value_of(family)
        return out

    def family_of(self, joint: str) -> MotorFamily:
        for family in self.families:
            if any(re.fullmatch(p, joint) for p in family.patterns):
                return family
        raise KeyError(f"{self.name}: joint {joint!r} matches no motor family")

    @property
    def kp(self) -> np.ndarray:
        return self._per_joint(lambda f: f.kp)

    @property
    def kd(self) -> np.ndarray:
        return self._per_joint(lambda f: f.kd)

    @property
    def armature(self) -> np.ndarray:
        return self._per_joint(lambda f: f.armature)

    @property
    def effort_limit(self) -> np.ndarray:
        return self._per_joint(lambda f: f.effort_limit)

    @property
    def velocity_limit(self) -> np.ndarray:
        return self._per_joint(lambda f: f.velocity_limit)

    @property
    def action_scale(self) -> np.ndarray:
        """Policy action to joint-target offset: factor x effort_limit / kp (mjlab)."""
        return self.action_scale_factor * self.effort_limit / self.kp

    @property
    def default_pos(self) -> np.ndarray:
        return np.array([_match(self.default_joint_pos, j, 0.0) for j in self.joint_names])

    @property
    def standby_kp_kd(self) -> tuple[np.ndarray, np.ndarray]:
        gains = [_match(self.standby_gains, j, None) for j in self.joint_names]
        missing = [j for j, g in zip(self.joint_names, gains, strict=True) if g is None]
        if missing:
            raise KeyError(f"{self.name}: no standby gains for joints {missing}")
        return np.array([g[0] for g in gains]), np.array([g[1] for g in gains])


def _match(table: dict, joint: str, default):
    for pattern, value in table.items():
        if re.fullmatch(pattern, joint):
            return value
    return default


def add_position_actuators(spec: mujoco.MjSpec, robot: RobotConfig) -> None:
    """Set joint armature and add one PD position actuator per joint, in the robot's joint order."""
    for actuator in list(spec.actuators):
        spec.delete(actuator)
    for joint, kp, kd, armature, effort in zip(
        robot.joint_names, robot.kp, robot.kd, robot.armature, robot.effort_limit, strict=True
    ):
        spec.joint(joint).armature = armature
        actuator = spec.add_actuator(name=joint, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.set_to_position(kp=float(kp), kv=float(kd))
        actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        actuator.forcerange = [-float(effort), float(effort)]


def set_actuator_gains(model: mujoco.MjModel, kp: np.ndarray, kd: np.ndarray) -> None:
    """Overwrite position-actuator gains in a compiled model (e.g. standby gains for holding a pose)."""
    n = len(kp)
    model.actuator_gainprm[:n, 0] = kp
    model.actuator_biasprm[:n, 1] = -kp
    model.actuator_biasprm[:n, 2] = -kd
