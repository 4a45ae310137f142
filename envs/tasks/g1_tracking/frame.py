"""One snapshot per control step of everything the tracking terms read: robot and reference.

Terms (observations, rewards, terminations) are small pure functions of a ``TrackingFrame``,
so each quantity is gathered from the batch and transformed once per step, not once per term.
A frame holds numpy arrays (CPU backend) or torch tensors on the simulation's device (MuJoCo Warp
backend, ``device_env``); the terms run on either (``striata.envs.arrays``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from striata.envs.arrays import Array, namespace
from striata.envs.rotations import quat_conj, quat_mul, yaw_angle


@dataclass
class TrackingFrame:
    """Arrays are copies, never views of live state, so a frame can be patched row by row."""

    # robot, [N, ...]; bodies are the tracked bodies in TRACKED_BODIES order
    joint_pos: Array
    joint_vel: Array
    default_joint_pos: Array
    root_quat: Array
    root_lin_vel_w: Array
    root_ang_vel_b: Array
    body_pos: Array
    body_quat: Array
    body_rot: Array  # [N, B, 3, 3] rotation matrices of body_quat
    body_lin_vel: Array
    body_ang_vel: Array
    # reference at each env's current frame
    ref_joint_pos: Array
    ref_joint_vel: Array
    ref_body_pos: Array
    ref_body_quat: Array
    ref_body_lin_vel: Array
    ref_body_ang_vel: Array
    ref_anchor_rot: Array  # [N, 3, 3]
    actions: Array
    prev_actions: Array
    anchor: int
    root: int  # index of the floating base (pelvis) among the tracked bodies

    @classmethod
    def of(cls, reference: dict[str, Array], **robot: Any) -> TrackingFrame:
        """A frame of the robot's arrays and the reference's, the latter keyed as in the reference table
        (``joint_pos`` ... ``anchor_rot``, stored as ``ref_joint_pos`` ... ``ref_anchor_rot``)."""
        return cls(**robot, **{f"ref_{name}": value for name, value in reference.items()})

    def scatter(self, ids: Array, other: TrackingFrame) -> None:
        """Overwrite the rows ``ids`` with ``other`` (a frame gathered for those envs only)."""
        for field in fields(self):
            if field.name not in ("anchor", "root"):
                getattr(self, field.name)[ids] = getattr(other, field.name)

    @property
    def anchor_pos(self) -> Array:
        return self.body_pos[:, self.anchor]

    @property
    def anchor_quat(self) -> Array:
        return self.body_quat[:, self.anchor]

    @property
    def ref_anchor_pos(self) -> Array:
        return self.ref_body_pos[:, self.anchor]

    @property
    def ref_anchor_quat(self) -> Array:
        return self.ref_body_quat[:, self.anchor]

    def tracking_errors(self, rel_pos: Array, ref_anchor_quat: Array | None = None) -> dict[str, Array]:
        """Per row: ``body_pos_error_m`` (mean over the tracked bodies, against ``rel_pos``, the reference
        moved onto the robot's anchor), ``joint_error_rad`` (mean absolute) and ``anchor_ori_error_rad``
        (angle between the robot's anchor and ``ref_anchor_quat``, by default the reference's)."""
        xp = namespace(rel_pos)
        ref = self.ref_anchor_quat if ref_anchor_quat is None else ref_anchor_quat
        dot = xp.abs(xp.sum(self.anchor_quat * ref, axis=-1))
        return {
            "body_pos_error_m": xp.mean(xp.linalg.vector_norm(self.body_pos - rel_pos, axis=-1), axis=1),
            "joint_error_rad": xp.mean(xp.abs(self.joint_pos - self.ref_joint_pos), axis=1),
            "anchor_ori_error_rad": 2.0 * xp.acos(xp.clip(dot, 0.0, 1.0)),
        }

    def relative_reference(self) -> tuple[Array, Array]:
        """Reference body poses moved so the reference anchor sits on the robot's (xy and heading).

        Body pose errors are then about the shape of the motion, not where the robot drifted to;
        the anchor terms track the global position separately.
        """
        xp = namespace(self.anchor_pos)
        delta_pos = xp.concat((self.anchor_pos[:, :2], self.ref_anchor_pos[:, 2:]), axis=1)
        yaw = yaw_angle(quat_mul(self.anchor_quat, quat_conj(self.ref_anchor_quat)))[:, None]
        c, s = xp.cos(yaw), xp.sin(yaw)
        offsets = self.ref_body_pos - self.ref_anchor_pos[:, None]
        ox, oy = offsets[..., 0], offsets[..., 1]
        pos = delta_pos[:, None] + xp.stack((c * ox - s * oy, s * ox + c * oy, offsets[..., 2]), axis=-1)
        # Left-multiplying by a rotation about z, (cos(yaw/2), 0, 0, sin(yaw/2)), in closed form.
        ch, sh = xp.cos(yaw / 2), xp.sin(yaw / 2)
        w, x, y, z = (self.ref_body_quat[..., i] for i in range(4))
        quat = xp.stack((ch * w - sh * z, ch * x - sh * y, ch * y + sh * x, ch * z + sh * w), axis=-1)
        return pos, quat
