"""The G1 facts a bridge needs from its model: joint ranges (MJCF), effort and velocity limits (motors),
braking rates and its bodies' self-collision."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import mujoco
import numpy as np

from striata.deploy.self_collision import SelfCollision
from striata.envs.robots.actuators import braking_deceleration
from striata.envs.robots.g1 import G1, g1_spec

# The G1's leg links (the legs' joint chains, hip to foot), per side.
LEG_LINKS = ("hip_pitch", "hip_roll", "hip_yaw", "knee", "ankle_pitch", "ankle_roll")


@cache
def _g1_model() -> mujoco.MjModel:
    return g1_spec().compile()


@cache
def _g1_self_collision_model() -> mujoco.MjModel:
    """The G1's model without contacts between its two legs: a tracking policy commands leg targets that
    cross (measured on JazzWalk: targets 5.9 cm deep at p99, 8.9 cm at most, while the legs themselves
    never came closer than 6.5 mm, their 88-139 N m motors stopping each other), and refusing those
    targets held the whole robot still mid-step and dropped it. What the check guards against is a light
    limb wedged by a contact stronger than its motor (a 5 N m wrist against a knee): arms still count."""
    spec = g1_spec()
    for left in LEG_LINKS:
        for right in LEG_LINKS:
            spec.add_exclude(bodyname1=f"left_{left}_link", bodyname2=f"right_{right}_link")
    return spec.compile()


def g1_joint_limits(joint_names: Sequence[str]) -> np.ndarray:
    """[J, 2] lower/upper joint positions (rad) from the G1's MJCF, in ``joint_names`` order."""
    model = _g1_model()
    return np.array([model.joint(name).range for name in joint_names], dtype=np.float64)


def g1_effort_limits(joint_names: Sequence[str]) -> np.ndarray:
    """[J] motor torque limits (N m) from the G1's motor families, in ``joint_names`` order."""
    return np.array([G1.family_of(name).effort_limit for name in joint_names], dtype=np.float64)


def g1_velocity_limits(joint_names: Sequence[str]) -> np.ndarray:
    """[J] motor velocity limits (rad/s) from the G1's motor families, in ``joint_names`` order."""
    return np.array([G1.family_of(name).velocity_limit for name in joint_names], dtype=np.float64)


def g1_brake_accel(joint_names: Sequence[str]) -> np.ndarray:
    """[J] rad/s^2 the G1's motors surely brake each joint at (``braking_deceleration`` on its model)."""
    return braking_deceleration(
        _g1_model(),
        joint_names,
        g1_effort_limits(joint_names),
        [G1.default_pos[[G1.joint_names.index(n) for n in joint_names]]],
    )


def g1_self_collision(joint_names: Sequence[str]) -> SelfCollision:
    """The G1's self-collision check on its own MJCF (no floor), for joints in ``joint_names`` order; the
    legs carry the robot."""
    feet = [f"{side}_{LEG_LINKS[-1]}_link" for side in ("left", "right")]
    return SelfCollision(_g1_self_collision_model(), joint_names, support_bodies=feet)
