"""Config schema of the G1 tracking task; defaults are BeyondMimic's (see DESIGN.md)."""

from __future__ import annotations

from pydantic import Field, model_validator

from envs.robots.g1 import END_EFFECTOR_BODIES, TRACKED_BODIES
from envs.tasks.base import StrictModel, TaskConfig

STAND_MOTION = "builtin:stand"


class MotionSource(StrictModel):
    file: str = Field(
        default="motions/J_ShortDance16_JazzWalk.csv",
        description=(
            "clip path; relative paths are looked up in the working directory, then in $STRIATA_DATA; "
            f"{STAND_MOTION!r}: hold the default pose (a standing policy)"
        ),
    )
    fps: float | None = Field(default=60.0, gt=0, description="source frame rate (CSV files store none)")
    allow_pickle: bool = Field(default=False, description="allow GMR .pkl files (unpickling runs code)")


class ExpTerm(StrictModel):
    """A tracking term weight * exp(-error / std^2)."""

    weight: float
    std: float = Field(gt=0)


class RewardConfig(StrictModel):
    anchor_pos: ExpTerm = ExpTerm(weight=0.5, std=0.3)
    anchor_ori: ExpTerm = ExpTerm(weight=0.5, std=0.4)
    body_pos: ExpTerm = ExpTerm(weight=1.0, std=0.3)
    body_ori: ExpTerm = ExpTerm(weight=1.0, std=0.4)
    body_lin_vel: ExpTerm = ExpTerm(weight=1.0, std=1.0)
    body_ang_vel: ExpTerm = ExpTerm(weight=1.0, std=3.14)
    action_rate: float = -0.1
    joint_limit: float = -10.0
    soft_joint_limit_factor: float = Field(default=0.9, gt=0, le=1)


class TerminationConfig(StrictModel):
    anchor_height_error: float = Field(default=0.25, gt=0, description="metres")
    anchor_ori_error: float = Field(default=0.8, gt=0, description="difference of projected gravity z")
    end_effector_height_error: float = Field(default=0.25, gt=0, description="metres")


class SamplingConfig(StrictModel):
    """Adaptive start frames: bins of ``bin_s`` seconds sampled by smoothed failure rate."""

    adaptive: bool = True
    bin_s: float = Field(default=1.0, gt=0)
    kernel_size: int = Field(default=1, ge=1)
    kernel_lambda: float = Field(default=0.8, gt=0)
    uniform_ratio: float = Field(default=0.1, ge=0)
    alpha: float = Field(default=0.001, gt=0, le=1, description="EMA rate of per-bin failure counts")


class ResetNoise(StrictModel):
    root_xy: float = 0.05
    root_z: float = 0.01
    root_roll_pitch: float = 0.1
    root_yaw: float = 0.2
    root_lin_vel_xy: float = 0.5
    root_lin_vel_z: float = 0.2
    root_ang_vel_roll_pitch: float = 0.52
    root_ang_vel_yaw: float = 0.78
    joint_pos: float = 0.1


class RandomizationConfig(StrictModel):
    enabled: bool = True
    friction: tuple[float, float] = (0.3, 1.6)
    push_interval_s: tuple[float, float] = (1.0, 3.0)
    push_lin_vel: tuple[float, float, float] = (0.5, 0.5, 0.2)
    push_ang_vel: tuple[float, float, float] = (0.52, 0.52, 0.78)
    default_pos_offset: float = Field(
        default=0.01, ge=0, description="per-env offset of the default pose, rad"
    )
    reset_noise: ResetNoise = ResetNoise()


class ObservationNoise(StrictModel):
    """Uniform noise on policy observations (the critic sees clean values)."""

    enabled: bool = True
    anchor_pos: float = 0.25
    anchor_ori: float = 0.05
    base_lin_vel: float = 0.5
    base_ang_vel: float = 0.2
    joint_pos: float = 0.01
    joint_vel: float = 0.5


def _default_keypoint_weights() -> dict[str, float]:
    # End-effectors and the torso, which carries the head, matter most to how a motion reads.
    weights = dict.fromkeys(TRACKED_BODIES, 1.0)
    weights.update(dict.fromkeys(END_EFFECTOR_BODIES, 2.0))
    weights["torso_link"] = 2.0
    return weights


class G1TrackingConfig(TaskConfig):
    physics_dt: float = 0.005
    decimation: int = 4
    episode_length_s: float = 10.0
    motion: MotionSource = MotionSource()
    rewards: RewardConfig = RewardConfig()
    terminations: TerminationConfig = TerminationConfig()
    sampling: SamplingConfig = SamplingConfig()
    randomization: RandomizationConfig = RandomizationConfig()
    observation_noise: ObservationNoise = ObservationNoise()
    state_estimation: bool = Field(
        default=True,
        description="policy sees anchor position and base linear velocity; false: only what a robot measures",
    )
    keypoints: bool = Field(default=False, description="GenMimic: weight tracking terms per keypoint")
    keypoint_weights: dict[str, float] = Field(default_factory=_default_keypoint_weights)

    @model_validator(mode="after")
    def _check_keypoints(self) -> G1TrackingConfig:
        unknown = sorted(set(self.keypoint_weights) - set(TRACKED_BODIES))
        if unknown:
            raise ValueError(f"keypoint_weights: unknown bodies {unknown}; allowed: {list(TRACKED_BODIES)}")
        negative = {k: v for k, v in self.keypoint_weights.items() if v < 0}
        if negative:
            raise ValueError(f"keypoint_weights: weights must be >= 0, got {negative}")
        return self
