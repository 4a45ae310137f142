"""``ArmBackend``: any ``ArmSDK`` adapter as a ``RobotBackend`` for the deploy bridge server.

A position-controlled arm cannot follow a PD law with the controller's gains, so a joint command
becomes one of three things (deploy/ARMS.md):

- some kp > 0: torque on, position targets sent (q_target where kp > 0, the measured position
  where kp == 0, so such a joint holds still); kd, dq_target and tau_ff are left to the servo loop;
- kp == 0 everywhere and kd > 0 (the bridge's damping): torque on, hold the measured position,
  because a limp arm falls under gravity, which a real damping mode would not let it do;
- kp == 0 and kd == 0 everywhere (zero torque): torque off.
"""

from __future__ import annotations

import numpy as np

from striata.deploy.arms.sdk import ArmSDK
from striata.deploy.robot import JointCommand, RobotState


class ArmBackend:
    """Wraps an ``ArmSDK`` so the bridge server can run it with its protocol and safety."""

    def __init__(self, arm: ArmSDK) -> None:
        self.arm = arm
        self.joint_names = [j.name for j in arm.joints]
        self.control_period_s = arm.control_period_s
        self.joint_limits = np.array([[j.lower, j.upper] for j in arm.joints], dtype=np.float64)
        self.effort_limits = np.array([j.effort for j in arm.joints], dtype=np.float64)
        self.velocity_limits = np.array([j.velocity for j in arm.joints], dtype=np.float64)
        self.brake_accel = None  # no model of the arm's links here: the bridge's configured rate applies
        self.self_collision = None
        self.gain_limits = None  # a real arm
        self.applies_gains = False
        self._q = arm.read_positions()
        self._torque: bool | None = None

    def read_state(self) -> RobotState:
        self._q = self.arm.read_positions()
        return RobotState(q=self._q, dq=self.arm.read_velocities())

    def write_command(self, command: JointCommand) -> None:
        kp = np.asarray(command.kp, dtype=np.float64)
        if np.all(kp <= 0.0) and np.all(np.asarray(command.kd) <= 0.0):
            self._set_torque(False)
            return
        self._set_torque(True)
        target = np.where(kp > 0.0, command.q_target, self._q)
        self.arm.command_positions(np.clip(target, self.joint_limits[:, 0], self.joint_limits[:, 1]))

    def _set_torque(self, enabled: bool) -> None:
        if enabled != self._torque:
            self.arm.set_torque(enabled)
            self._torque = enabled

    def close(self) -> None:
        self.arm.close()
