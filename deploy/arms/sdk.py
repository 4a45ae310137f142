"""``ArmSDK``: what an adapter around a vendor's arm SDK provides, in SI units and the arm's joint order.

Most arms take position targets and run their own servo loop; they expose no torque or gain
interface. An adapter therefore only reads joint positions/velocities, sends position targets
and switches torque on/off; ``ArmBackend`` turns the bridge's joint commands into those calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ArmJoint:
    """One joint: its name and limits in SI units (rad, N m, rad/s)."""

    name: str
    lower: float
    upper: float
    effort: float
    velocity: float


class ArmSDK(Protocol):
    """An adapter around one vendor SDK; every array is in ``joints`` order, rad and rad/s."""

    name: str
    joints: tuple[ArmJoint, ...]
    control_period_s: float  # how often the bridge should read and command the arm

    def read_positions(self) -> np.ndarray: ...

    def read_velocities(self) -> np.ndarray: ...

    def command_positions(self, q: np.ndarray) -> None:
        """Send joint position targets (rad) through the vendor's position-command call."""
        ...

    def set_torque(self, enabled: bool) -> None:
        """Motors holding (True) or limp (False)."""
        ...

    def close(self) -> None: ...
