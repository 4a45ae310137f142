"""Reward terms of the tracking task (BeyondMimic): exp(-error / std^2) tracking terms and penalties.

Body terms average over tracked bodies with per-body weights: uniform for BeyondMimic,
keypoint weights (end-effectors and head higher) for the GenMimic variant. Terms take numpy arrays
or device tensors (``envs.arrays``).
"""

from __future__ import annotations

from envs.arrays import Array, namespace
from envs.rotations import quat_error_magnitude
from envs.tasks.g1_tracking.config import RewardConfig
from envs.tasks.g1_tracking.frame import TrackingFrame


def tracking_terms(
    f: TrackingFrame, cfg: RewardConfig, body_weights: Array, rel_pos: Array, rel_quat: Array
) -> dict[str, Array]:
    """Unweighted term values in [0, 1]; ``body_weights`` sum to 1 (same array type as the frame)."""
    xp = namespace(f.body_pos)

    def exp(error: Array, std: float) -> Array:
        return xp.exp(-error / std**2)

    def sq(a: Array, b: Array) -> Array:
        return xp.sum((a - b) ** 2, axis=-1)

    anchor_pos_err = sq(f.ref_anchor_pos, f.anchor_pos)
    anchor_ori_err = quat_error_magnitude(f.ref_anchor_quat, f.anchor_quat) ** 2
    body_pos_err = sq(rel_pos, f.body_pos) @ body_weights
    body_ori_err = quat_error_magnitude(rel_quat, f.body_quat) ** 2 @ body_weights
    lin_vel_err = sq(f.ref_body_lin_vel, f.body_lin_vel) @ body_weights
    ang_vel_err = sq(f.ref_body_ang_vel, f.body_ang_vel) @ body_weights
    return {
        "anchor_pos": exp(anchor_pos_err, cfg.anchor_pos.std),
        "anchor_ori": exp(anchor_ori_err, cfg.anchor_ori.std),
        "body_pos": exp(body_pos_err, cfg.body_pos.std),
        "body_ori": exp(body_ori_err, cfg.body_ori.std),
        "body_lin_vel": exp(lin_vel_err, cfg.body_lin_vel.std),
        "body_ang_vel": exp(ang_vel_err, cfg.body_ang_vel.std),
    }


def action_rate(f: TrackingFrame) -> Array:
    return namespace(f.actions).sum((f.actions - f.prev_actions) ** 2, axis=-1)


def joint_limit_violation(joint_pos: Array, soft_lower: Array, soft_upper: Array) -> Array:
    xp = namespace(joint_pos)
    below = xp.clip(soft_lower - joint_pos, min=0.0)
    above = xp.clip(joint_pos - soft_upper, min=0.0)
    return xp.sum(below + above, axis=-1)


def term_weights(cfg: RewardConfig) -> dict[str, float]:
    return {
        "anchor_pos": cfg.anchor_pos.weight,
        "anchor_ori": cfg.anchor_ori.weight,
        "body_pos": cfg.body_pos.weight,
        "body_ori": cfg.body_ori.weight,
        "body_lin_vel": cfg.body_lin_vel.weight,
        "body_ang_vel": cfg.body_ang_vel.weight,
        "action_rate": cfg.action_rate,
        "joint_limit": cfg.joint_limit,
    }


def max_step_reward(cfg: RewardConfig, step_dt: float) -> float:
    """The reward of perfect tracking with no penalty: what a step can earn at most."""
    return step_dt * sum(w for w in term_weights(cfg).values() if w > 0)
