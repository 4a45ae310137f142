"""One snapshot per control step of everything the tracking terms read: robot and reference.

Terms (observations, rewards, terminations) are small pure functions of a ``TrackingFrame``,
so each quantity is gathered from the batch and transformed once per step, not once per term.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from envs.rotations import quat_conj, quat_mul, yaw_angle


@dataclass
class TrackingFrame:
    """Arrays are copies, never views of live state, so a frame can be patched row by row."""

    # robot, [N, ...]; bodies are the tracked bodies in TRACKED_BODIES order
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    default_joint_pos: np.ndarray
    root_quat: np.ndarray
    root_lin_vel_w: np.ndarray
    root_ang_vel_b: np.ndarray
    body_pos: np.ndarray
    body_quat: np.ndarray
    body_rot: np.ndarray  # [N, B, 3, 3] rotation matrices of body_quat
    body_lin_vel: np.ndarray
    body_ang_vel: np.ndarray
    # reference at each env's current frame
    ref_joint_pos: np.ndarray
    ref_joint_vel: np.ndarray
    ref_body_pos: np.ndarray
    ref_body_quat: np.ndarray
    ref_body_lin_vel: np.ndarray
    ref_body_ang_vel: np.ndarray
    ref_anchor_rot: np.ndarray  # [N, 3, 3]
    actions: np.ndarray
    prev_actions: np.ndarray
    anchor: int
    root: int  # index of the floating base (pelvis) among the tracked bodies

    def scatter(self, ids: np.ndarray, other: TrackingFrame) -> None:
        """Overwrite the rows ``ids`` with ``other`` (a frame gathered for those envs only)."""
        for field in fields(self):
            if field.name not in ("anchor", "root"):
                getattr(self, field.name)[ids] = getattr(other, field.name)

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
        yaw = yaw_angle(quat_mul(self.anchor_quat, quat_conj(self.ref_anchor_quat)))[:, None]
        c, s = np.cos(yaw), np.sin(yaw)
        offsets = self.ref_body_pos - self.ref_anchor_pos[:, None]
        ox, oy = offsets[..., 0], offsets[..., 1]
        pos = delta_pos[:, None] + np.stack((c * ox - s * oy, s * ox + c * oy, offsets[..., 2]), axis=-1)
        # Left-multiplying by a rotation about z, (cos(yaw/2), 0, 0, sin(yaw/2)), in closed form.
        ch, sh = np.cos(yaw / 2), np.sin(yaw / 2)
        w, x, y, z = (self.ref_body_quat[..., i] for i in range(4))
        quat = np.stack((ch * w - sh * z, ch * x - sh * y, ch * y + sh * x, ch * z + sh * w), axis=-1)
        return pos, quat
