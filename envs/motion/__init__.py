"""Reference motion clips: file loading, resampling and forward kinematics."""

from envs.motion.loaders import MotionFormatError, RawMotion, load_motion
from envs.motion.reference import MotionReference, build_reference, load_reference

__all__ = [
    "MotionFormatError",
    "MotionReference",
    "RawMotion",
    "build_reference",
    "load_motion",
    "load_reference",
]
