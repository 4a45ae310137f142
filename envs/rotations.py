"""Batched quaternion and frame math on numpy arrays or torch tensors.

Quaternions are (w, x, y, z), MuJoCo's convention; every function broadcasts over
leading axes so that one call serves all environments and all tracked bodies. The functions a
task's terms use each step take either library's arrays (``striata.envs.arrays.namespace``), so a GPU
backend runs them on device tensors; motion preprocessing (slerp, finite differences) is numpy.
"""

from __future__ import annotations

import numpy as np

from striata.envs.arrays import Array, namespace


def cross(a: Array, b: Array) -> Array:
    """Cross product over the last axis; np.cross is several times slower on small batches."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return namespace(a, b).stack((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), axis=-1)


def quat_mul(a: Array, b: Array) -> Array:
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return namespace(a, b).stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        axis=-1,
    )


def quat_conj(q: Array) -> Array:
    return namespace(q).concat((q[..., :1], -q[..., 1:]), axis=-1)


def quat_apply(q: Array, v: Array) -> Array:
    """Rotate vectors v by unit quaternions q."""
    w = q[..., :1]
    xyz = q[..., 1:]
    t = 2.0 * cross(xyz, v)
    return v + w * t + cross(xyz, t)


def quat_apply_inverse(q: Array, v: Array) -> Array:
    return quat_apply(quat_conj(q), v)


def quat_error_magnitude(a: Array, b: Array) -> Array:
    """Angle in radians of the rotation between a and b, in [0, pi]."""
    xp = namespace(a, b)
    dot = xp.abs(xp.sum(a * b, axis=-1))
    return 2.0 * xp.acos(xp.clip(dot, min=0.0, max=1.0))


def yaw_angle(q: Array) -> Array:
    """Heading of q: the angle of its rotation about world z."""
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return namespace(q).atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def yaw_quat(yaw: float) -> np.ndarray:
    """The rotation by ``yaw`` (rad) about world z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def quat_from_euler_xyz(roll: Array, pitch: Array, yaw: Array) -> Array:
    xp = namespace(roll, pitch, yaw)
    cr, sr = xp.cos(roll / 2), xp.sin(roll / 2)
    cp, sp = xp.cos(pitch / 2), xp.sin(pitch / 2)
    cy, sy = xp.cos(yaw / 2), xp.sin(yaw / 2)
    return xp.stack(
        (
            cr * cp * cy + sr * sp * sy,
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
        ),
        axis=-1,
    )


def quat_to_matrix(q: Array) -> Array:
    """Rotation matrices [..., 3, 3] of unit quaternions [..., 4]."""
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return namespace(q).reshape(namespace(q).stack(rows, axis=-1), (*q.shape[:-1], 3, 3))


def quat_slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between unit quaternions, t in [0, 1] per row."""
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    t = t[..., None]
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-6
    safe = np.where(small, 1.0, sin_theta)
    wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(small, t, np.sin(t * theta) / safe)
    out = wa * a + wb * b
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def angular_velocity_from_quats(q: np.ndarray, dt: float) -> np.ndarray:
    """World-frame angular velocity from a quaternion sequence along axis 0 (central differences)."""
    q_next = np.concatenate((q[1:], q[-1:]), axis=0)
    q_prev = np.concatenate((q[:1], q[:-1]), axis=0)
    dq = quat_mul(q_next, quat_conj(q_prev))
    dq = np.where(dq[..., :1] < 0, -dq, dq)
    angle = 2.0 * np.arccos(np.clip(dq[..., 0], -1.0, 1.0))
    sin_half = np.sqrt(np.maximum(1.0 - dq[..., 0] ** 2, 1e-12))
    axis = dq[..., 1:] / sin_half[..., None]
    steps = np.full(q.shape[0], 2.0)
    steps[0] = steps[-1] = 1.0
    steps = steps.reshape((-1,) + (1,) * (q.ndim - 1))
    return axis * (angle[..., None] / (steps * dt))
