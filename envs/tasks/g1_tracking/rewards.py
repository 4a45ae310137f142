"""Reward terms of the tracking task (BeyondMimic): exp(-error / std^2) tracking terms and penalties.

Body terms average over tracked bodies with per-body weights: uniform for BeyondMimic,
keypoint weights (end-effectors and head higher) for the GenMimic variant.
"""

from __future__ import annotations

import numpy as np

from envs.rotations import quat_error_magnitude
from envs.tasks.g1_tracking.config import RewardConfig
from envs.tasks.g1_tracking.frame import TrackingFrame


def _exp(error: np.ndarray, std: float) -> np.ndarray:
    return np.exp(-error / std**2)


def _weighted_mean(per_body: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return per_body @ weights


def tracking_terms(
    f: TrackingFrame, cfg: RewardConfig, body_weights: np.ndarray, rel_pos: np.ndarray, rel_quat: np.ndarray
) -> dict[str, np.ndarray]:
    """Unweighted term values in [0, 1]; ``body_weights`` sum to 1."""
    anchor_pos_err = np.sum((f.ref_anchor_pos - f.anchor_pos) ** 2, axis=-1)
    anchor_ori_err = quat_error_magnitude(f.ref_anchor_quat, f.anchor_quat) ** 2
    body_pos_err = _weighted_mean(np.sum((rel_pos - f.body_pos) ** 2, axis=-1), body_weights)
    body_ori_err = _weighted_mean(quat_error_magnitude(rel_quat, f.body_quat) ** 2, body_weights)
    lin_vel_err = _weighted_mean(np.sum((f.ref_body_lin_vel - f.body_lin_vel) ** 2, axis=-1), body_weights)
    ang_vel_err = _weighted_mean(np.sum((f.ref_body_ang_vel - f.body_ang_vel) ** 2, axis=-1), body_weights)
    return {
        "anchor_pos": _exp(anchor_pos_err, cfg.anchor_pos.std),
        "anchor_ori": _exp(anchor_ori_err, cfg.anchor_ori.std),
        "body_pos": _exp(body_pos_err, cfg.body_pos.std),
        "body_ori": _exp(body_ori_err, cfg.body_ori.std),
        "body_lin_vel": _exp(lin_vel_err, cfg.body_lin_vel.std),
        "body_ang_vel": _exp(ang_vel_err, cfg.body_ang_vel.std),
    }


def action_rate(f: TrackingFrame) -> np.ndarray:
    return np.sum((f.actions - f.prev_actions) ** 2, axis=-1)


def joint_limit_violation(
    joint_pos: np.ndarray, soft_lower: np.ndarray, soft_upper: np.ndarray
) -> np.ndarray:
    below = np.clip(soft_lower - joint_pos, 0.0, None)
    above = np.clip(joint_pos - soft_upper, 0.0, None)
    return np.sum(below + above, axis=-1)


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
