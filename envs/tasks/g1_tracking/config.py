"""Config schema of the G1 tracking task; defaults are BeyondMimic's (see DESIGN.md).

``rewards`` is mjlab's term list: entries by name, each a registered term of ``rewards.py`` with its
weight and parameters, laid over ``DEFAULT_REWARDS`` so that a YAML file or ``--set
rewards.body_pos.std=0.5`` changes one key of one entry.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import cache
from typing import Any, get_type_hints

from pydantic import (
    Field,
    ValidationError,
    create_model,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from striata.envs.robots.g1 import END_EFFECTOR_BODIES, TRACKED_BODIES
from striata.envs.tasks.base import StrictModel, TaskConfig
from striata.envs.tasks.g1_tracking import rewards

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
    start_s: float = Field(default=0.0, ge=0, description="the segment tracked starts this far into the clip")
    end_s: float | None = Field(default=None, gt=0, description="... and ends here (default: the clip's end)")

    @model_validator(mode="after")
    def _check_segment(self) -> MotionSource:
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        return self

    @property
    def segment(self) -> tuple[float, float | None]:
        """(start_s, end_s) of the part of the clip tracked; end None: to the clip's end."""
        return self.start_s, self.end_s


class RewardTermConfig(StrictModel):
    """One reward entry: ``weight * term(frame, ctx, **params)``, the params being the entry's other keys.

    Each registered term gets a subclass whose fields are its keyword parameters (``reward_entries``)."""

    term: str = Field(description="registered reward term (rewards.REWARD_TERMS); default: the entry's key")
    weight: float

    def params(self) -> dict[str, Any]:
        """The term's keyword arguments."""
        return {
            name: getattr(self, name) for name in type(self).model_fields if name not in ("term", "weight")
        }


# BeyondMimic's terms and weights (DESIGN.md); entries are keyed by name and name their term by it.
DEFAULT_REWARDS: dict[str, dict[str, Any]] = {
    "anchor_pos": {"weight": 0.5, "std": 0.3},
    "anchor_ori": {"weight": 0.5, "std": 0.4},
    "body_pos": {"weight": 1.0, "std": 0.3},
    "body_ori": {"weight": 1.0, "std": 0.4},
    "body_lin_vel": {"weight": 1.0, "std": 1.0},
    "body_ang_vel": {"weight": 1.0, "std": 3.14},
    "action_rate": {"weight": -0.1},
    "joint_limit": {"weight": -10.0},
}


@cache
def _entry_model(func: rewards.RewardTerm) -> type[RewardTermConfig]:
    """The config model of one term: ``term``, ``weight`` and the function's keyword parameters."""
    hints = get_type_hints(func, include_extras=True)
    params = list(inspect.signature(func).parameters.values())[2:]  # after (frame, ctx)
    fields: dict[str, Any] = {
        p.name: (hints.get(p.name, Any), ... if p.default is p.empty else p.default) for p in params
    }
    return create_model(f"RewardTerm_{func.__name__}", __base__=RewardTermConfig, **fields)


def reward_entries(value: Any) -> Any:
    """Entries laid over ``DEFAULT_REWARDS`` key by key, each validated against its term.

    ``name: {weight: ..., std: ...}`` updates or adds an entry (a changed ``term`` replaces it),
    ``name: <number>`` sets a weight, ``name: null`` removes the entry. Anything but a mapping is left
    for pydantic to refuse."""
    if not isinstance(value, Mapping):
        return value
    entries = {name: dict(entry) for name, entry in DEFAULT_REWARDS.items()}
    errors: list[InitErrorDetails] = []
    for name, given in value.items():
        if isinstance(given, RewardTermConfig):
            given = given.model_dump()
        elif isinstance(given, int | float) and not isinstance(given, bool):
            given = {"weight": given}
        if given is None:
            if entries.pop(name, None) is None:
                errors.append(_error(name, "no reward entry {entry} to remove", given, entry=repr(name)))
        elif isinstance(given, Mapping):
            base = entries.get(name, {})
            replaced = given.get("term", name) != base.get("term", name)
            entries[name] = dict(given) if replaced else {**base, **given}
        else:
            errors.append(_error(name, "expected a mapping of weight and params, a weight or null", given))
    out = {}
    for name, entry in entries.items():
        term = entry.get("term", name)
        if term not in rewards.REWARD_TERMS:
            known = ", ".join(rewards.REWARD_TERMS)
            errors.append(
                _error(
                    name, "unknown reward term {term}; terms: {known}", entry, term=repr(term), known=known
                )
            )
            continue
        model = _entry_model(rewards.REWARD_TERMS[term])
        try:
            out[name] = model.model_validate({**entry, "term": term})
        except ValidationError as exc:
            errors.extend(_entry_errors(name, term, model, exc))
    if errors:
        raise ValidationError.from_exception_data("rewards", errors)
    return out


def _error(name: str, message: str, given: Any, /, **ctx: str) -> InitErrorDetails:
    return {"type": PydanticCustomError("reward_entry", message, ctx), "loc": (name,), "input": given}


