"""SDK motor slots <-> a robot-side joint order, matched by joint name.

The G1's LowCmd/LowState carry 35 motor slots; the 29-DoF G1 uses slots 0..28 in the order of
``striata.envs.robots.g1.G1_JOINT_NAMES`` and leaves 29..34 unused. A bridge may report its joints in any
order (e.g. a policy's); mapping by name, never by position, is what keeps a reordered list from
driving the wrong motor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from striata.deploy.unitree.hg_idl import NUM_MOTOR_SLOTS
from striata.envs.robots.g1 import G1_JOINT_NAMES

G1_MOTOR_INDEX: dict[str, int] = {name: slot for slot, name in enumerate(G1_JOINT_NAMES)}


class MotorMapError(ValueError):
    """A joint list that cannot be mapped onto the G1's motor slots."""


class MotorMap:
    """Where each joint of ``joint_names`` lives among the SDK's 35 motor slots."""

    def __init__(self, joint_names: Sequence[str], motor_index: dict[str, int] = G1_MOTOR_INDEX) -> None:
        names = list(joint_names)
        unknown = [n for n in names if n not in motor_index]
        if unknown:
            raise MotorMapError(f"joint_names: not G1 motors: {unknown}; known: {list(motor_index)}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise MotorMapError(f"joint_names: listed twice: {duplicates}")
        self.joint_names = names
        self.slots = np.array([motor_index[n] for n in names], dtype=np.intp)

    def to_slots(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Joint-order values [J] -> motor-slot values [35]; slots of other joints get ``fill``."""
        out = np.full(NUM_MOTOR_SLOTS, fill, dtype=np.float64)
        out[self.slots] = values
        return out

    def from_slots(self, slot_values: np.ndarray) -> np.ndarray:
        """Motor-slot values [35] -> joint-order values [J]."""
        return np.asarray(slot_values, dtype=np.float64)[self.slots]
