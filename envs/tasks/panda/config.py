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

from pydantic import Field, field_validator, model_validator

from striata.envs.tasks.base import StrictModel, TaskConfig

CameraName = Literal["front", "wrist"]
ControlMode = Literal["ee_delta", "joint_position"]
RewardMode = Literal["dense", "sparse"]

ObsTerms = tuple[tuple[str, int], ...]

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


def obs_slices(terms: ObsTerms) -> dict[str, slice]:
    """Where each named term lies in the flat state vector."""
    out: dict[str, slice] = {}
    start = 0
    for name, size in terms:
        out[name] = slice(start, start + size)
        start += size
    return out


Vec3 = tuple[float, float, float]


class Box(StrictModel):
    """An axis-aligned box in the world frame (m)."""

    low: Vec3
    high: Vec3

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if any(lo > hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError(f"low {self.low} must be <= high {self.high} on every axis")
        return self


class IKConfig(StrictModel):
    """Damped least squares on the pinch site: position plus a gripper-down orientation task."""

    damping: float = Field(default=0.05, gt=0, description="DLS damping lambda (m, rad)")
    orientation_weight: float = Field(default=1.0, ge=0, description="weight of the orientation error")
    nullspace_gain: float = Field(
        default=0.2, ge=0, le=1, description="pull toward the home posture in the task's null space"
    )
    max_joint_step: float = Field(default=0.3, gt=0, description="largest joint-target change a step (rad)")


class PandaTaskConfig(TaskConfig):
    """What both Panda tasks share: rates, control mode, cameras, workspace."""

    physics_dt: float = Field(default=0.002, gt=0)
    decimation: int = Field(default=50, ge=1)
    episode_length_s: float = Field(default=10.0, gt=0)
    control: ControlMode = Field(
        default="ee_delta",
        description="ee_delta: [dx, dy, dz, gripper] in [-1, 1]^4; joint_position: 7 joint deltas + gripper",
    )
    reward: RewardMode = "dense"
    cameras: list[CameraName] = Field(
        default_factory=list, description="camera frames added to the observation (obs becomes a dict)"
    )
    image_size: int = Field(default=128, ge=16, le=1024, description="camera frames are image_size^2 RGB")
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

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, cameras: list[str]) -> list[str]:
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must be distinct, got {cameras}")
        return cameras


class PickRewardConfig(StrictModel):
    """Dense reward: -reach * tanh(10 d) - lift * (1 - clip(lift / lift_height, 0, 1)) + success * bonus.

    The shaped terms are penalties that vanish at the goal: success ends the episode, and a positive
    reward per step would make hovering just short of success worth more than succeeding.
    ``progress`` reward: ``progress_lambda * (progress_gamma * phi(s') - phi(s)) + success * bonus`` on
    the ground-truth progress, the shaping a reward-model run learns from, with a perfect model.
    """

    reach: float = 1.0
    lift: float = 2.0
    success: float = 5.0
    progress_lambda: float = Field(default=2.0, ge=0)
    progress_gamma: float = Field(default=0.97, gt=0, le=1, description="the learner's discount")
    progress_noise: float = Field(
        default=0.0, ge=0,
        description="std of Gaussian noise on phi at every step: a reward model's per-frame error, to "
        "measure how much of it the shaping tolerates",
    )  # fmt: skip


class PandaPickConfig(PandaTaskConfig):
    """Lift the 4 cm cube ``lift_height`` above where it started."""

    cube_x: tuple[float, float] = (0.4, 0.6)
    cube_y: tuple[float, float] = (-0.15, 0.15)
    cube_yaw: float = Field(
        default=0.0, ge=0, description="cube yaw is uniform in [-cube_yaw, cube_yaw] (rad)"
    )
    lift_height: float = Field(default=0.05, gt=0)
    reward: Literal["dense", "sparse", "progress"] = Field(
        default="dense",
        description="progress: potential-based shaping on the ground-truth progress (what a reward-model "
        "run gets from a perfect model)",
    )
    rewards: PickRewardConfig = Field(default_factory=PickRewardConfig)

    @field_validator("cube_x", "cube_y")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"range {value} must be (low, high) with low <= high")
        return value


class PandaReachConfig(PandaTaskConfig):
    """Bring the pinch site within ``success_distance`` of a random target."""

    episode_length_s: float = Field(default=5.0, gt=0)
    targets: Box = Field(
        default_factory=lambda: Box(low=(0.35, -0.25, 0.1), high=(0.65, 0.25, 0.4)),
        description="targets are uniform in this box",
    )
    success_distance: float = Field(default=0.03, gt=0)
