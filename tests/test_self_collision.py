"""The safety filter's self-collision guard on the G1's own model: a target stream that drives an arm
into the body is stopped before the two press deeper than the check's tolerance, a posture already
touching can always move out, and the reference motions the G1 tracks are never held back."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from striata.deploy.protocol import Command
from striata.deploy.robot import RobotState
from striata.deploy.safety import SafetyConfig, SafetyFilter
from striata.deploy.unitree.g1_model import (
    g1_effort_limits,
    g1_joint_limits,
    g1_self_collision,
    g1_velocity_limits,
)
from striata.envs.motion.loaders import load_motion
from striata.envs.robots.g1 import G1, G1_JOINT_NAMES

NAMES = list(G1_JOINT_NAMES)
N = len(NAMES)


@pytest.fixture(scope="module")
def check():
    return g1_self_collision(NAMES)


def _filter(check) -> SafetyFilter:
    return SafetyFilter(
        SafetyConfig(), g1_joint_limits(NAMES), g1_effort_limits(NAMES), g1_velocity_limits(NAMES),
        self_collision=check,
    )  # fmt: skip


def _command(target: np.ndarray, tau_ff: float = 0.0) -> Command:
    return Command(
        seq=1, session=1, phase="policy", q_target=target, dq_target=np.zeros(N), kp=np.full(N, 100.0),
        kd=np.full(N, 2.0), tau_ff=np.full(N, tau_ff),
    )  # fmt: skip


def _arm_into_torso(check) -> np.ndarray:
    """The default pose with the left arm swung across the chest: deep in the torso."""
    posture = np.array(G1.default_pos, dtype=np.float64)
    posture[NAMES.index("left_shoulder_roll_joint")] = -1.5
    posture[NAMES.index("left_shoulder_yaw_joint")] = 1.5
    posture[NAMES.index("left_elbow_joint")] = 1.5
    assert check.depth(posture) > 0.03
    return posture


def test_a_target_stream_into_the_body_stops_at_the_tolerance(check) -> None:
    safety = _filter(check)
    q = np.array(G1.default_pos, dtype=np.float64)
    assert check.depth(q) == 0.0
    goal = _arm_into_torso(check)
    depths, moved = [], 0.0
    for _ in range(400):  # 0.8 s of ticks; the body follows its target exactly
        out = safety.position(_command(goal, tau_ff=5.0), RobotState(q=q, dq=np.zeros(N)))
        moved = max(moved, float(np.abs(out.q_target - G1.default_pos).max()))
        depths.append(check.depth(out.q_target))
        q = out.q_target
    assert moved > 0.2  # it went part of the way ...
    assert max(depths) <= check.tolerance_m  # ... and stopped before pressing in
    assert np.all(out.tau_ff == 0.0) and np.all(out.dq_target == 0.0)  # held, nothing pushing on


def test_a_posture_already_in_contact_can_move_out(check) -> None:
    safety = _filter(check)
    # The first posture on the way into the torso that presses past the tolerance (a real arm stops there).
    default = np.array(G1.default_pos, dtype=np.float64)
    deep = _arm_into_torso(check)
    q = next(p for p in np.linspace(default, deep, 200) if check.depth(p) > 2 * check.tolerance_m)
    start = check.depth(q)
    for _ in range(400):
        out = safety.position(_command(np.array(G1.default_pos)), RobotState(q=q, dq=np.zeros(N)))
        assert check.depth(out.q_target) <= start + check.tolerance_m
        q = out.q_target
    assert check.depth(q) == 0.0


@pytest.mark.parametrize("clip", ["J_ShortDance16_JazzWalk.csv", "J_Dance17_Shuffle.csv"])
def test_the_reference_motions_pass_the_guard(check, clip) -> None:
    motion = load_motion(Path(os.environ["STRIATA_DATA"]) / "motions" / clip, G1_JOINT_NAMES, fps=30)
    depths = np.array([check.depth(q) for q in motion.joint_pos])
    assert depths.max() <= check.tolerance_m, (clip, depths.max())


def test_legs_pressing_into_each_other_are_not_refused_but_an_arm_still_is(check) -> None:
    """A tracking policy's leg targets cross (JazzWalk: 5.9 cm deep at p99) while the legs themselves
    stop each other; what the guard is for is a light limb wedged by a stronger contact."""
    from striata.deploy.self_collision import SelfCollision
    from striata.deploy.unitree.g1_model import _g1_model

    crossed = np.array(G1.default_pos, dtype=np.float64)
    crossed[NAMES.index("left_hip_roll_joint")] = -0.5  # both thighs swung inward, through each other
    crossed[NAMES.index("right_hip_roll_joint")] = 0.5
    assert SelfCollision(_g1_model(), NAMES).depth(crossed) > 0.05  # the thighs do overlap ...
    assert check.depth(crossed) == 0.0  # ... and the guard lets the legs be
    _arm_into_torso(check)  # an arm in the torso still counts (asserts its depth)
    safety = _filter(check)
    q = np.array(G1.default_pos, dtype=np.float64)
    out = safety.position(_command(crossed), RobotState(q=q, dq=np.zeros(N)))
    assert (
        out.q_target[NAMES.index("left_hip_roll_joint")] < G1.default_pos[NAMES.index("left_hip_roll_joint")]
    )


def _arm_by_the_thigh(elbow: float) -> np.ndarray:
    """The default pose with the left forearm turned in beside the left thigh: at elbow 1.38 the wrist
    presses into the hip's links, at 0.95 it clears them."""
    posture = np.array(G1.default_pos, dtype=np.float64)
    for joint, value in (("shoulder_pitch", -0.05), ("shoulder_roll", 0.17), ("shoulder_yaw", -0.6)):
        posture[NAMES.index(f"left_{joint}_joint")] = value
    posture[NAMES.index("left_elbow_joint")] = elbow
    return posture


LEGS = [i for i, name in enumerate(NAMES) if any(link in name for link in ("hip", "knee", "ankle"))]
UPPER = [i for i in range(N) if i not in LEGS]


@pytest.mark.parametrize("contact", ["arm into the torso", "hand into the thigh"])
def test_holding_the_upper_body_keeps_a_target_apart_and_the_legs_go_on(check, contact: str) -> None:
    allowed = np.array(G1.default_pos, dtype=np.float64)
    target = _arm_into_torso(check) if contact == "arm into the torso" else _arm_by_the_thigh(elbow=1.38)
    target[NAMES.index("left_knee_joint")] += 0.2  # the legs step on meanwhile
    target[NAMES.index("right_hip_pitch_joint")] -= 0.2
    assert check.depth(target) > 2 * check.tolerance_m
    held = check.hold_upper_body(allowed, target, check.tolerance_m / 2)
    assert held is not None and check.depth(held) <= check.tolerance_m / 2
    np.testing.assert_array_equal(held[LEGS], target[LEGS])  # every leg joint takes its new target
    np.testing.assert_array_equal(held[UPPER], allowed[UPPER])  # arms and waist stay where they were


def test_a_thigh_swung_into_a_still_hand_is_left_to_the_bridge(check) -> None:
    """Only a leg moves this contact: holding the upper body changes nothing, so there is no such target
    (the bridge's guard then holds every joint)."""
    allowed = _arm_by_the_thigh(elbow=0.95)
    assert check.depth(allowed) == 0.0
    target = allowed.copy()
    target[NAMES.index("left_hip_pitch_joint")] -= 0.4
    assert check.depth(target) > 2 * check.tolerance_m
    assert check.hold_upper_body(allowed, target, check.tolerance_m / 2) is None
