"""striata.envs.rotations against independent implementations: SciPy's Rotation and MuJoCo's own quaternion
functions (issue 19: the module was tested only against itself). Quaternions here are (w, x, y, z);
SciPy's are (x, y, z, w)."""

from __future__ import annotations

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from striata.envs import rotations as r

RNG = np.random.default_rng(7)
N = 64


def _wxyz(rotation: Rotation) -> np.ndarray:
    return np.roll(rotation.as_quat(), 1, axis=-1)


def _scipy(q: np.ndarray) -> Rotation:
    return Rotation.from_quat(np.roll(q, -1, axis=-1))


def _same_rotation(a: np.ndarray, b: np.ndarray) -> None:
    # q and -q are one rotation.
    sign = np.sign(np.sum(a * b, axis=-1, keepdims=True))
    np.testing.assert_allclose(a, sign * b, atol=1e-10)


def test_product_conjugate_and_rotation_of_vectors_match_scipy() -> None:
    a, b = Rotation.random(N, random_state=1), Rotation.random(N, random_state=2)
    v = RNG.normal(size=(N, 3))
    qa, qb = _wxyz(a), _wxyz(b)
    _same_rotation(r.quat_mul(qa, qb), _wxyz(a * b))
    _same_rotation(r.quat_conj(qa), _wxyz(a.inv()))
    np.testing.assert_allclose(r.quat_apply(qa, v), a.apply(v), atol=1e-10)
    np.testing.assert_allclose(r.quat_apply_inverse(qa, v), a.inv().apply(v), atol=1e-10)
    np.testing.assert_allclose(r.quat_to_matrix(qa), a.as_matrix(), atol=1e-10)
    np.testing.assert_allclose(r.cross(v, v[::-1]), np.cross(v, v[::-1]), atol=1e-12)


def test_angles_match_scipy() -> None:
    a, b = Rotation.random(N, random_state=3), Rotation.random(N, random_state=4)
    np.testing.assert_allclose(
        r.quat_error_magnitude(_wxyz(a), _wxyz(b)), (a.inv() * b).magnitude(), atol=1e-7
    )
    roll, pitch, yaw = RNG.uniform(-np.pi, np.pi, N), RNG.uniform(-1.5, 1.5, N), RNG.uniform(-np.pi, np.pi, N)
    expected = Rotation.from_euler("xyz", np.stack([roll, pitch, yaw], axis=-1))  # extrinsic x, y, z
    _same_rotation(r.quat_from_euler_xyz(roll, pitch, yaw), _wxyz(expected))
    heading = Rotation.from_euler("z", yaw[:, None]) * Rotation.from_euler("y", pitch[:, None] / 3)
    np.testing.assert_allclose(r.yaw_angle(_wxyz(heading)), yaw, atol=1e-10)


def test_slerp_matches_scipy() -> None:
    a, b = Rotation.random(N, random_state=5), Rotation.random(N, random_state=6)
    t = RNG.uniform(0.0, 1.0, N)
    ours = r.quat_slerp(_wxyz(a), _wxyz(b), t)
    for i in range(N):
        pair = Rotation.concatenate([a[i], b[i]])
        _same_rotation(ours[i], _wxyz(Slerp([0.0, 1.0], pair)([t[i]]))[0])


def test_angular_velocity_matches_mujoco_quat_integration() -> None:
    """A constant world-frame rate integrated with MuJoCo's mju_quatIntegrate, differentiated back."""
    dt, omega = 0.01, np.array([0.7, -1.3, 0.4])
    q = np.zeros((50, 4))
    q[0] = _wxyz(Rotation.random(random_state=8))
    for k in range(1, len(q)):
        q[k] = q[k - 1]
        local = r.quat_apply_inverse(q[k - 1], omega)  # mju_quatIntegrate takes a body-frame rate
        mujoco.mju_quatIntegrate(q[k], local, dt)
    np.testing.assert_allclose(r.angular_velocity_from_quats(q, dt)[1:-1], np.tile(omega, (48, 1)), atol=1e-6)
