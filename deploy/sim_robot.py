"""A MuJoCo robot behind the bridge: the G1 or the Panda as a ``RobotBackend``, for sim-to-sim.

The model is the training model (same MJCF, armature, effort limits; joint stops stiffer) with its
actuators turned into plain torque motors, because here, as on the real robot, the PD law runs on the
robot side: each tick computes ``tau = kp (q* - q) + kd (dq* - dq) + tau_ff`` from the latest command,
clips it to the effort limits and takes one physics step of ``control_period_s`` (500 Hz).
``read_state`` advances the physics by one tick and returns the new reading, so physics runs exactly at
the bridge's tick rate, in real time. The G1's IMU is the pelvis: its orientation and body-frame angular
velocity. Because that PD law is explicit at the tick, gains the model cannot hold at that step (a light
joint with a high kd oscillates and diverges where a motor driver's kHz loop would not) are brought
inside the stable region first (``striata.deploy.gain_stability``), as the real robot's own loop would
hold them.

G1 support: the real G1 hangs on a gantry while it is limp and while it moves to its default pose.
The sim does the same with an elastic band (spring-dampers on the pelvis position and uprightness,
like unitree_mujoco's) that holds until the controller first leaves the zero-torque / interpolate
phases; from then on (hold, policy, damping) it is gone for good.
"""

from __future__ import annotations

import time
from typing import Any

import mujoco
import numpy as np

from striata.deploy.gain_stability import gain_limits
from striata.deploy.robot import JointCommand, RobotState
from striata.deploy.self_collision import SelfCollision
from striata.envs.robots.actuators import braking_deceleration

CONTROL_PERIOD_S = 0.002  # the bridge's tick, and so the physics step (500 Hz)
SUPPORTED_PHASES = ("zero_torque", "interpolate")
STOP_TIMECONST_STEPS = 2.0  # joint stops' time constant, in physics steps (MuJoCo's stiffest stable)
SUPPORT_HEIGHT = 0.80  # pelvis height the band holds (m): straight legs just touch the floor
SUPPORT_POS_GAINS = (2000.0, 100.0)  # N/m, N s/m
SUPPORT_ROT_GAINS = (300.0, 10.0)  # N m/rad, N m s/rad
VIEWER_PERIOD_S = 1 / 60


