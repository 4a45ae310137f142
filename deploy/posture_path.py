"""The controller's way to the default pose: a joint-space path that the bridge's self-collision guard allows.

From zero torque a G1 hanging limp swings its arms round (a right shoulder yaw 2.57 rad off the default
pose after a second, measured in the sim bridge). The straight joint-space line back to the default pose
then sweeps the right wrist through the hip, the bridge refuses every target on it past that point
(``SafetyFilter``'s self-collision guard holds the last allowed one) and the robot never gets there: the
interpolation froze and the G1 fell when the harness let it go (about 1 deployment in 60).

``plan_path`` checks that line against the same check the bridge uses (``SelfCollision``) and, where it
presses deeper than the start allows, walks around: each waypoint moves every joint at most ``step``
toward the goal along the line, or, where that step is refused, moves joints one at a time, farthest from
the goal first, each that stays allowed. It never asks for a posture the guard would refuse, so a path
that ends at the goal is one the robot can follow; one that cannot reach it ends where it got to
(``reached`` False), and the controller holds there and says so instead of starting the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from striata.deploy.self_collision import SelfCollision
from striata.envs.robots.actuators import soft_joint_limits
from striata.envs.robots.g1 import G1

# rad a joint moves per waypoint: the capsules' surfaces move < 1 cm per waypoint (arms <= 0.5 m long).
PATH_STEP = 0.02
# Share of the check's tolerance the path keeps in hand: the bridge judges from the posture its ramp
# starts from, a few milliseconds of a swinging limp robot after the controller's reading.
TOLERANCE_SHARE = 0.5


@dataclass(frozen=True)
class PosturePath:
    """Waypoints [K, J] from the start to the goal (or as far as the guard allows); whether they get there.

    ``length`` is in straight-line units: 1.0 for the straight line, more for a detour, so a caller that
    times the straight line over T seconds times this path over ``T * length`` at the same joint speeds.
    """

    waypoints: np.ndarray
    reached: bool
    length: float

    def at(self, fraction: float) -> np.ndarray:
        """The posture ``fraction`` (0..1) of the way along the path (linear between waypoints)."""
        position = min(max(fraction, 0.0), 1.0) * (len(self.waypoints) - 1)
        i = min(int(position), len(self.waypoints) - 2)
        w = position - i
        return (1 - w) * self.waypoints[i] + w * self.waypoints[i + 1]


def straight_path(start: np.ndarray, goal: np.ndarray) -> PosturePath:
    return PosturePath(np.stack([start, goal]), True, 1.0)


def plan_path(
    check: SelfCollision,
    start: np.ndarray,
    goal: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    step: float = PATH_STEP,
) -> PosturePath:
    """A path from ``start`` to ``goal`` (both clipped into [lower, upper], as the bridge clips targets)
    on which no posture presses the robot into itself deeper than ``start`` does, plus part of the check's
    tolerance. The straight line when that line is allowed."""
    start = np.clip(np.asarray(start, dtype=np.float64), lower, upper)
    goal = np.clip(np.asarray(goal, dtype=np.float64), lower, upper)
    allowed = check.depth(start) + TOLERANCE_SHARE * check.tolerance_m
    straight_steps = max(1, int(np.ceil(np.abs(goal - start).max() / step)))
    line = start + np.linspace(0.0, 1.0, straight_steps + 1)[:, None] * (goal - start)
    if all(check.depth(q) <= allowed for q in line[1:]):
        return straight_path(start, goal)
    waypoints, q = [start], start.copy()
    # Every joint's own way is at most its distance / step waypoints, one joint at a time: a path longer
    # than all of them together goes round in circles.
    budget = int(np.ceil(np.abs(goal - start).sum() / step)) + len(start)
    for _ in range(budget):
        away = goal - q
        farthest = np.abs(away).max()
        if farthest <= 1e-9:
            break
        along = q + away * min(1.0, step / farthest)
        if check.depth(along) <= allowed:
            q = along
        else:
            moved = q.copy()
            for joint in np.argsort(-np.abs(away)):
                if abs(away[joint]) <= 1e-9:
                    break
                trial = moved.copy()
                trial[joint] += np.clip(away[joint], -step, step)
                if check.depth(trial) <= allowed:
                    moved = trial
            if np.array_equal(moved, q):
                break
            q = moved
        waypoints.append(q.copy())
    reached = bool(np.abs(goal - q).max() <= 1e-9)
    return PosturePath(np.stack(waypoints), reached, (len(waypoints) - 1) / straight_steps)


@dataclass(frozen=True)
class PostureModel:
    """A robot's self-collision check and the soft limits the bridge clips its targets into."""

    check: SelfCollision
    lower: np.ndarray
    upper: np.ndarray

    def plan(self, start: np.ndarray, goal: np.ndarray) -> PosturePath:
        return plan_path(self.check, start, goal, self.lower, self.upper)

    def keep_apart(self, previous: np.ndarray, target: np.ndarray) -> np.ndarray:
        """A policy's ``target``, its arms and waist kept at ``previous`` where it would press the robot
        into itself past the bridge's tolerance (its legs go on): the bridge's guard would hold every
        joint for that tick instead. Targets the legs press in go to the bridge unchanged."""
        depth = self.check.tolerance_m * TOLERANCE_SHARE
        clipped = np.clip(target, self.lower, self.upper)
        if self.check.depth(clipped) <= depth:
            return target
        held = self.check.hold_upper_body(np.clip(previous, self.lower, self.upper), clipped, depth)
        return target if held is None else held


def posture_model(robot: str, joint_names: Sequence[str]) -> PostureModel | None:
    """The model of the robot a policy was trained for, where its bridge guards self-collision (the G1);
    None for the others. Reads the robot's assets (``AssetNotFoundError`` when they are missing)."""
    if robot != G1.name:
        return None
    from striata.deploy.unitree.g1_model import g1_joint_limits, g1_self_collision

    lower, upper = soft_joint_limits(g1_joint_limits(joint_names))
    return PostureModel(g1_self_collision(joint_names), lower, upper)
