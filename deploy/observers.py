"""Policy observations on the robot, built by the training code's own term functions.

``make_observer(metadata, motion, target)`` picks the builder for the policy's task and refuses, listing
the terms, any observation layout it cannot build from what a robot measures (a policy trained with
state estimation, one that reads a cube's pose, or a layout this code does not know). An observer also
turns the policy's actions into joint targets (``targets_of``), as the training env's controller does.

The G1 tracking builder calls ``striata.envs.tasks.g1_tracking.observations.measured_policy_terms``
and ``policy_obs``, the functions the env uses, with the anchor orientation from the IMU and joint
encoders (``AnchorKinematics``), and the reference motion exported beside the policy, turned about z
at policy start so the reference starts where the robot faces (the IMU's yaw is arbitrary on a real robot).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from striata.envs.rotations import quat_to_matrix
from striata.envs.tasks.g1_tracking import observations
from striata.learner.export import PolicyMetadata


class ObservationLayoutError(ValueError):
    """The policy observes something this controller cannot build."""


def _yaw_of(rot: np.ndarray) -> float:
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Measured(NamedTuple):
    """What the controller knows at a step, arrays in policy joint order: the robot's state and the
    action it last applied (what an observer builds the policy's observation from)."""

    joint_pos: np.ndarray
    joint_vel: np.ndarray
    imu_quat_wxyz: np.ndarray
    gyro: np.ndarray
    last_action: np.ndarray


class TrackingObserver:
    """G1 motion tracking without state estimation: 154 numbers per step, in the trained order."""

    def __init__(self, metadata: PolicyMetadata, motion: dict[str, np.ndarray]) -> None:
        from striata.envs.tasks.g1_tracking.env import build_g1_scene

        layout = tuple(zip(metadata.observation_names, metadata.observation_sizes, strict=True))
        deployable = observations.policy_term_layout(state_estimation=False)
        if layout != deployable:
            unmeasured = [name for name, _ in layout if name in observations.STATE_ESTIMATION_TERMS]
            why = (
                f"it observes {unmeasured}, which a robot does not measure (state_estimation: true)"
                if unmeasured
                else f"its layout {list(layout)} is not the deployable {list(deployable)}"
            )
            raise ObservationLayoutError(f"policy of task {metadata.task!r}: {why}")
        self.layout = layout
        self.kinematics = observations.AnchorKinematics(
            build_g1_scene(metadata.control_dt), metadata.joint_names, metadata.anchor_body or "torso_link"
        )
        self.default_joint_pos = np.asarray(metadata.default_joint_pos)[None]
        self.action_scale = np.asarray(metadata.action_scale)
        self.ref_joint_pos = np.asarray(motion["joint_pos"])
        self.ref_joint_vel = np.asarray(motion["joint_vel"])
        self.ref_anchor_rot = quat_to_matrix(np.asarray(motion["anchor_quat_w"]))
        if self.ref_joint_pos.shape[1] != len(metadata.joint_names):
            raise ObservationLayoutError(
                f"reference motion has {self.ref_joint_pos.shape[1]} joints, "
                f"the policy {len(metadata.joint_names)}"
            )
        self.num_frames = len(self.ref_joint_pos)
        self.align = np.eye(3)
        self.step = 0
        self._rng = np.random.default_rng(0)  # policy_obs wants one; no noise is added here

    def start(self, imu_quat_wxyz: np.ndarray, joint_pos: np.ndarray) -> None:
        """Restart the reference at frame 0, turned to the robot's current heading."""
        robot = self.kinematics.anchor_rotation(imu_quat_wxyz, joint_pos)
        self.align = _rot_z(_yaw_of(robot) - _yaw_of(self.ref_anchor_rot[0]))
        self.step = 0

    def observe(self, m: Measured) -> np.ndarray:
        """Observation [1, obs_dim] float32 of one state (arrays in policy joint order); advances the clip."""
        frame = min(self.step, self.num_frames - 1)
        terms = observations.measured_policy_terms(
            ref_joint_pos=self.ref_joint_pos[frame][None],
            ref_joint_vel=self.ref_joint_vel[frame][None],
            ref_anchor_rot=(self.align @ self.ref_anchor_rot[frame])[None],
            anchor_rot=self.kinematics.anchor_rotation(m.imu_quat_wxyz, m.joint_pos)[None],
            base_ang_vel=np.asarray(m.gyro)[None],
            joint_pos=m.joint_pos[None],
            default_joint_pos=self.default_joint_pos,
            joint_vel=m.joint_vel[None],
            actions=m.last_action[None],
        )
        self.step += 1
        return observations.policy_obs(terms, self.layout, None, self._rng)

    def targets_of(self, action: np.ndarray) -> np.ndarray:
        """Joint targets of an action: the default pose plus the scaled action."""
        return self.default_joint_pos[0] + self.action_scale * action


# The arm's own terms (what its encoders measure, the targets it was sent, forward kinematics), then the
# inputs a user gives: so101_reach's target.
ARM_TERMS = ("joint_pos", "joint_vel", "joint_target", "tip_pos", "target_pos", "tip_to_target")


class ArmObserver:
    """SO-101 policies (``joint_delta_gripper_target``): joint positions and velocities, the targets this
    controller last sent, the tip position by forward kinematics and, for so101_reach, ``target``."""

    def __init__(self, metadata: PolicyMetadata, target: np.ndarray | None) -> None:
        from striata.envs.tasks.so101.control import JointTargetControl
        from striata.envs.tasks.so101.kinematics import ArmKinematics

        self.layout = tuple(zip(metadata.observation_names, metadata.observation_sizes, strict=True))
        unknown = [name for name, _ in self.layout if name not in ARM_TERMS]
        if unknown:
            raise ObservationLayoutError(
                f"policy of task {metadata.task!r} observes {unknown}, which the arm does not measure "
                "(a policy for a real arm reads cameras: task_config.cameras with sac.obs_key proprio)"
            )
        needs_target = any(name in ("target_pos", "tip_to_target") for name, _ in self.layout)
        if needs_target and target is None:
            raise ObservationLayoutError(
                f"policy of task {metadata.task!r} reaches for a target: give --target X,Y,Z"
            )
        if metadata.joint_limits is None or metadata.gripper_open is None:
            raise ObservationLayoutError(f"policy of task {metadata.task!r}: its export lacks joint_limits")
        self.target = None if target is None else np.asarray(target, dtype=np.float64)
        scale = metadata.action_scale
        self.control = JointTargetControl(
            scale[0], scale[-1], metadata.gripper_open, np.asarray(metadata.joint_limits)
        )
        self.kinematics = ArmKinematics()
        self.default_joint_pos = np.asarray(metadata.default_joint_pos, dtype=np.float64)
        self.targets = self.default_joint_pos.copy()

    def start(self, imu_quat_wxyz: np.ndarray, joint_pos: np.ndarray) -> None:
        """The policy starts from the hold phase's targets, the default pose, as a training episode does."""
        self.targets = self.default_joint_pos.copy()

    def observe(self, m: Measured) -> np.ndarray:
        """Observation [1, obs_dim] float32 in the trained order (arrays in policy joint order)."""
        tip = self.kinematics.tip_position(np.asarray(m.joint_pos, dtype=np.float64)[None])[0]
        terms = {
            "joint_pos": m.joint_pos,
            "joint_vel": m.joint_vel,
            "joint_target": self.targets,
            "tip_pos": tip,
        }
        if self.target is not None:
            terms.update(target_pos=self.target, tip_to_target=self.target - tip)
        return np.concatenate([terms[name] for name, _ in self.layout]).astype(np.float32)[None]

    def targets_of(self, action: np.ndarray) -> np.ndarray:
        """The next servo targets: the arm's move from the last targets, the gripper toward its opening."""
        self.targets = self.control(np.asarray(action, dtype=np.float64)[None], self.targets[None])[0]
        return self.targets


def make_observer(
    metadata: PolicyMetadata, motion: dict[str, np.ndarray] | None, target: np.ndarray | None = None
) -> TrackingObserver | ArmObserver:
    if metadata.action_type == "joint_delta_gripper_target":
        return ArmObserver(metadata, target)
    if metadata.action_type != "joint_position":
        raise ObservationLayoutError(
            f"policy of task {metadata.task!r} outputs {metadata.action_type!r} actions; "
            "the deploy controller runs joint-position policies"
        )
    if metadata.task.startswith("g1_tracking"):
        if motion is None:
            raise ObservationLayoutError(f"tracking policy of task {metadata.task!r} has no reference motion")
        return TrackingObserver(metadata, motion)
    raise ObservationLayoutError(
        f"no deploy observation builder for task {metadata.task!r} (terms {metadata.observation_names})"
    )
