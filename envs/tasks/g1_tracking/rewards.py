"""Reward terms of the tracking task (BeyondMimic), registered by name for the config's term list.

A term is a small function ``(frame, ctx, **params) -> [N]`` decorated with ``@reward_term``; the
config (``G1TrackingConfig.rewards``) lists entries ``name: {weight, term, **params}`` and the reward
is ``step_dt * sum(weight * term)`` over them, mjlab's reward manager. A new term is one function
here and one config entry; its keyword parameters are the entry's keys, checked against the
function's signature and annotations (``Positive`` for a ``std``).

Tracking terms are exp(-error / std^2) in [0, 1]; body terms average over tracked bodies with
per-body weights: uniform for BeyondMimic, keypoint weights (end-effectors and head higher) for the
GenMimic variant. Terms take numpy arrays or device tensors (``striata.envs.arrays``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

from pydantic import Field

from striata.envs.arrays import Array, namespace
from striata.envs.robots.actuators import braking_speeds
from striata.envs.rotations import quat_error_magnitude
from striata.envs.tasks.g1_tracking.frame import TrackingFrame

Positive = Annotated[float, Field(gt=0)]


class RewardContext(NamedTuple):
    """What terms read besides the frame, in the frame's array type."""

    rel_pos: Array  # [N, B, 3] reference body positions moved onto the robot's anchor (relative_reference)
    rel_quat: Array  # [N, B, 4] their orientations, turned by the same heading
    body_weights: Array  # [B] per tracked body, summing to 1
    soft_lower: Array  # [J] soft joint limits
    soft_upper: Array
    bridge_lower: Array  # [J] a deploy bridge's soft limits (where it clamps targets)
    bridge_upper: Array
    brake_accel: Array  # [J] rad/s^2 the bridge brakes each joint at near them
    speed_limit: Array  # [J] rad/s the bridge lets each joint reach


RewardTerm = Callable[..., Array]
REWARD_TERMS: dict[str, RewardTerm] = {}


def reward_term(func: RewardTerm) -> RewardTerm:
    """Register ``func`` under its name, so a config entry can name it."""
    known = REWARD_TERMS.get(func.__name__)
    if known is not None and known is not func:
        raise ValueError(f"reward term {func.__name__!r} is registered already ({known.__module__})")
    REWARD_TERMS[func.__name__] = func
    return func


def _exp(error: Array, std: float) -> Array:
    return namespace(error).exp(-error / std**2)


def _sq(a: Array, b: Array) -> Array:
    return namespace(a).sum((a - b) ** 2, axis=-1)


@reward_term
def anchor_pos(f: TrackingFrame, ctx: RewardContext, std: Positive) -> Array:
    return _exp(_sq(f.ref_anchor_pos, f.anchor_pos), std)


@reward_term
def anchor_ori(f: TrackingFrame, ctx: RewardContext, std: Positive) -> Array:
    return _exp(quat_error_magnitude(f.ref_anchor_quat, f.anchor_quat) ** 2, std)


@reward_term
def body_pos(f: TrackingFrame, ctx: RewardContext, std: Positive) -> Array:
    return _exp(_sq(ctx.rel_pos, f.body_pos) @ ctx.body_weights, std)


@reward_term
def body_ori(f: TrackingFrame, ctx: RewardContext, std: Positive) -> Array:
    return _exp(quat_error_magnitude(ctx.rel_quat, f.body_quat) ** 2 @ ctx.body_weights, std)


@reward_term
def body_lin_vel(f: TrackingFrame, ctx: RewardContext, std: Positive) -> Array:
    return _exp(_sq(f.ref_body_lin_vel, f.body_lin_vel) @ ctx.body_weights, std)


@reward_term
def body_ang_vel(f: TrackingFrame, ctx: RewardContext, std: Positive) -> Array:
    return _exp(_sq(f.ref_body_ang_vel, f.body_ang_vel) @ ctx.body_weights, std)


@reward_term
def action_rate(f: TrackingFrame, ctx: RewardContext) -> Array:
    return _sq(f.actions, f.prev_actions)


@reward_term
def joint_limit(f: TrackingFrame, ctx: RewardContext) -> Array:
    """Radians beyond the soft joint limits, summed over joints."""
    xp = namespace(f.joint_pos)
    below = xp.clip(ctx.soft_lower - f.joint_pos, min=0.0)
    above = xp.clip(f.joint_pos - ctx.soft_upper, min=0.0)
    return xp.sum(below + above, axis=-1)


@reward_term
def limit_envelope(
    f: TrackingFrame, ctx: RewardContext, share: Annotated[float, Field(gt=0, le=1)] = 1.0
) -> Array:
    """rad/s by which joints move faster than ``share`` of what a deploy bridge lets them, summed over
    joints: toward a soft limit faster than braking stops them at it (``braking_speeds``), or past the
    bridge's speed limit. The bridge brakes such a joint whatever the policy commands (deploy/safety.py),
    and a policy whose motion relied on that speed falls. ``share`` < 1 leaves room for what happens
    between two control steps, which this term does not see."""
    xp = namespace(f.joint_vel)
    speeds = braking_speeds(f.joint_pos, ctx.bridge_lower, ctx.bridge_upper, ctx.brake_accel, ctx.speed_limit)
    up, down = share * speeds[0], share * speeds[1]
    return xp.sum(xp.clip(f.joint_vel - up, min=0.0) + xp.clip(-f.joint_vel - down, min=0.0), axis=-1)


@dataclass(frozen=True)
class WeightedTerm:
    """A config entry bound to its function: contributes ``weight * func(frame, ctx, **params)``."""

    name: str
    func: RewardTerm
    weight: float
    params: dict[str, Any]


def compute(
    terms: tuple[WeightedTerm, ...], f: TrackingFrame, ctx: RewardContext, step_dt: float
) -> tuple[Array, dict[str, Array]]:
    """The reward [N] (weighted sum times ``step_dt``, rsl_rl/mjlab's scaling) and each term's value."""
    values = {t.name: t.func(f, ctx, **t.params) for t in terms}
    reward = sum(t.weight * values[t.name] for t in terms) * step_dt
    return reward, values


def max_step_reward(terms: tuple[WeightedTerm, ...], step_dt: float) -> float:
    """The reward of perfect tracking with no penalty (positive terms at 1): what a step can earn at most."""
    return step_dt * sum(t.weight for t in terms if t.weight > 0)