class SimRobot:
    """``RobotBackend`` over one MuJoCo model stepped at ``control_period_s``."""

    def __init__(
        self, robot: str = "g1", control_period_s: float = CONTROL_PERIOD_S, viewer: bool = False
    ) -> None:
        if robot == "g1":
            from striata.deploy.unitree.g1_model import g1_self_collision
            from striata.envs.robots.g1 import G1, G1_DEFAULT_ROOT_HEIGHT
            from striata.envs.tasks.g1_tracking.env import build_g1_scene

            config = G1
            self.model = build_g1_scene(control_period_s)
            self.self_collision: SelfCollision | None = g1_self_collision(G1.joint_names)
            self.has_base = True
            self.default_height = G1_DEFAULT_ROOT_HEIGHT
        elif robot == "panda":
            from striata.envs.robots.actuators import add_position_actuators
            from striata.envs.robots.panda import PANDA, compensate_gravity, panda_spec

            config = PANDA
            spec = panda_spec()
            add_position_actuators(spec, PANDA)
            compensate_gravity(spec)
            spec.option.timestep = control_period_s
            self.model = spec.compile()
            self.has_base = False
            self.self_collision = None
        else:
            raise ValueError(f"robot {robot!r}: allowed: g1, panda")
        # Joint stops as stiff as the step allows (MuJoCo's time constant, at least two steps): the
        # model's default 20 ms let a fallen G1's weight push its waist roll 0.1 rad through its stop,
        # where a real robot's stop is metal.
        model = self.model
        model.jnt_solref[:, 0] = STOP_TIMECONST_STEPS * control_period_s
        self.robot = robot
        self.applies_gains = True  # torque motors: the PD law runs here, with the command's gains
        self.joint_names = list(config.joint_names)
        self.control_period_s = control_period_s
        # Torque motors: force = ctrl, still clipped to the actuator's force range (the effort limit).
        model.actuator_gainprm[:, 0] = 1.0
        model.actuator_biasprm[:] = 0.0
        model.actuator_ctrllimited[:] = 0
        joint_ids = [model.joint(n).id for n in self.joint_names]
        self.qpos_adr = model.jnt_qposadr[joint_ids]
        self.dof_adr = model.jnt_dofadr[joint_ids]
        self.actuator_ids = np.array([model.actuator(n).id for n in self.joint_names])
        self.joint_limits = model.jnt_range[joint_ids].copy()
        self.effort_limits = np.asarray(config.effort_limit, dtype=np.float64)
        self.velocity_limits = np.asarray(config.velocity_limit, dtype=np.float64)
        self.gain_limits = gain_limits(
            model, control_period_s, self.joint_names, joint_positions=[config.default_pos], model_name=robot
        )
        self.brake_accel = braking_deceleration(
            model, self.joint_names, self.effort_limits, joint_positions=[config.default_pos]
        )
        self.data = mujoco.MjData(model)
        n = len(self.joint_names)
        self._command = JointCommand(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))
        self._tau = np.zeros(n)
        self.support = self.has_base
        self.phase = ""
        # Per controller phase: ticks and the lowest / highest pelvis height seen (how well it stood).
        self.height_by_phase: dict[str, dict[str, float]] = {}
        if self.has_base:
            self.pelvis = model.body("pelvis").id
            self.data.qpos[2] = SUPPORT_HEIGHT
            self._anchor_xy = self.data.qpos[:2].copy()
        else:
            self.data.qpos[self.qpos_adr] = config.default_pos
        mujoco.mj_forward(model, self.data)
        self._viewer: Any = None
        self._viewer_at = 0.0
        if viewer:
            from mujoco import viewer as mujoco_viewer

            self._viewer = mujoco_viewer.launch_passive(model, self.data)

    # ----------------------------------------------------------------- RobotBackend
    def read_state(self) -> RobotState:
        self._step()
        d = self.data
        quat = d.qpos[3:7].copy() if self.has_base else np.array([1.0, 0.0, 0.0, 0.0])
        gyro = d.qvel[3:6].copy() if self.has_base else np.zeros(3)
        return RobotState(
            q=d.qpos[self.qpos_adr].copy(),
            dq=d.qvel[self.dof_adr].copy(),
            imu_quat_wxyz=quat,
            gyro=gyro,
            tau=self._tau.copy(),
            tick=round(d.time / self.control_period_s),
        )

    def write_command(self, command: JointCommand) -> None:
        kp, kd = self.gain_limits.clip(command.kp, command.kd)
        self._command = JointCommand(command.q_target, command.dq_target, kp, kd, command.tau_ff)

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None

    # ----------------------------------------------------------------- sim only
    def on_controller_phase(self, phase: str) -> None:
        """Release the G1's support, for good, once the controller leaves the supported phases."""
        self.phase = phase
        if phase not in SUPPORTED_PHASES:
            self.support = False

    def height_report(self) -> dict[str, dict[str, float]]:
        """Per controller phase: seconds simulated and min / max pelvis height (m)."""
        return {
            phase: {
                "seconds": round(v["ticks"] * self.control_period_s, 3),
                "min_m": v["min"],
                "max_m": v["max"],
            }
            for phase, v in self.height_by_phase.items()
        }

    def base_height(self) -> float:
        """Pelvis height (m); NaN for a fixed-base arm."""
        return float(self.data.qpos[2]) if self.has_base else float("nan")

    def _step(self) -> None:
        d, c = self.data, self._command
        q, dq = d.qpos[self.qpos_adr], d.qvel[self.dof_adr]
        tau = c.kp * (c.q_target - q) + c.kd * (c.dq_target - dq) + c.tau_ff
        self._tau = np.clip(tau, -self.effort_limits, self.effort_limits)
        d.ctrl[self.actuator_ids] = self._tau
        d.xfrc_applied[:] = 0.0
        if self.support:
            self._apply_support()
        mujoco.mj_step(self.model, d)
        if self.has_base:
            height = float(d.qpos[2])
            entry = self.height_by_phase.setdefault(
                self.phase or "none", {"ticks": 0, "min": height, "max": height}
            )
            entry["ticks"] += 1
            entry["min"], entry["max"] = min(entry["min"], height), max(entry["max"], height)
        if self._viewer is not None and time.monotonic() - self._viewer_at > VIEWER_PERIOD_S:
            self._viewer.sync()
            self._viewer_at = time.monotonic()

    def _apply_support(self) -> None:
        d = self.data
        kp, kd = SUPPORT_POS_GAINS
        target = np.array([*self._anchor_xy, SUPPORT_HEIGHT])
        force = kp * (target - d.qpos[:3]) - kd * d.qvel[:3]
        # Uprightness: torque about the axis that turns the pelvis z axis back to world z.
        rot = d.xmat[self.pelvis].reshape(3, 3)
        up_error = np.cross(rot[:, 2], np.array([0.0, 0.0, 1.0]))
        ang_vel_w = rot @ d.qvel[3:6]
        rkp, rkd = SUPPORT_ROT_GAINS
        torque = rkp * up_error - rkd * ang_vel_w
        d.xfrc_applied[self.pelvis] = np.concatenate([force, torque])
