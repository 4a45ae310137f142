"""Reference motion clips: file loading, resampling and forward kinematics."""

from striata.envs.motion.loaders import MotionFormatError, RawMotion, constant_pose_motion, load_motion
from striata.envs.motion.reference import MotionReference, build_reference, load_reference

__all__ = [
    "MotionFormatError",
    "MotionReference",
    "RawMotion",
    "build_reference",
    "constant_pose_motion",
    "load_motion",
    "load_reference",
]
