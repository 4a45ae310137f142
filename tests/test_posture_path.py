"""The controller's way to the default pose around the robot's own body, and the policy's start gate.

A G1 left limp in the sim bridge's harness for 1.0 s (500 ticks) swings its arms round; the straight
joint-space line back to the default pose then sweeps the right wrist through the hip, the bridge's
self-collision guard holds its last allowed target for good, and the G1 fell when the harness let it go
(found in a sim-bridge evaluation, about 1 deployment in 60). These tests start from that posture."""

from __future__ import annotations

import io
import threading
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from bridge_peer import RunningBridge

from striata.deploy.controller import Controller, ControllerConfig
from striata.deploy.posture_path import PATH_STEP, TOLERANCE_SHARE, plan_path, posture_model
from striata.deploy.robot import JointCommand, RobotState
from striata.deploy.sim_robot import SimRobot
from striata.envs.robots.g1 import G1

STAND_POLICY = Path(__file__).parent / "data" / "g1_stand.onnx"
LIMP_TICKS = 500
STANDING_M = 0.6
# The harness holds the pelvis at 0.80 m: straight legs just touch the floor (0.75-0.76 m once they do).
HANGING_M = 0.78


@cache
def limp_state() -> tuple[np.ndarray, np.ndarray]:
    """The sim bridge's G1 after LIMP_TICKS ticks of zero torque in its harness: its whole qpos, and its
    joint positions (G1 joint order)."""
    sim = SimRobot("g1")
    n = len(sim.joint_names)
    zero = JointCommand(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))
    for _ in range(LIMP_TICKS):
        sim.write_command(zero)
        sim.read_state()
    return sim.data.qpos.copy(), sim.data.qpos[sim.qpos_adr].copy()


def limp_posture() -> np.ndarray:
    return limp_state()[1]


class PosedG1(SimRobot):
    """The sim bridge's G1, held still in the limp posture by its harness until the controller starts it,
    so the controller starts from that posture exactly, however long it takes to connect."""

    def __init__(self) -> None:
        super().__init__("g1")
        self._posed = limp_state()[0]

    def read_state(self) -> RobotState:
        if self.phase in ("", "zero_torque"):
            self.data.qpos[:] = self._posed
            self.data.qvel[:] = 0.0
        return super().read_state()


def test_the_straight_line_from_the_limp_posture_is_refused_and_the_path_goes_round() -> None:
    model = posture_model(G1.name, G1.joint_names)
    assert model is not None
    start = np.clip(limp_posture(), model.lower, model.upper)
    goal = np.clip(G1.default_pos, model.lower, model.upper)
    allowed = model.check.depth(start) + TOLERANCE_SHARE * model.check.tolerance_m
    line = start + np.linspace(0, 1, 200)[:, None] * (goal - start)
    assert max(model.check.depth(q) for q in line) > model.check.depth(start) + model.check.tolerance_m

    path = model.plan(start, G1.default_pos)
    assert path.reached
    np.testing.assert_allclose(path.waypoints[0], start)
    np.testing.assert_allclose(path.waypoints[-1], goal)
    assert max(model.check.depth(q) for q in path.waypoints) <= allowed
    assert np.abs(np.diff(path.waypoints, axis=0)).max() <= PATH_STEP + 1e-12
    assert path.length >= 1.0
    np.testing.assert_allclose(path.at(0.0), start)
    np.testing.assert_allclose(path.at(1.0), goal)


