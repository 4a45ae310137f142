"""Config schemas of the Panda tasks, and the layout of their state observations.

Every mode switch is a ``Literal``, so a typo fails validation with the field's name and the
allowed values. Defaults follow HIL-SERL's Panda setups: 10 Hz control (physics 500 Hz,
decimation 50), end-effector deltas of at most 3 cm a step, 128x128 camera frames.

State observation of ``panda_pick`` (``PICK_OBS_TERMS``, 31 values, in this order):
joint_pos 7 (rad), joint_vel 7 (rad/s), gripper_opening 1 (1 open .. 0 closed), pinch_pos 3 (m, world),
pinch_vel 3 (m/s, world), cube_pos 3, cube_quat 4 (w, x, y, z), pinch_to_cube 3 (cube_pos - pinch_pos).

State observation of ``panda_reach`` (``REACH_OBS_TERMS``, 23 values): joint_pos 7, joint_vel 7,
pinch_pos 3, target_pos 3, pinch_to_target 3 (target_pos - pinch_pos).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from striata.envs.tasks.base import StrictModel
from striata.envs.tasks.tabletop.config import (
    ArmTaskConfig,
    Box,
    CubeRange,
    CubeYaw,
    ImageSize,
    ObsTerms,
    PickRewardConfig,
)
from striata.envs.tasks.tabletop.config import obs_slices as obs_slices  # the layouts' reader, re-exported

ControlMode = Literal["ee_delta", "joint_position"]

PICK_OBS_TERMS: ObsTerms = (
    ("joint_pos", 7),
    ("joint_vel", 7),
    ("gripper_opening", 1),
    ("pinch_pos", 3),
    ("pinch_vel", 3),
    ("cube_pos", 3),
    ("cube_quat", 4),
    ("pinch_to_cube", 3),
)

REACH_OBS_TERMS: ObsTerms = (
    ("joint_pos", 7),
    ("joint_vel", 7),
    ("pinch_pos", 3),
    ("target_pos", 3),
    ("pinch_to_target", 3),
)


class IKConfig(StrictModel):
    """Damped least squares on the pinch site: position plus a gripper-down orientation task."""

    damping: float = Field(default=0.05, gt=0, description="DLS damping lambda (m, rad)")
    orientation_weight: float = Field(default=1.0, ge=0, description="weight of the orientation error")
    nullspace_gain: float = Field(
        default=0.2, ge=0, le=1, description="pull toward the home posture in the task's null space"
    )
    max_joint_step: float = Field(default=0.3, gt=0, description="largest joint-target change a step (rad)")


class PandaTaskConfig(ArmTaskConfig):
    """What both Panda tasks share: control mode, action scales, workspace, 128x128 frames."""

    control: ControlMode = Field(
        default="ee_delta",
        description="ee_delta: [dx, dy, dz, gripper] in [-1, 1]^4; joint_position: 7 joint deltas + gripper",
    )
    image_size: ImageSize = 128
    ee_step: float = Field(
        default=0.03,
        gt=0,
        description="pinch-site target offset at |action| = 1 (m per step); under the servos' lag the site "
        "covers about 60% of it per step at full speed",
    )
    joint_step: float = Field(default=0.1, gt=0, description="joint-target change at |action| = 1 (rad)")
    workspace: Box = Field(
        default_factory=lambda: Box(low=(0.25, -0.35, 0.0), high=(0.75, 0.35, 0.5)),
        description="pinch-site targets are clamped to this box (ee_delta)",
    )
    ik: IKConfig = Field(default_factory=IKConfig)


class PandaPickRewardConfig(PickRewardConfig):
    """The pick's dense reward weights (``PickRewardConfig``), plus the ``progress`` reward's settings.

    ``progress`` reward: ``progress_lambda * (progress_gamma * phi(s') - phi(s)) + success * bonus`` on
    the ground-truth progress, the shaping a reward-model run learns from, with a perfect model.
    """

    progress_lambda: float = Field(default=2.0, ge=0)
    progress_gamma: float = Field(default=0.97, gt=0, le=1, description="the learner's discount")
    progress_noise: float = Field(
        default=0.0, ge=0,
        description="std of Gaussian noise on phi at every step: a reward model's per-frame error, to "
        "measure how much of it the shaping tolerates",
    )  # fmt: skip


class PandaPickConfig(PandaTaskConfig):
    """Lift the 4 cm cube ``lift_height`` above where it started."""

    cube_x: CubeRange = (0.4, 0.6)
    cube_y: CubeRange = (-0.15, 0.15)
    cube_yaw: CubeYaw = 0.0
    lift_height: float = Field(default=0.05, gt=0)
    reward: Literal["dense", "sparse", "progress"] = Field(
        default="dense",
        description="progress: potential-based shaping on the ground-truth progress (what a reward-model "
        "run gets from a perfect model)",
    )
    rewards: PandaPickRewardConfig = Field(default_factory=PandaPickRewardConfig)


class PandaReachConfig(PandaTaskConfig):
    """Bring the pinch site within ``success_distance`` of a random target."""

    episode_length_s: float = Field(default=5.0, gt=0)
    targets: Box = Field(
        default_factory=lambda: Box(low=(0.35, -0.25, 0.1), high=(0.65, 0.25, 0.4)),
        description="targets are uniform in this box",
    )
    success_distance: float = Field(default=0.03, gt=0)