def _entry_errors(
    name: str, term: str, model: type[RewardTermConfig], exc: ValidationError
) -> list[InitErrorDetails]:
    """``exc``'s errors placed under the entry's name; an unknown key lists the term's keys."""
    out: list[InitErrorDetails] = []
    for err in exc.errors(include_url=False):
        loc = (name, *err["loc"])
        if err["type"] == "extra_forbidden":
            message = "unknown key {key} of reward term {term}; allowed: {allowed}"
            ctx = {"key": repr(err["loc"][-1]), "term": repr(term), "allowed": ", ".join(model.model_fields)}
            out.append(
                {"type": PydanticCustomError("reward_entry", message, ctx), "loc": loc, "input": err["input"]}
            )
        else:
            out.append({"type": err["type"], "loc": loc, "input": err["input"], "ctx": err.get("ctx", {})})
    return out


class TerminationConfig(StrictModel):
    anchor_height_error: float = Field(default=0.25, gt=0, description="metres")
    anchor_ori_error: float = Field(default=0.8, gt=0, description="difference of projected gravity z")
    end_effector_height_error: float = Field(default=0.25, gt=0, description="metres")


class SamplingConfig(StrictModel):
    """Adaptive start frames: bins of ``bin_s`` seconds sampled by smoothed failure rate."""

    adaptive: bool = True
    first_frame: bool = Field(
        default=False, description="every episode starts at the clip's first frame (evaluation)"
    )
    standing_start: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of episodes that start as a deployment does: the clip's first frame, with the "
        "robot standing still on its default pose where and as the reference faces",
    )
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
    rewards: dict[str, RewardTermConfig] = Field(
        default_factory=lambda: reward_entries({}),
        description="reward entries by name, laid over DEFAULT_REWARDS (see reward_entries)",
    )
    soft_joint_limit_factor: float = Field(
        default=0.9, gt=0, le=1, description="soft joint limits (penalty, reset clip) as a share of the range"
    )
    clip_targets: bool = Field(
        default=True,
        description="joint targets clipped into the range a deploy bridge clamps them to (the joint range "
        "less a margin: envs/robots/actuators.soft_joint_limits): a policy that learned targets past a "
        "joint's range as a source of torque loses that torque on the robot and falls",
    )
    action_delay_ticks: tuple[int, int] = Field(
        default=(0, 0),
        description="physics steps a new action waits before it acts (the previous targets hold meanwhile), "
        "drawn per control step from [low, high]: a deployed command acts a tick or more after the state it "
        "was computed from, and a policy trained without that lag can fall from one tick of it",
    )
    observation_delay_ticks: tuple[int, int] = Field(
        default=(0, 0),
        description="the policy observes the state this many physics steps before the control step ends, "
        "drawn per step from [low, high] (the critic sees the current one): a deployed controller acts on "
        "a state up to a tick or more old",
    )
    bridge_brake: bool = Field(
        default=False,
        description="each physics step brakes a joint as a deploy bridge does (deploy/safety.py): one that "
        "moves toward its soft limit faster than its motor can stop it there gets its target where it "
        "is and damping that spends its effort; a policy trained without it can fall when it is braked",
    )
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

    @field_validator("rewards", mode="before")
    @classmethod
    def _merge_rewards(cls, value: Any) -> Any:
        return reward_entries(value)

    @field_serializer("rewards")
    def _dump_rewards(self, entries: dict[str, RewardTermConfig]) -> dict[str, Any]:
        # Each entry with its term's params, and a removed default as null, so a dump validates back.
        removed = {name: None for name in DEFAULT_REWARDS if name not in entries}
        return {**{name: entry.model_dump() for name, entry in entries.items()}, **removed}

    @model_validator(mode="after")
    def _check_deploy_emulation(self) -> G1TrackingConfig:
        for name in ("action_delay_ticks", "observation_delay_ticks"):
            low, high = getattr(self, name)
            if not 0 <= low <= high < self.decimation:
                raise ValueError(
                    f"{name}: {[low, high]} must be 0 <= low <= high < decimation ({self.decimation})"
                )
        cpu_only = {
            "bridge_brake": self.bridge_brake,
            "observation_delay_ticks": any(self.observation_delay_ticks),
        }
        for name, used in cpu_only.items():
            if used and self.backend != "cpu":
                raise ValueError(
                    f"{name}: the {self.backend!r} backend does not emulate it yet; use backend cpu"
                )
        return self

    @model_validator(mode="after")
    def _check_keypoints(self) -> G1TrackingConfig:
        unknown = sorted(set(self.keypoint_weights) - set(TRACKED_BODIES))
        if unknown:
            raise ValueError(f"keypoint_weights: unknown bodies {unknown}; allowed: {list(TRACKED_BODIES)}")
        negative = {k: v for k, v in self.keypoint_weights.items() if v < 0}
        if negative:
            raise ValueError(f"keypoint_weights: weights must be >= 0, got {negative}")
        return self
