"""Domain randomisation of the tracking task: friction, pushes, default-pose offsets, reset noise."""

from __future__ import annotations

import numpy as np

from envs.rotations import quat_from_euler_xyz, quat_mul
from envs.tasks.g1_tracking.config import RandomizationConfig, ResetNoise


def sample_friction(
    rng: np.random.Generator, n: int, num_geoms: int, bounds: tuple[float, float]
) -> np.ndarray:
    """Sliding friction per env, shared by the env's foot geoms (one surface per episode)."""
    return np.repeat(rng.uniform(*bounds, size=(n, 1)), num_geoms, axis=1)


def default_pose_offsets(rng: np.random.Generator, n: int, num_joints: int, scale: float) -> np.ndarray:
    """Per-env calibration error of the default pose, fixed for the env's lifetime."""
    return rng.uniform(-scale, scale, size=(n, num_joints))


def next_push_times(rng: np.random.Generator, now: np.ndarray, cfg: RandomizationConfig) -> np.ndarray:
    return now + rng.uniform(*cfg.push_interval_s, size=now.shape)


def push_velocities(rng: np.random.Generator, n: int, cfg: RandomizationConfig) -> np.ndarray:
    """Root velocity kicks [n, 6]: linear (world) then angular (body), like a shove."""
    lin = rng.uniform(-1, 1, size=(n, 3)) * np.asarray(cfg.push_lin_vel)
    ang = rng.uniform(-1, 1, size=(n, 3)) * np.asarray(cfg.push_ang_vel)
    return np.concatenate((lin, ang), axis=1)


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


def perturb_reset_state(
    rng: np.random.Generator, qpos: np.ndarray, qvel: np.ndarray, scales: np.ndarray, joint_qpos: np.ndarray
) -> None:
    """Add reset noise in place to full qpos/qvel rows of a floating-base robot (one draw per call)."""
    noise = rng.uniform(-1, 1, size=(qpos.shape[0], len(scales))) * scales
    qpos[:, :3] += noise[:, 0:3]
    qpos[:, 3:7] = quat_mul(quat_from_euler_xyz(noise[:, 3], noise[:, 4], noise[:, 5]), qpos[:, 3:7])
    qvel[:, :6] += noise[:, 6:12]
    qpos[:, joint_qpos] += noise[:, 12:]
