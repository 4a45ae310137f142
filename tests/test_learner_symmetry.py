"""G1 left/right mirror maps: involutions, joint swaps and signs, checked against MuJoCo kinematics."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from striata.envs.registry import UnknownSymmetryError, task_entry
from striata.envs.robots.g1 import ANCHOR_BODY, G1, G1_JOINT_NAMES, TRACKED_BODIES, g1_spec
from striata.envs.rotations import quat_to_matrix
from striata.envs.symmetry import ROTATION_6D, VECTOR, mirror_partners
from striata.envs.tasks.g1_tracking.observations import POLICY_DIM
from striata.envs.tasks.g1_tracking.symmetry import g1_joint_mirror, tracking_symmetry
from striata.learner.symmetry import TensorSymmetry

J = {name: i for i, name in enumerate(G1_JOINT_NAMES)}


def test_mirrors_are_involutions_with_the_right_shapes() -> None:
    sym = tracking_symmetry()
    rng = np.random.default_rng(0)
    for mirror, dim in ((sym.actions, 29), (sym.policy_obs, POLICY_DIM), (sym.critic_obs, 286)):
        x = rng.normal(size=(4, dim))
        assert mirror(x).shape == x.shape
        np.testing.assert_array_equal(mirror(mirror(x)), x)
        assert not np.allclose(mirror(x), x)
    # The learner's copy on a device mirrors tensors as the task's maps mirror arrays.
    on_device = TensorSymmetry(sym, "cpu")
    t = torch.randn(3, 160, dtype=torch.float64)
    torch.testing.assert_close(on_device.policy_obs(on_device.policy_obs(t)), t)
    np.testing.assert_array_equal(on_device.policy_obs(t).numpy(), sym.policy_obs(t.numpy()))


def test_the_deployable_layout_has_its_own_mirror() -> None:
    entry = task_entry("g1_tracking")
    full, deployable = entry.symmetry("g1_tracking"), entry.symmetry("g1_tracking_no_state_estimation")
    assert deployable.policy_obs.dim == 154 and deployable.critic_obs.dim == 286
    x = np.random.default_rng(1).normal(size=(2, 160))
    kept = np.delete(np.arange(160), np.r_[58:61, 67:70])
    np.testing.assert_array_equal(deployable.policy_obs(x[:, kept]), full.policy_obs(x)[:, kept])


def test_the_tasks_own_their_mirror_maps() -> None:
    """The registry hands out a task's maps by name; both tracking tasks share them, a Panda task has none."""
    tracking = task_entry("g1_tracking")
    assert list(task_entry("g1_tracking_keypoints").symmetries()) == list(tracking.symmetries())
    with pytest.raises(UnknownSymmetryError, match="'g1_walk' of task 'g1_tracking'; known: g1_tracking, "):
        tracking.symmetry("g1_walk")
    with pytest.raises(UnknownSymmetryError, match="known: none"):
        task_entry("panda_pick").symmetry("g1_tracking")


def test_joint_mirror_swaps_sides_and_flips_roll_and_yaw() -> None:
    q = np.arange(1.0, 30.0)
    m = g1_joint_mirror()(q)
    assert m[J["left_hip_pitch_joint"]] == q[J["right_hip_pitch_joint"]]
    assert m[J["right_hip_pitch_joint"]] == q[J["left_hip_pitch_joint"]]
    assert m[J["left_knee_joint"]] == q[J["right_knee_joint"]]
    for side, other in (("left", "right"), ("right", "left")):
        for joint in (
            "hip_roll",
            "hip_yaw",
            "ankle_roll",
            "shoulder_roll",
            "shoulder_yaw",
            "wrist_roll",
            "wrist_yaw",
        ):
            assert m[J[f"{side}_{joint}_joint"]] == -q[J[f"{other}_{joint}_joint"]]
    assert m[J["waist_yaw_joint"]] == -q[J["waist_yaw_joint"]]
    assert m[J["waist_roll_joint"]] == -q[J["waist_roll_joint"]]
    assert m[J["waist_pitch_joint"]] == q[J["waist_pitch_joint"]]
    # The default pose is its own mirror, so offsets from it mirror like angles; partners share their
    # action scale, so mirrored actions are mirrored joint targets.
    np.testing.assert_allclose(g1_joint_mirror()(G1.default_pos), G1.default_pos)
    np.testing.assert_allclose(np.abs(g1_joint_mirror()(G1.action_scale)), G1.action_scale)


