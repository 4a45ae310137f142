"""One snapshot per control step of everything the tracking terms read: robot and reference.

Terms (observations, rewards, terminations) are small pure functions of a ``TrackingFrame``,
so each quantity is gathered from the batch and transformed once per step, not once per term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.rotations import quat_apply, quat_conj, quat_mul, yaw_quat


@dataclass
class TrackingFrame:
    # robot, [N, ...]; bodies are the tracked bodies in TRACKED_BODIES order
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    default_joint_pos: np.ndarray
    root_quat: np.ndarray
    root_lin_vel_w: np.ndarray
    root_ang_vel_b: np.ndarray
    body_pos: np.ndarray
    body_quat: np.ndarray
    body_lin_vel: np.ndarray
    body_ang_vel: np.ndarray
    # reference at each env's current frame
    ref_joint_pos: np.ndarray
    ref_joint_vel: np.ndarray
    ref_body_pos: np.ndarray
    ref_body_quat: np.ndarray
    ref_body_lin_vel: np.ndarray
    ref_body_ang_vel: np.ndarray
    actions: np.ndarray
    prev_actions: np.ndarray
    anchor: int

    @property
    def anchor_pos(self) -> np.ndarray:
        return self.body_pos[:, self.anchor]

    @property
    def anchor_quat(self) -> np.ndarray:
        return self.body_quat[:, self.anchor]

    @property
    def ref_anchor_pos(self) -> np.ndarray:
        return self.ref_body_pos[:, self.anchor]

    @property
    def ref_anchor_quat(self) -> np.ndarray:
        return self.ref_body_quat[:, self.anchor]

    def relative_reference(self) -> tuple[np.ndarray, np.ndarray]:
        """Reference body poses moved so the reference anchor sits on the robot's (xy and heading).

        Body pose errors are then about the shape of the motion, not where the robot drifted to;
        the anchor terms track the global position separately.
        """
        delta_pos = self.anchor_pos.copy()
        delta_pos[:, 2] = self.ref_anchor_pos[:, 2]
        delta_quat = yaw_quat(quat_mul(self.anchor_quat, quat_conj(self.ref_anchor_quat)))[:, None]
        offsets = self.ref_body_pos - self.ref_anchor_pos[:, None]
        pos = delta_pos[:, None] + quat_apply(np.broadcast_to(delta_quat, (*offsets.shape[:-1], 4)), offsets)
        quat = quat_mul(np.broadcast_to(delta_quat, self.ref_body_quat.shape), self.ref_body_quat)
        return pos, quat
