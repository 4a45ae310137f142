"""Observation terms of the tracking task: the 160-dim policy vector and the privileged critic vector.

Policy (in order): reference joint pos (29) and vel (29), reference anchor position (3) and
orientation (6D, 6) in the robot anchor frame, base linear (3) and angular (3) velocity in the
base frame, joint pos relative to the default pose (29), joint vel (29), last action (29) = 160.
Without state estimation (BeyondMimic's deployable variant) the two terms a robot cannot measure
directly, the anchor position and the base linear velocity, are left out: 154.
Critic: the full set without noise, plus every tracked body's pose in the robot anchor frame.

``measured_policy_terms`` computes the terms a robot can measure from plain arrays; the env feeds it
from the simulation and the deploy controller (deploy/) from the robot's state, so both build the
policy's observation with the same code. ``AnchorKinematics`` gives the controller the anchor
orientation from the IMU and joint positions. The terms take numpy arrays or device tensors
(``striata.envs.arrays``): the MuJoCo Warp backend builds the same observations on the GPU.
"""

from __future__ import annotations

import mujoco
import numpy as np

from striata.envs.arrays import Array, Rng, namespace, uniform
from striata.envs.tasks.g1_tracking.config import ObservationNoise
from striata.envs.tasks.g1_tracking.frame import TrackingFrame

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


def anchor_ori_6d(anchor_rot: Array, ref_anchor_rot: Array) -> Array:
    """Reference anchor orientation in the robot anchor frame, as the first two matrix columns [N, 6]."""
    xp = namespace(anchor_rot)
    rot = xp.matrix_transpose(anchor_rot) @ ref_anchor_rot
    return xp.reshape(rot[..., :2], (-1, 6))


def anchor_pos_b(anchor_pos: Array, anchor_rot: Array, ref_anchor_pos: Array) -> Array:
    """Reference anchor position in the robot anchor frame [N, 3]."""
    # A row vector times R applies R^T: world offsets expressed in the anchor frame.
    return ((ref_anchor_pos - anchor_pos)[:, None] @ anchor_rot)[:, 0]


def base_lin_vel_b(root_lin_vel_w: Array, root_rot: Array) -> Array:
    """Base linear velocity in the base frame [N, 3]."""
    return (root_lin_vel_w[:, None] @ root_rot)[:, 0]


def measured_policy_terms(
    *,
    ref_joint_pos: Array,
    ref_joint_vel: Array,
    ref_anchor_rot: Array,
    anchor_rot: Array,
    base_ang_vel: Array,
    joint_pos: Array,
    default_joint_pos: Array,
    joint_vel: Array,
    actions: Array,
) -> dict[str, Array]:
    """The policy terms a robot measures (IMU, encoders), [N, ...] each: the training env and the deploy
    controller both build observations with this function."""
    return {
        "command_joint_pos": ref_joint_pos,
        "command_joint_vel": ref_joint_vel,
        "motion_anchor_ori_b": anchor_ori_6d(anchor_rot, ref_anchor_rot),
        "base_ang_vel": base_ang_vel,
        "joint_pos": joint_pos - default_joint_pos,
        "joint_vel": joint_vel,
        "actions": actions,
    }


def policy_terms(f: TrackingFrame) -> dict[str, Array]:
    anchor_rot = f.body_rot[:, f.anchor]
    terms = measured_policy_terms(
        ref_joint_pos=f.ref_joint_pos,
        ref_joint_vel=f.ref_joint_vel,
        ref_anchor_rot=f.ref_anchor_rot,
        anchor_rot=anchor_rot,
        base_ang_vel=f.root_ang_vel_b,
        joint_pos=f.joint_pos,
        default_joint_pos=f.default_joint_pos,
        joint_vel=f.joint_vel,
        actions=f.actions,
    )
    terms["motion_anchor_pos_b"] = anchor_pos_b(f.anchor_pos, anchor_rot, f.ref_anchor_pos)
    terms["base_lin_vel"] = base_lin_vel_b(f.root_lin_vel_w, f.body_rot[:, f.root])
    return terms


class AnchorKinematics:
    """World orientation of the anchor body from the base orientation (the pelvis IMU) and the joint
    positions, by forward kinematics of the training model: what a robot without state estimation
    knows of its anchor (BeyondMimic's deploy does the same). Position is left at the origin."""

    def __init__(
        self, model: mujoco.MjModel, joint_names: tuple[str, ...] | list[str], anchor_body: str
    ) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.qpos_adr = model.jnt_qposadr[[model.joint(n).id for n in joint_names]]
        self.anchor = model.body(anchor_body).id

    def anchor_rotation(self, base_quat_wxyz: np.ndarray, joint_pos: np.ndarray) -> np.ndarray:
        """[3, 3] rotation of the anchor body in the world (yaw as the IMU reports it)."""
        d = self.data
        d.qpos[:3] = 0.0
        d.qpos[3:7] = base_quat_wxyz / np.linalg.norm(base_quat_wxyz)
        d.qpos[self.qpos_adr] = joint_pos
        mujoco.mj_kinematics(self.model, d)
        return d.xmat[self.anchor].reshape(3, 3).copy()


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


def policy_obs(terms: dict[str, Array], layout: TermLayout, scales: Array | None, rng: Rng) -> Array:
    """The policy vector [N, D] as float32; ``scales`` (same array type) adds uniform noise."""
    xp = namespace(terms["joint_pos"])
    obs = xp.concat([terms[name] for name, _ in layout], axis=1)
    if scales is not None:
        obs = obs + uniform(rng, -1.0, 1.0, tuple(obs.shape)) * scales
    return xp.astype(obs, xp.float32)


def critic_obs(f: TrackingFrame, terms: dict[str, Array]) -> Array:
    xp = namespace(f.body_pos)
    n, b = f.body_pos.shape[:2]
    anchor_rot = f.body_rot[:, f.anchor]
    body_pos_b = (f.body_pos - f.anchor_pos[:, None]) @ anchor_rot
    body_rot_b = xp.matrix_transpose(anchor_rot)[:, None] @ f.body_rot
    parts = [terms[name] for name, _ in POLICY_TERMS[:4]]
    parts += [xp.reshape(body_pos_b, (n, b * 3)), xp.reshape(body_rot_b[..., :2], (n, b * 6))]
    parts += [terms[name] for name, _ in POLICY_TERMS[4:]]
    return xp.astype(xp.concat(parts, axis=1), xp.float32)
