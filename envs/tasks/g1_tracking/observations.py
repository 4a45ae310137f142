"""Observation terms of the tracking task: the 160-dim policy vector and the privileged critic vector.

Policy (in order): reference joint pos (29) and vel (29), reference anchor position (3) and
orientation (6D, 6) in the robot anchor frame, base linear (3) and angular (3) velocity in the
base frame, joint pos relative to the default pose (29), joint vel (29), last action (29) = 160.
Without state estimation (BeyondMimic's deployable variant) the two terms a robot cannot measure
directly, the anchor position and the base linear velocity, are left out: 154.
Critic: the full set without noise, plus every tracked body's pose in the robot anchor frame.
"""

from __future__ import annotations

import numpy as np

from envs.tasks.g1_tracking.config import ObservationNoise
from envs.tasks.g1_tracking.frame import TrackingFrame

TermLayout = tuple[tuple[str, int], ...]

POLICY_TERMS: TermLayout = (
    ("command_joint_pos", 29),
    ("command_joint_vel", 29),
    ("motion_anchor_pos_b", 3),
    ("motion_anchor_ori_b", 6),
    ("base_lin_vel", 3),
    ("base_ang_vel", 3),
    ("joint_pos", 29),
    ("joint_vel", 29),
    ("actions", 29),
)
POLICY_DIM = sum(size for _, size in POLICY_TERMS)
STATE_ESTIMATION_TERMS = ("motion_anchor_pos_b", "base_lin_vel")


def policy_term_layout(state_estimation: bool) -> TermLayout:
    """The policy's observation terms, in order; without state estimation, only what a robot measures."""
    if state_estimation:
        return POLICY_TERMS
    return tuple(term for term in POLICY_TERMS if term[0] not in STATE_ESTIMATION_TERMS)


def motion_anchor_b(f: TrackingFrame) -> tuple[np.ndarray, np.ndarray]:
    """Reference anchor pose in the robot anchor frame: position, and orientation as 6D."""
    anchor_rot = f.body_rot[:, f.anchor]
    # A row vector times R applies R^T: world offsets expressed in the anchor frame.
    pos = ((f.ref_anchor_pos - f.anchor_pos)[:, None] @ anchor_rot)[:, 0]
    rot = np.swapaxes(anchor_rot, 1, 2) @ f.ref_anchor_rot
    return pos, rot[..., :2].reshape(-1, 6)


def base_lin_vel(f: TrackingFrame) -> np.ndarray:
    return (f.root_lin_vel_w[:, None] @ f.body_rot[:, f.root])[:, 0]


def policy_terms(f: TrackingFrame) -> dict[str, np.ndarray]:
    anchor_pos, anchor_ori = motion_anchor_b(f)
    return {
        "command_joint_pos": f.ref_joint_pos,
        "command_joint_vel": f.ref_joint_vel,
        "motion_anchor_pos_b": anchor_pos,
        "motion_anchor_ori_b": anchor_ori,
        "base_lin_vel": base_lin_vel(f),
        "base_ang_vel": f.root_ang_vel_b,
        "joint_pos": f.joint_pos - f.default_joint_pos,
        "joint_vel": f.joint_vel,
        "actions": f.actions,
    }


def noise_scales(noise: ObservationNoise, layout: TermLayout) -> np.ndarray | None:
    """Half-width of the uniform noise on each policy observation entry; None when noise is off."""
    if not noise.enabled:
        return None
    per_term = {
        "motion_anchor_pos_b": noise.anchor_pos,
        "motion_anchor_ori_b": noise.anchor_ori,
        "base_lin_vel": noise.base_lin_vel,
        "base_ang_vel": noise.base_ang_vel,
        "joint_pos": noise.joint_pos,
        "joint_vel": noise.joint_vel,
    }
    return np.concatenate([np.full(size, per_term.get(name, 0.0)) for name, size in layout])


def policy_obs(
    terms: dict[str, np.ndarray], layout: TermLayout, scales: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    obs = np.concatenate([terms[name] for name, _ in layout], axis=1)
    if scales is not None:
        obs += rng.uniform(-1.0, 1.0, size=obs.shape) * scales
    return obs.astype(np.float32)


def critic_obs(f: TrackingFrame, terms: dict[str, np.ndarray]) -> np.ndarray:
    n, b = f.body_pos.shape[:2]
    anchor_rot = f.body_rot[:, f.anchor]
    body_pos_b = (f.body_pos - f.anchor_pos[:, None]) @ anchor_rot
    body_rot_b = np.swapaxes(anchor_rot, 1, 2)[:, None] @ f.body_rot
    parts = [terms[name] for name, _ in POLICY_TERMS[:4]]
    parts += [body_pos_b.reshape(n, b * 3), body_rot_b[..., :2].reshape(n, b * 6)]
    parts += [terms[name] for name, _ in POLICY_TERMS[4:]]
    return np.concatenate(parts, axis=1, dtype=np.float32)
