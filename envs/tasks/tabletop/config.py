"""Config pieces every tabletop arm task shares, and the layout of state observations.

``ArmTaskConfig`` holds what both arms' tasks share (10 Hz control: physics 500 Hz, decimation 50; the
reward mode; the cameras); each robot's task config adds its action scales and camera defaults, and each
task its own fields, built from the types here (``Box``, ``CubeRange``, ``CubeYaw``, ``PickRewardConfig``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from striata.envs.tasks.base import StrictModel, TaskConfig

CameraName = Literal["front", "wrist"]
RewardMode = Literal["dense", "sparse"]

ObsTerms = tuple[tuple[str, int], ...]


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


def _low_high(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"range {value} must be (low, high) with low <= high")
    return value


# A cube's spawn range along one axis (m), uniform in [low, high].
CubeRange = Annotated[tuple[float, float], AfterValidator(_low_high)]
CubeYaw = Annotated[float, Field(ge=0, description="cube yaw is uniform in [-cube_yaw, cube_yaw] (rad)")]
ImageSize = Annotated[int, Field(ge=16, le=1024, description="camera frames are image_size^2 RGB")]


class ArmTaskConfig(TaskConfig):
    """What every tabletop arm task shares: rates, reward mode, cameras (each robot sets ``image_size``)."""

    physics_dt: float = Field(default=0.002, gt=0)
    decimation: int = Field(default=50, ge=1)
    episode_length_s: float = Field(default=10.0, gt=0)
    reward: RewardMode = "dense"
    cameras: list[CameraName] = Field(
        default_factory=list, description="camera frames added to the observation (obs becomes a dict)"
    )
    image_size: ImageSize

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
    """

    reach: float = 1.0
    lift: float = 2.0
    success: float = 5.0
