"""Reference motions at the control rate: resampling, forward kinematics and the NPZ cache.

A ``MotionReference`` holds, per control step, the joint positions and velocities and the
world pose and velocity of every body, computed by MuJoCo forward kinematics on the robot model.
Built references are cached as NPZ keyed by the file's bytes and the build parameters.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, fields
from pathlib import Path

import mujoco
import numpy as np

from striata.common.files import atomic_write
from striata.envs.motion.loaders import RawMotion, load_motion
from striata.envs.rotations import angular_velocity_from_quats, quat_slerp

CACHE_VERSION = 1
CACHE_ENV = "STRIATA_CACHE"


class MotionSegmentError(ValueError):
    """A segment that is not inside its clip."""


@dataclass(frozen=True)
class MotionReference:
    """A clip resampled to ``fps`` (the control rate) with body kinematics; quaternions (w, x, y, z)."""

    fps: float
    body_names: tuple[str, ...]
    joint_pos: np.ndarray  # [T, J]
    joint_vel: np.ndarray  # [T, J]
    body_pos_w: np.ndarray  # [T, B, 3]
    body_quat_w: np.ndarray  # [T, B, 4]
    body_lin_vel_w: np.ndarray  # [T, B, 3]
    body_ang_vel_w: np.ndarray  # [T, B, 3]
    root_pos: np.ndarray  # [T, 3]
    root_quat: np.ndarray  # [T, 4]

    @property
    def num_frames(self) -> int:
        return self.joint_pos.shape[0]

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def segment(self, start_s: float, end_s: float | None) -> MotionReference:
        """Frames from ``start_s`` to ``end_s`` (seconds into the clip; None: its end), velocities as
        computed on the whole clip."""
        end = self.num_frames if end_s is None else round(end_s * self.fps) + 1
        start = round(start_s * self.fps)
        if end > self.num_frames:
            raise MotionSegmentError(f"end_s: {end_s} s is past the clip's end ({self.duration:.3f} s)")
        if end - start < 2:
            raise MotionSegmentError(f"start_s: {start_s} s leaves under two frames of the clip")
        if start == 0 and end == self.num_frames:
            return self
        rows = slice(start, end)
        arrays = {
            f.name: getattr(self, f.name)[rows] for f in fields(self) if f.name not in ("fps", "body_names")
        }
        return MotionReference(fps=self.fps, body_names=self.body_names, **arrays)

    def body_indices(self, names: tuple[str, ...]) -> np.ndarray:
        missing = [n for n in names if n not in self.body_names]
        if missing:
            raise KeyError(f"reference motion has no bodies {missing}")
        return np.array([self.body_names.index(n) for n in names])

    def save(self, path: Path) -> None:
        """Write atomically, so a crash never leaves a half-written cache file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        arrays["body_names"] = np.array(self.body_names)
        arrays["cache_version"] = np.array(CACHE_VERSION)
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: Path) -> MotionReference:
        with np.load(path, allow_pickle=False) as data:
            values = {f.name: data[f.name] for f in fields(cls)}
        values["fps"] = float(values["fps"])
        values["body_names"] = tuple(str(n) for n in values["body_names"])
        return cls(**values)


def resample(raw: RawMotion, fps: float) -> RawMotion:
    """Interpolate a clip to a new frame rate (linear for positions, slerp for the root orientation)."""
    duration = (raw.num_frames - 1) / raw.fps
    times = np.arange(0.0, duration + 1e-9, 1.0 / fps)
    src = times * raw.fps
    i0 = np.clip(np.floor(src).astype(int), 0, raw.num_frames - 1)
    i1 = np.clip(i0 + 1, 0, raw.num_frames - 1)
    alpha = src - i0
    lerp = lambda x: x[i0] + (x[i1] - x[i0]) * alpha[:, None]  # noqa: E731
    return RawMotion(
        source=raw.source,
        fps=fps,
        root_pos=lerp(raw.root_pos),
        root_quat=quat_slerp(raw.root_quat[i0], raw.root_quat[i1], alpha),
        joint_pos=lerp(raw.joint_pos),
    )


def build_reference(
    raw: RawMotion, model: mujoco.MjModel, joint_names: tuple[str, ...], fps: float
) -> MotionReference:
    """Resample to ``fps`` and compute every body's pose and velocity by forward kinematics."""
    motion = resample(raw, fps)
    data = mujoco.MjData(model)
    qpos_adr = np.array([model.jnt_qposadr[model.joint(n).id] for n in joint_names])
    free = _free_joint_qposadr(model)
    frames = motion.num_frames
    body_pos = np.empty((frames, model.nbody - 1, 3))
    body_quat = np.empty((frames, model.nbody - 1, 4))
    for t in range(frames):
        data.qpos[free : free + 3] = motion.root_pos[t]
        data.qpos[free + 3 : free + 7] = motion.root_quat[t]
        data.qpos[qpos_adr] = motion.joint_pos[t]
        mujoco.mj_kinematics(model, data)
        body_pos[t] = data.xpos[1:]
        body_quat[t] = data.xquat[1:]
    dt = 1.0 / fps
    body_names = tuple(model.body(i).name for i in range(1, model.nbody))
    return MotionReference(
        fps=fps,
        body_names=body_names,
        joint_pos=motion.joint_pos,
        joint_vel=np.gradient(motion.joint_pos, dt, axis=0),
        body_pos_w=body_pos,
        body_quat_w=body_quat,
        body_lin_vel_w=np.gradient(body_pos, dt, axis=0),
        body_ang_vel_w=angular_velocity_from_quats(body_quat, dt),
        root_pos=motion.root_pos,
        root_quat=motion.root_quat,
    )


def _free_joint_qposadr(model: mujoco.MjModel) -> int:
    for j in range(model.njnt):
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            return int(model.jnt_qposadr[j])
    raise ValueError("the robot model has no free joint; a reference motion needs a floating base")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "striata")) / "motions"


def load_reference(
    path: str | Path,
    model: mujoco.MjModel,
    joint_names: tuple[str, ...],
    fps: float,
    source_fps: float | None = None,
    allow_pickle: bool = False,
) -> MotionReference:
    """Load a clip as a reference at ``fps``, from the NPZ cache when the same build was done before."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"motion file {path} does not exist")
    digest = hashlib.sha256(path.read_bytes())
    digest.update(repr((CACHE_VERSION, source_fps, fps, joint_names, model.nbody)).encode())
    cached = cache_dir() / f"{path.stem}-{digest.hexdigest()[:16]}.npz"
    if cached.is_file():
        return MotionReference.load(cached)
    raw = load_motion(path, joint_names, fps=source_fps, allow_pickle=allow_pickle)
    reference = build_reference(raw, model, joint_names, fps)
    reference.save(cached)
    return reference
