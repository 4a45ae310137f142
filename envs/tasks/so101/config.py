"""Config schemas of the SO-101 tasks, and the layout of their state observations.

Every mode switch is a ``Literal``, so a typo fails validation with the field's name and the allowed
values. Defaults: 10 Hz control (physics 500 Hz, decimation 50) as HIL-SERL's arms, joint targets that
move at most 0.1 rad a step (1 rad/s, a fifth of the servo's no-load speed; the gripper 0.25 rad), 64x64
camera frames drawn without shadows or multisampling from decimated visual meshes (what software
rendering can afford: see ``envs/visual_meshes.py``). Boxes and cube ranges are in the world frame, whose
origin is the arm's base on the table top.

Actions (both tasks, ``SO101_ACTION_DIM`` = 6, each in [-1, 1]), in servo order: five arm joint-target
deltas (``joint_step`` rad at |a| = 1, added to the last target, clipped to the joint limits), then the
gripper's target opening (-1 open at ``gripper_open`` rad .. +1 closed at the joint's lower limit),
approached at ``gripper_step`` rad per step at most.

State observation of ``so101_reach`` (``REACH_OBS_TERMS``, 27 values, in this order): joint_pos 6 (rad,
servo order, gripper last), joint_vel 6 (rad/s), joint_target 6 (rad: the targets the servos were last
sent, which the next deltas add to), tip_pos 3 (m, world), target_pos 3, tip_to_target 3
(target_pos - tip_pos).

State observation of ``so101_pick`` (``PICK_OBS_TERMS``, 31 values): joint_pos 6, joint_vel 6,
joint_target 6, tip_pos 3, cube_pos 3, cube_quat 4 (w, x, y, z), tip_to_cube 3 (cube_pos - tip_pos).

With cameras the observation is a dict: ``"state"`` (the task's state above), each camera's frames, and
``"proprio"`` (``PROPRIO_OBS_TERMS``, 21 values: the first four terms of both states, what the arm
itself measures or computes from its joints). A policy from pixels reads ``proprio`` and the frames
(``sac.obs_key: proprio``), never the cube's pose; the scripted demonstrations still read ``state``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from striata.envs.robots.so101 import max_target_step
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

VisualMeshes = Literal["decimated", "original"]

SO101_ACTION_DIM = 6

REACH_OBS_TERMS: ObsTerms = (
    ("joint_pos", 6),
    ("joint_vel", 6),
    ("joint_target", 6),
    ("tip_pos", 3),
    ("target_pos", 3),
    ("tip_to_target", 3),
)

PICK_OBS_TERMS: ObsTerms = (
    ("joint_pos", 6),
    ("joint_vel", 6),
    ("joint_target", 6),
    ("tip_pos", 3),
    ("cube_pos", 3),
    ("cube_quat", 4),
    ("tip_to_cube", 3),
)


PROPRIO_OBS_TERMS: ObsTerms = REACH_OBS_TERMS[:4]  # also PICK_OBS_TERMS[:4]


class So101TaskConfig(ArmTaskConfig):
    """What both SO-101 tasks share: action scales, 64x64 frames and how they are drawn."""

    joint_step: float = Field(
        default=0.1, gt=0, description="arm joint-target change at |action| = 1 (rad per step)"
    )
    gripper_open: float = Field(
        default=0.8,
        ge=0.0,
        le=1.7453,
        description="gripper joint target of a fully open command (rad; ~6.5 cm between the jaw tips)",
    )
    # 0.25 rad a step is 2.5 rad/s, what the arm bridge's default target-rate limit passes (deploy/safety.py:
    # 0.05 rad per 20 ms tick), so a deployed gripper closes as fast as the simulated one.
    gripper_step: float = Field(default=0.25, gt=0, description="largest gripper-target change a step (rad)")
    image_size: ImageSize = 64
    camera_shadows: bool = Field(
        default=False,
        description="draw the observation frames with shadows, reflections and 4x multisampling "
        "(about 10x the cost with software OpenGL)",
    )
    visual_meshes: VisualMeshes = Field(
        default="decimated",
        description="decimated: visual meshes reduced to visual_mesh_faces triangles each (collision "
        "meshes untouched); original: the asset's 322k-triangle meshes",
    )
    visual_mesh_faces: int = Field(
        default=1500, ge=100, description="triangle budget of each decimated visual mesh"
    )

    @model_validator(mode="after")
    def _servo_can_follow(self) -> So101TaskConfig:
        limit = max_target_step(self.control_dt)
        for name in ("joint_step", "gripper_step"):
            if getattr(self, name) > limit:
                raise ValueError(
                    f"{name} {getattr(self, name)} rad exceeds what an STS3215 covers in one control step "
                    f"({limit:.3f} rad at {self.control_dt:g} s)"
                )
        return self


class So101ReachConfig(So101TaskConfig):
    """Bring the tip within ``success_distance`` of a random target."""

    episode_length_s: float = Field(default=5.0, gt=0)
    targets: Box = Field(
        default_factory=lambda: Box(low=(0.14, -0.14, 0.04), high=(0.28, 0.14, 0.18)),
        description="targets are uniform in this box (all within the arm's reach)",
    )
    success_distance: float = Field(default=0.02, gt=0)
    distance_scale: float = Field(default=10.0, gt=0, description="k of the dense reward -tanh(k d) (1/m)")


class So101PickConfig(So101TaskConfig):
    """Lift the 2.5 cm cube ``lift_height`` above where it started."""

    cube_x: CubeRange = (0.15, 0.25)
    cube_y: CubeRange = (-0.1, 0.1)
    cube_yaw: CubeYaw = 0.0
    lift_height: float = Field(default=0.05, gt=0)
    rewards: PickRewardConfig = Field(default_factory=PickRewardConfig)
