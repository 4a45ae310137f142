"""Termination terms of the tracking task: the robot has left the reference (BeyondMimic thresholds)."""

from __future__ import annotations

from striata.envs.arrays import Array, namespace
from striata.envs.tasks.g1_tracking.config import TerminationConfig
from striata.envs.tasks.g1_tracking.frame import TrackingFrame


def anchor_height(f: TrackingFrame, limit: float) -> Array:
    return namespace(f.anchor_pos).abs(f.ref_anchor_pos[:, 2] - f.anchor_pos[:, 2]) > limit


def anchor_orientation(f: TrackingFrame, limit: float) -> Array:
    """Tilt mismatch: difference of the gravity direction's z component in each anchor frame."""
    return namespace(f.anchor_quat).abs(_gravity_z(f.ref_anchor_quat) - _gravity_z(f.anchor_quat)) > limit


def _gravity_z(q: Array) -> Array:
    """z component of world gravity (0, 0, -1) seen in the frame of q: -R(q)[2, 2]."""
    return 2.0 * (q[:, 1] ** 2 + q[:, 2] ** 2) - 1.0


def end_effector_height(f: TrackingFrame, rel_pos: Array, ee: Array, limit: float) -> Array:
    xp = namespace(rel_pos)
    return xp.any(xp.abs(rel_pos[:, ee, 2] - f.body_pos[:, ee, 2]) > limit, axis=-1)


def terminations(f: TrackingFrame, cfg: TerminationConfig, rel_pos: Array, ee: Array) -> dict[str, Array]:
    return {
        "anchor_height": anchor_height(f, cfg.anchor_height_error),
        "anchor_ori": anchor_orientation(f, cfg.anchor_ori_error),
        "end_effector_height": end_effector_height(f, rel_pos, ee, cfg.end_effector_height_error),
    }
