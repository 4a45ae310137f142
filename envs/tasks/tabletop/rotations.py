"""Orientation errors for the arms' damped-least-squares IK (the Panda's controller, the SO-101's scripts)."""

from __future__ import annotations

import numpy as np


def orientation_error(rot: np.ndarray, rot_target: np.ndarray) -> np.ndarray:
    """Small-angle world-frame rotation vector from rotations ``rot`` [..., 3, 3] to ``rot_target``."""
    return 0.5 * np.cross(rot, rot_target, axisa=-2, axisb=-2, axisc=-1).sum(axis=-2)
