"""Reading reference motion files: BeyondMimic/LAFAN1 CSV, NPZ, and (opt-in) GMR pickles.

Every format is read into one ``RawMotion`` with joint angles in the robot's joint order.
Bad input fails with one ``MotionFormatError`` naming the file, the row or field, and the value.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QUAT_NORM_TOLERANCE = 1e-3


class MotionFormatError(ValueError):
    """A motion file that cannot be used as written."""


@dataclass(frozen=True)
class RawMotion:
    """A clip at its source frame rate; root_quat is (w, x, y, z)."""

    source: str
    fps: float
    root_pos: np.ndarray
    root_quat: np.ndarray
    joint_pos: np.ndarray

    @property
    def num_frames(self) -> int:
        return self.root_pos.shape[0]


def load_motion(
    path: str | Path, joint_names: tuple[str, ...], fps: float | None = None, allow_pickle: bool = False
) -> RawMotion:
    """Load a clip; ``fps`` is required for CSV (no rate is stored in it), optional elsewhere."""
    path = Path(path)
    if not path.is_file():
        raise MotionFormatError(f"{path}: no such motion file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if fps is None:
            raise MotionFormatError(
                f"{path}: CSV clips store no frame rate; give fps (LAFAN1 30, g1-moves 60)"
            )
        return _from_csv(path, joint_names, fps)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return _from_mapping(path, dict(data), joint_names, fps)
    if suffix in (".pkl", ".pickle"):
        if not allow_pickle:
            raise MotionFormatError(
                f"{path}: refusing to unpickle (pickle runs code); pass allow_pickle=True "
                "(CLI: --allow-pickle) only for files you trust"
            )
        with path.open("rb") as f:
            data = pickle.load(f)
        if not isinstance(data, dict):
            raise MotionFormatError(f"{path}: expected a GMR dict, got {type(data).__name__}")
        return _from_mapping(path, data, joint_names, fps)
    raise MotionFormatError(f"{path}: unknown motion format {suffix!r}; expected .csv, .npz or .pkl")


def constant_pose_motion(
    root_height: float, joint_pos: np.ndarray, seconds: float, fps: float, source: str
) -> RawMotion:
    """A clip that holds one pose upright at the origin: the reference of a standing task."""
    frames = max(2, round(seconds * fps))
    return RawMotion(
        source=source,
        fps=fps,
        root_pos=np.tile([0.0, 0.0, root_height], (frames, 1)),
        root_quat=np.tile([1.0, 0.0, 0.0, 0.0], (frames, 1)),
        joint_pos=np.tile(np.asarray(joint_pos, dtype=np.float64), (frames, 1)),
    )


def _from_csv(path: Path, joint_names: tuple[str, ...], fps: float) -> RawMotion:
    expected = 7 + len(joint_names)
    rows: list[list[float]] = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != expected:
            raise MotionFormatError(
                f"{path}: row {line_no} has {len(fields)} columns, expected {expected} "
                f"(root xyz, root quat xyzw, {len(joint_names)} joint angles)"
            )
        try:
            rows.append([float(v) for v in fields])
        except ValueError:
            bad = next(v for v in fields if not _is_float(v))
            raise MotionFormatError(f"{path}: row {line_no}: {bad.strip()!r} is not a number") from None
    if not rows:
        raise MotionFormatError(f"{path}: no frames")
    table = np.asarray(rows)
    names = ["root_x", "root_y", "root_z", "quat_x", "quat_y", "quat_z", "quat_w", *joint_names]
    bad = np.argwhere(~np.isfinite(table))
    if len(bad):
        r, c = bad[0]
        raise MotionFormatError(f"{path}: row {r + 1}, column {c + 1} ({names[c]}) is {table[r, c]}")
    quat_xyzw = table[:, 3:7]
    _check_unit(path, quat_xyzw, "row")
    return RawMotion(
        source=str(path),
        fps=_check_fps(path, fps),
        root_pos=table[:, :3],
        root_quat=quat_xyzw[:, [3, 0, 1, 2]],
        joint_pos=table[:, 7:],
    )


def _from_mapping(path: Path, data: dict, joint_names: tuple[str, ...], fps: float | None) -> RawMotion:
    """GMR layout (fps, root_pos, root_rot xyzw, dof_pos), optionally with joint_names."""
    for key in ("root_pos", "root_rot", "dof_pos"):
        if key not in data:
            raise MotionFormatError(f"{path}: missing field {key!r} (have {sorted(data)})")
    stored_fps = data.get("fps")
    rate = float(np.asarray(stored_fps)) if stored_fps is not None else fps
    if rate is None:
        raise MotionFormatError(f"{path}: no 'fps' field and no fps given")
    root_pos = _array(path, data, "root_pos", 3)
    root_rot = _array(path, data, "root_rot", 4)
    dof_pos = _array(path, data, "dof_pos", None)
    if not root_pos.shape[0] == root_rot.shape[0] == dof_pos.shape[0]:
        raise MotionFormatError(
            f"{path}: frame counts differ: root_pos {root_pos.shape[0]}, root_rot {root_rot.shape[0]}, "
            f"dof_pos {dof_pos.shape[0]}"
        )
    if "joint_names" in data:
        dof_pos = _reorder(
            path, dof_pos, [str(n) for n in np.asarray(data["joint_names"]).tolist()], joint_names
        )
    elif dof_pos.shape[1] != len(joint_names):
        raise MotionFormatError(
            f"{path}: field 'dof_pos' has {dof_pos.shape[1]} joints, expected {len(joint_names)}"
        )
    _check_unit(path, root_rot, "frame")
    return RawMotion(
        source=str(path),
        fps=_check_fps(path, rate),
        root_pos=root_pos,
        root_quat=root_rot[:, [3, 0, 1, 2]],
        joint_pos=dof_pos,
    )


def _reorder(path: Path, dof_pos: np.ndarray, names: list[str], joint_names: tuple[str, ...]) -> np.ndarray:
    unknown = [n for n in names if n not in joint_names]
    if unknown:
        raise MotionFormatError(f"{path}: field 'joint_names': unknown joint names {unknown}")
    missing = [n for n in joint_names if n not in names]
    if missing:
        raise MotionFormatError(f"{path}: field 'joint_names': missing joints {missing}")
    if dof_pos.shape[1] != len(names):
        raise MotionFormatError(
            f"{path}: field 'dof_pos' has {dof_pos.shape[1]} columns but 'joint_names' names {len(names)}"
        )
    return dof_pos[:, [names.index(n) for n in joint_names]]


def _array(path: Path, data: dict, key: str, width: int | None) -> np.ndarray:
    try:
        value = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise MotionFormatError(f"{path}: field {key!r} is not numeric") from None
    if value.ndim != 2 or (width is not None and value.shape[1] != width):
        want = f"[T, {width}]" if width else "[T, J]"
        raise MotionFormatError(f"{path}: field {key!r} has shape {value.shape}, expected {want}")
    bad = np.argwhere(~np.isfinite(value))
    if len(bad):
        r, c = bad[0]
        raise MotionFormatError(f"{path}: field {key!r}, frame {r}, column {c} is {value[r, c]}")
    return value


def _check_unit(path: Path, quats: np.ndarray, unit: str) -> None:
    norms = np.linalg.norm(quats, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > QUAT_NORM_TOLERANCE)
    if len(bad):
        i = bad[0]
        number = i + 1 if unit == "row" else i
        raise MotionFormatError(
            f"{path}: {unit} {number}: root quaternion {np.round(quats[i], 6).tolist()} "
            f"has norm {norms[i]:.6f}, expected a unit quaternion"
        )


def _check_fps(path: Path, fps: float) -> float:
    if not np.isfinite(fps) or fps <= 0:
        raise MotionFormatError(f"{path}: fps must be a positive number, got {fps}")
    return float(fps)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
