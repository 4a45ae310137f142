"""The robot seen by a bridge: one state read and one command write per low-level tick.

Every robot-side bridge (MuJoCo sim, Unitree G1 over DDS, an arm SDK) implements ``RobotBackend``;
the bridge server around it owns the protocol, the latest-only command slot and safety, so a
backend only translates between these arrays (in the robot's own joint order) and its hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from striata.deploy.gain_stability import GainLimits
    from striata.deploy.self_collision import SelfCollision


@dataclass
class RobotState:
    """One reading of the robot, arrays in the robot's joint order; SI units (rad, rad/s, N m)."""

    q: np.ndarray
    dq: np.ndarray
    imu_quat_wxyz: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    gyro: np.ndarray = field(default_factory=lambda: np.zeros(3))
    tau: np.ndarray | None = None
    tick: int = 0
    # Remote-control buttons held down (names from deploy.protocol.REMOTE_BUTTONS), where the robot has one.
    remote: tuple[str, ...] = ()


@dataclass
class JointCommand:
    """A low-level joint command: tau = kp (q_target - q) + kd (dq_target - dq) + tau_ff, per joint."""

    q_target: np.ndarray
    dq_target: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    tau_ff: np.ndarray


class RobotBackend(Protocol):
    """What a bridge needs from a robot. Arrays are float64 in ``joint_names`` order."""

    joint_names: list[str]
    control_period_s: float  # the low-level tick: 0.002 for the G1 (500 Hz)
    joint_limits: np.ndarray  # [J, 2] lower, upper (rad) from the robot model
    effort_limits: np.ndarray  # [J] N m
    velocity_limits: np.ndarray  # [J] rad/s
    brake_accel: np.ndarray | None  # [J] rad/s^2 its motors surely brake each joint at; None: unknown
    self_collision: SelfCollision | None  # how deep a posture presses it into itself; None: no model
    gain_limits: GainLimits | None  # the gains a simulated robot's model and timestep hold; None: real
    # True: the robot runs the PD law with the command's kp, kd and tau_ff (the G1's motor drivers, the
    # sim). False: position servos take the target alone and bound their own torque (deploy/ARMS.md).
    applies_gains: bool

    def read_state(self) -> RobotState: ...

    def write_command(self, command: JointCommand) -> None:
        """Apply an already safety-filtered command until the next one."""
        ...

    def close(self) -> None: ...


class StateLost(RuntimeError):
    """The robot's state stopped arriving (a backend's read_state raises it; the bridge damps)."""