def test_a_clear_line_stays_straight_and_an_unreachable_goal_ends_short() -> None:
    model = posture_model(G1.name, G1.joint_names)
    assert model is not None
    near = G1.default_pos + 0.1
    straight = model.plan(near, G1.default_pos)
    assert straight.reached and straight.length == 1.0 and len(straight.waypoints) == 2

    # A goal with the right wrist inside the hip: the path gets as close as the guard allows, no closer.
    start, goal = np.clip(limp_posture(), model.lower, model.upper), G1.default_pos
    line = start + np.linspace(0, 1, 200)[:, None] * (np.clip(goal, model.lower, model.upper) - start)
    deepest = line[int(np.argmax([model.check.depth(q) for q in line]))]
    short = plan_path(model.check, goal, deepest, model.lower, model.upper)
    assert not short.reached
    tolerance = TOLERANCE_SHARE * model.check.tolerance_m
    allowed = model.check.depth(np.clip(goal, model.lower, model.upper)) + tolerance
    assert max(model.check.depth(q) for q in short.waypoints) <= allowed


def test_no_model_for_robots_without_a_self_collision_guard() -> None:
    assert posture_model("panda", ["panda_joint1"]) is None


@pytest.mark.parametrize("way", ["round", "straight"])
def test_the_g1_gets_up_from_the_limp_posture_and_the_policy_waits_for_the_default_pose(way: str) -> None:
    """Round: the controller plans around the hip, the G1 stands in hold and the standing policy runs.
    Straight (the controller before the fix): the bridge's guard freezes the interpolation with the G1
    still hanging, and the policy event waits, saying which joint is far from its default pose."""
    robot = PosedG1()
    running = RunningBridge(robot, on_phase=robot.on_controller_phase)
    running.thread.start()
    log = io.StringIO()
    config = ControllerConfig(
        policy=STAND_POLICY,
        robot=running.endpoint,
        keys=False,
        sequence="interpolate@0.05,policy@2.5,damping@5.5,quit@6",
    )
    try:
        controller = Controller(config, log=log)
        if way == "straight":
            controller.posture = None
        worker = threading.Thread(target=controller.run, daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive()
    finally:
        running.stop.set()
        running.thread.join(timeout=10)
    heights = robot.height_report()
    phases = [phase for _, phase in controller.phase_log]
    said = log.getvalue()
    if way == "round":
        assert "going round" in said, said
        assert heights["interpolate"]["min_m"] < HANGING_M, heights  # the legs reached the floor
        assert phases == ["zero_torque", "interpolate", "hold", "policy", "damping"], said
        assert heights["policy"]["seconds"] >= 2.0, heights
        assert min(heights["hold"]["min_m"], heights["policy"]["min_m"]) > STANDING_M, heights
        assert "policy waits" not in said
    else:
        assert heights["interpolate"]["min_m"] >= HANGING_M, heights  # frozen: still hanging
        assert phases == ["zero_torque", "interpolate", "hold", "damping"], said
        assert "policy waits: " in said and "rad from its default pose" in said, said


def test_a_policy_target_into_the_torso_keeps_its_arms_back_and_its_legs_go_on() -> None:
    """The controller's step: a target that would have the bridge's guard hold the whole robot for a
    tick keeps the arms and waist where the last target had them; the legs take theirs."""
    model = posture_model(G1.name, G1.joint_names)
    assert model is not None
    names = list(G1.joint_names)
    previous = np.array(G1.default_pos, dtype=np.float64)
    clear = previous + 0.05
    assert model.keep_apart(previous, clear) is clear
    target = previous.copy()
    for joint, value in (("left_shoulder_roll_joint", -1.5), ("left_shoulder_yaw_joint", 1.5)):
        target[names.index(joint)] = value
    target[names.index("left_elbow_joint")] = 1.5
    legs = [i for i, name in enumerate(names) if any(link in name for link in ("hip", "knee", "ankle"))]
    target[legs] += 0.1
    assert model.check.depth(target) > model.check.tolerance_m
    out = model.keep_apart(previous, target)
    assert model.check.depth(out) <= TOLERANCE_SHARE * model.check.tolerance_m
    upper = [i for i in range(len(names)) if i not in legs]
    np.testing.assert_array_equal(out[upper], previous[upper])
    np.testing.assert_allclose(out[legs], np.clip(target, model.lower, model.upper)[legs])
