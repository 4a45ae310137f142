"""Robot description as config: motor families, gains and default pose, applied to an MjSpec.

Actuators are added in code, never taken from the XML, so that the gains the policy is
trained with are the ones written here and exported with it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import mujoco
import numpy as np

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
