"""Motion clip loading: real clips parse and resample; malformed files fail with one clear message."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from striata.envs.motion import MotionFormatError, load_motion, load_reference
from striata.envs.robots.g1 import G1
from striata.envs.tasks.g1_tracking.env import build_g1_scene

CLIP = Path(os.environ["STRIATA_DATA"]) / "motions" / "J_ShortDance16_JazzWalk.csv"
JOINTS = G1.joint_names


def test_real_clip_loads_with_fps_parameter():
    raw = load_motion(CLIP, JOINTS, fps=60)
    assert raw.num_frames == 637
    assert raw.fps == 60
    np.testing.assert_allclose(np.linalg.norm(raw.root_quat, axis=1), 1.0, atol=1e-5)
    # CSV stores x, y, z, w; internally MuJoCo's w, x, y, z.
    first = np.array([float(v) for v in CLIP.read_text().splitlines()[0].split(",")[3:7]])
    np.testing.assert_allclose(raw.root_quat[0], first[[3, 0, 1, 2]])


def test_csv_without_fps_is_refused():
    with pytest.raises(MotionFormatError, match="fps"):
        load_motion(CLIP, JOINTS)


def test_reference_is_resampled_to_control_rate_with_kinematics(tmp_path):
    model = build_g1_scene(0.005)
    ref = load_reference(CLIP, model, JOINTS, fps=50, source_fps=60)
    # 637 frames at 60 fps span 636/60 s; at 50 Hz that is 531 frames.
    assert ref.num_frames == 531
    assert abs(ref.duration - 637 / 60) < 0.05
    pelvis = ref.body_indices(("pelvis",))[0]
    np.testing.assert_allclose(ref.body_pos_w[:, pelvis], ref.root_pos, atol=1e-9)
    # Finite-difference velocities agree with the positions they come from.
    torso = ref.body_indices(("torso_link",))[0]
    integrated = ref.body_pos_w[0, torso] + np.cumsum(ref.body_lin_vel_w[:-1, torso], axis=0) / 50
    assert np.abs(integrated[-1] - ref.body_pos_w[-1, torso]).max() < 0.05
    # A second load is served from the NPZ cache and is identical.
    again = load_reference(CLIP, model, JOINTS, fps=50, source_fps=60)
    np.testing.assert_array_equal(again.body_quat_w, ref.body_quat_w)


def _write_rows(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    return path


def _good_rows(n: int = 5) -> list[list[str]]:
    return [line.split(",") for line in CLIP.read_text().splitlines()[:n]]


def test_wrong_column_count_names_file_row_and_count(tmp_path):
    rows = _good_rows()
    rows[2] = rows[2][:-1]
    path = _write_rows(tmp_path / "short.csv", rows)
    with pytest.raises(MotionFormatError) as err:
        load_motion(path, JOINTS, fps=30)
    message = str(err.value)
    assert str(path) in message
    assert "row 3" in message
    assert "35 columns" in message and "expected 36" in message


def test_nan_names_row_and_field(tmp_path):
    rows = _good_rows()
    rows[1][10] = "nan"
    path = _write_rows(tmp_path / "nan.csv", rows)
    with pytest.raises(MotionFormatError, match=r"row 2, column 11 \(left_knee_joint\) is nan"):
        load_motion(path, JOINTS, fps=30)


def test_non_unit_quaternion_is_refused(tmp_path):
    rows = _good_rows()
    rows[3][6] = "0.2"
    path = _write_rows(tmp_path / "quat.csv", rows)
    with pytest.raises(MotionFormatError, match=r"row 4: root quaternion .* has norm"):
        load_motion(path, JOINTS, fps=30)


def test_npz_with_unknown_joint_names_is_refused(tmp_path):
    raw = load_motion(CLIP, JOINTS, fps=60)
    names = list(JOINTS)
    names[3] = "left_knee"
    path = tmp_path / "clip.npz"
    np.savez(
        path,
        fps=60.0,
        root_pos=raw.root_pos,
        root_rot=raw.root_quat[:, [1, 2, 3, 0]],
        dof_pos=raw.joint_pos,
        joint_names=np.array(names),
    )
    with pytest.raises(MotionFormatError, match=r"unknown joint names \['left_knee'\]"):
        load_motion(path, JOINTS)


def test_npz_joint_names_reorder_columns(tmp_path):
    raw = load_motion(CLIP, JOINTS, fps=60)
    order = np.random.default_rng(0).permutation(len(JOINTS))
    path = tmp_path / "shuffled.npz"
    np.savez(
        path,
        fps=60.0,
        root_pos=raw.root_pos,
        root_rot=raw.root_quat[:, [1, 2, 3, 0]],
        dof_pos=raw.joint_pos[:, order],
        joint_names=np.array(JOINTS)[order],
    )
    np.testing.assert_allclose(load_motion(path, JOINTS).joint_pos, raw.joint_pos)


def test_gmr_pickle_needs_explicit_opt_in(tmp_path):
    import pickle

    raw = load_motion(CLIP, JOINTS, fps=60)
    path = tmp_path / "clip.pkl"
    data = {
        "fps": 60,
        "root_pos": raw.root_pos,
        "root_rot": raw.root_quat[:, [1, 2, 3, 0]],
        "dof_pos": raw.joint_pos,
    }
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(MotionFormatError, match="refusing to unpickle"):
        load_motion(path, JOINTS)
    assert load_motion(path, JOINTS, allow_pickle=True).num_frames == raw.num_frames


def test_a_segment_of_the_clip_is_tracked_from_its_own_first_frame(tmp_path, monkeypatch):
    from pydantic import ValidationError

    from striata.envs.motion.reference import MotionSegmentError
    from striata.envs.registry import make_config
    from striata.envs.tasks.g1_tracking.mdp import load_motion as load_task_motion

    monkeypatch.setenv("STRIATA_CACHE", str(tmp_path))
    model = build_g1_scene(0.005)
    whole = load_reference(CLIP, model, JOINTS, fps=50, source_fps=60)

    def task_motion(**segment):
        config = make_config("g1_tracking", {"motion": {"file": str(CLIP), "fps": 60, **segment}})
        return load_task_motion(config, model, fps=50)

    part = task_motion(start_s=2.0, end_s=6.0)
    assert part.num_frames == 201 and part.duration == pytest.approx(4.02)
    np.testing.assert_array_equal(part.root_pos, whole.root_pos[100:301])
    np.testing.assert_array_equal(part.body_lin_vel_w, whole.body_lin_vel_w[100:301])
    assert task_motion(start_s=2.0).num_frames == whole.num_frames - 100
    with pytest.raises(MotionSegmentError, match=r"end_s: 40.0 s is past the clip's end \(10.6"):
        task_motion(end_s=40.0)
    with pytest.raises(ValidationError, match=r"end_s \(2.0\) must be after start_s \(3.0\)"):
        make_config("g1_tracking", {"motion": {"start_s": 3.0, "end_s": 2.0}})
