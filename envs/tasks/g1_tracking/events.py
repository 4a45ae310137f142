"""Domain randomisation of the tracking task: friction, pushes, default-pose offsets, reset noise.

Draws come from a numpy or a torch generator (``striata.envs.arrays.uniform``): the CPU backend and the
MuJoCo Warp backend randomise with the same functions.
"""

from __future__ import annotations

import numpy as np

from striata.envs.arrays import Array, Rng, namespace, uniform
from striata.envs.rotations import quat_from_euler_xyz, quat_mul
from striata.envs.tasks.g1_tracking.config import RandomizationConfig, ResetNoise


def sample_friction(rng: Rng, n: int, num_geoms: int, bounds: tuple[float, float]) -> Array:
    """Sliding friction per env [n, num_geoms], shared by the env's foot geoms (one surface per episode)."""
    per_env = uniform(rng, bounds[0], bounds[1], (n, 1))
    return namespace(per_env).broadcast_to(per_env, (n, num_geoms))


def default_pose_offsets(rng: Rng, n: int, num_joints: int, scale: float) -> Array:
    """Per-env calibration error of the default pose, fixed for the env's lifetime."""
    return uniform(rng, -scale, scale, (n, num_joints))


def next_push_times(rng: Rng, now: Array, cfg: RandomizationConfig) -> Array:
    return now + uniform(rng, cfg.push_interval_s[0], cfg.push_interval_s[1], tuple(now.shape))


def push_velocities(rng: Rng, n: int, cfg: RandomizationConfig) -> Array:
    """Root velocity kicks [n, 6]: linear (world) then angular (body), like a shove."""
    half_widths = np.concatenate((cfg.push_lin_vel, cfg.push_ang_vel))
    return uniform(rng, -half_widths, half_widths, (n, 6))


def reset_noise_scales(noise: ResetNoise, num_joints: int) -> np.ndarray:
    """Half-widths of the uniform reset noise: root xyz, roll/pitch/yaw, lin vel, ang vel, joints."""
    return np.concatenate(
        (
            [noise.root_xy, noise.root_xy, noise.root_z],
            [noise.root_roll_pitch, noise.root_roll_pitch, noise.root_yaw],
            [noise.root_lin_vel_xy, noise.root_lin_vel_xy, noise.root_lin_vel_z],
            [noise.root_ang_vel_roll_pitch, noise.root_ang_vel_roll_pitch, noise.root_ang_vel_yaw],
            np.full(num_joints, noise.joint_pos),
        )
    )


def perturb_reset_state(rng: Rng, qpos: Array, qvel: Array, scales: Array, joint_qpos: Array) -> None:
    """Add reset noise in place to full qpos/qvel rows of a floating-base robot (one draw per call).

    ``scales`` and ``joint_qpos`` are of the rows' array type (numpy, or tensors on their device)."""
    noise = uniform(rng, -1.0, 1.0, (qpos.shape[0], scales.shape[0])) * scales
    qpos[:, :3] += noise[:, 0:3]
    qpos[:, 3:7] = quat_mul(quat_from_euler_xyz(noise[:, 3], noise[:, 4], noise[:, 5]), qpos[:, 3:7])
    qvel[:, :6] += noise[:, 6:12]
    qpos[:, joint_qpos] += noise[:, 12:]
