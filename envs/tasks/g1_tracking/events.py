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


def perturb_root(
    rng: np.random.Generator, pos: np.ndarray, quat: np.ndarray, noise: ResetNoise
) -> tuple[np.ndarray, np.ndarray]:
    n = pos.shape[0]
    offset = rng.uniform(-1, 1, size=(n, 3)) * np.array([noise.root_xy, noise.root_xy, noise.root_z])
    rpy = rng.uniform(-1, 1, size=(n, 3)) * np.array(
        [noise.root_roll_pitch, noise.root_roll_pitch, noise.root_yaw]
    )
    return pos + offset, quat_mul(quat_from_euler_xyz(*rpy.T), quat)


def perturb_root_velocity(rng: np.random.Generator, lin: np.ndarray, ang: np.ndarray, noise: ResetNoise):
    n = lin.shape[0]
    lin_scale = np.array([noise.root_lin_vel_xy, noise.root_lin_vel_xy, noise.root_lin_vel_z])
    ang_scale = np.array(
        [noise.root_ang_vel_roll_pitch, noise.root_ang_vel_roll_pitch, noise.root_ang_vel_yaw]
    )
    return lin + rng.uniform(-1, 1, size=(n, 3)) * lin_scale, ang + rng.uniform(
        -1, 1, size=(n, 3)
    ) * ang_scale