def test_policy_obs_mirror_of_vectors_and_rotations() -> None:
    sym = tracking_symmetry()
    obs = np.zeros(160)
    obs[58:61] = [1.0, 2.0, 3.0]  # motion_anchor_pos_b
    obs[67:70] = [4.0, 5.0, 6.0]  # base_lin_vel
    obs[70:73] = [7.0, 8.0, 9.0]  # base_ang_vel
    m = sym.policy_obs(obs)
    np.testing.assert_array_equal(m[58:61], [1.0, -2.0, 3.0])
    np.testing.assert_array_equal(m[67:70], [4.0, -5.0, 6.0])
    np.testing.assert_array_equal(m[70:73], [-7.0, 8.0, -9.0])


def test_6d_rotation_mirror_matches_the_mirrored_quaternion() -> None:
    """The 6D orientation as observed (first two columns of R, row-major) of a mirrored rotation."""
    q = np.random.default_rng(2).normal(size=(16, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    def six_d(quat: np.ndarray) -> np.ndarray:
        return quat_to_matrix(quat)[..., :2].reshape(-1, 6)

    np.testing.assert_allclose(ROTATION_6D(six_d(q)), six_d(q * [1, -1, 1, -1]), atol=1e-12)


def _anchor_frame_bodies(model, data, root_pos, root_quat, q):
    """Tracked body positions and 6D orientations in the anchor frame, as the critic observes them."""
    data.qpos[:3], data.qpos[3:7] = root_pos, root_quat
    data.qpos[[model.joint(n).qposadr[0] for n in G1_JOINT_NAMES]] = q
    mujoco.mj_kinematics(model, data)
    anchor = model.body(ANCHOR_BODY).id
    rot = data.xmat[anchor].reshape(3, 3)
    ids = [model.body(b).id for b in TRACKED_BODIES]
    pos = (data.xpos[ids] - data.xpos[anchor]) @ rot
    body_rot = np.einsum("ji,bjk->bik", rot, data.xmat[ids].reshape(-1, 3, 3))
    return pos, body_rot[..., :2].reshape(len(ids), 6)


def test_mirror_maps_agree_with_forward_kinematics_of_the_mirrored_pose() -> None:
    """Mirroring joint angles (and the root) must mirror every tracked body in the anchor frame."""
    model = g1_spec().compile()
    data = mujoco.MjData(model)
    ranges = np.array([model.joint(n).range for n in G1_JOINT_NAMES])
    rng = np.random.default_rng(1)
    partners = mirror_partners(TRACKED_BODIES)
    for _ in range(3):
        q = rng.uniform(ranges[:, 0], ranges[:, 1])
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat)
        mq = g1_joint_mirror()(q)
        assert ((mq >= ranges[:, 0] - 1e-9) & (mq <= ranges[:, 1] + 1e-9)).all()  # limits are mirrored too
        pos, rot = _anchor_frame_bodies(model, data, [0.1, 0.2, 0.8], quat, q)
        # The root mirrored through the x-z plane: y -> -y, quaternion (w, x, y, z) -> (w, -x, y, -z).
        mpos, mrot = _anchor_frame_bodies(model, data, [0.1, -0.2, 0.8], quat * [1, -1, 1, -1], mq)
        np.testing.assert_allclose(
            VECTOR(pos[partners]), mpos, atol=1e-4
        )  # the model is symmetric to ~1e-5 m
        np.testing.assert_allclose(ROTATION_6D(rot[partners]), mrot, atol=1e-6)
