"""SO-101 digital twin: a simulated STS3215 servo bus on a pseudo-terminal, backed by MuJoCo.

``So101Twin`` serves the Feetech protocol (``sts_bus.StsBus``) on a pty, so ``FeetechArm`` and
``striata bridge arm --port <pty>`` talk to it as to the real arm, and steps the SO-101 scene of
``so101_pick`` (arm, table, 2.5 cm cube) in real time in its own thread. Registers and model meet
once per physics step, under the bus lock:

- a servo with torque on (address 40) drives its joint's position actuator (the asset's STS3215
  position loop) to its goal position (address 42); torque off zeroes that actuator's gains, so the
  joint is limp and falls under gravity, as the real servo does;
- present position and speed (addresses 56-59) are the simulated joint's, in steps and
  sign-magnitude steps/s.

Steps and rad convert with ``feetech.py``'s mapping and the arm config's calibration (the
SO-101 default of ``FeetechArmConfig``: mid-range homing), so a bridge with the same config reads
the simulated joint angles. The twin starts, and ``reset`` puts it back, with the arm holding its
default pose (``SO101.default_joint_pos``, torque on) and the cube at rest on the table.
"""

from __future__ import annotations

import threading
import time

import mujoco
import numpy as np

from striata.deploy.arms.feetech import (
    ADDR_GOAL_POSITION,
    ADDR_PRESENT_POSITION,
    ADDR_PRESENT_SPEED,
    ADDR_TORQUE_ENABLE,
    RAD_PER_STEP,
    FeetechArmConfig,
    rad_to_steps,
    steps_to_rad,
    to_sign_magnitude,
)
from striata.deploy.arms.sts_bus import StsBus
from striata.envs.robots.so101 import SO101
from striata.envs.rotations import yaw_quat
from striata.envs.tasks.so101.scene import CUBE, CUBE_HALF_SIZE, build_scene

PHYSICS_DT = 0.002  # s: the so101 tasks' physics step
# Steps run at once to catch up with the wall clock; a machine slower than that runs the twin slower
# than real time rather than in bursts that would hold the bus lock for long.
MAX_CATCHUP_STEPS = 10


class TwinConfigError(ValueError):
    """The arm config names a joint the SO-101 model does not have."""


class So101Twin(StsBus):
    """The SO-101 on a simulated servo bus at ``path``; ``config`` gives servo ids and calibration."""

    def __init__(
        self, config: FeetechArmConfig | None = None, *, cube: bool = True, visual_meshes: str = "original"
    ) -> None:
        self.config = config if config is not None else FeetechArmConfig()
        unknown = [j.name for j in self.config.joints if j.name not in SO101.joint_names]
        if unknown:
            raise TwinConfigError(f"joints {unknown}: the SO-101 twin has {list(SO101.joint_names)}")
        # Frames (``TwinCameras``) are drawn from decimated meshes as the tasks draw theirs.
        self.model, _ = build_scene(PHYSICS_DT, 64, cube=cube, visual_meshes=visual_meshes)
        self.data = mujoco.MjData(self.model)
        self._ids = [j.id for j in self.config.joints]
        self._offset = np.array([j.homing_offset for j in self.config.joints], dtype=np.float64)
        self._direction = np.array([j.direction for j in self.config.joints], dtype=np.float64)
        self._qpos = np.array([self.model.joint(j.name).qposadr[0] for j in self.config.joints])
        self._dof = np.array([self.model.joint(j.name).dofadr[0] for j in self.config.joints])
        self._actuator = np.array([self.model.actuator(j.name).id for j in self.config.joints])
        self._gains = self.model.actuator_gainprm[self._actuator, 0].copy()
        self._bias = self.model.actuator_biasprm[self._actuator, 1:3].copy()
        self._cube = cube
        super().__init__(self._ids)
        self.reset()
        self._running = threading.Event()
        self._running.set()
        self._sim = threading.Thread(target=self._simulate, name="so101-twin", daemon=True)
        self._sim.start()

    # ----------------------------------------------------------------- state for callers
    def reset(self) -> None:
        """Arm at its default pose, holding it (torque on, goals there), still; the cube on the table."""
        with self.lock:
            mujoco.mj_resetData(self.model, self.data)
            # The scene puts the arm's joints and actuators first, in SO101's order; joints without a
            # servo in the config hold the default pose on their own actuators.
            n = len(SO101.joint_names)
            self.data.qpos[:n] = self.data.ctrl[:n] = SO101.default_pos
            mujoco.mj_forward(self.model, self.data)
            q = self.data.qpos[self._qpos]
            for servo, goal in zip(self._ids, self._to_steps(q).tolist(), strict=True):
                self.tables[servo][ADDR_TORQUE_ENABLE] = 1
                self.set_register(servo, ADDR_GOAL_POSITION, goal)
            self._apply_registers()
            self._publish()
            self._wall0, self._sim0 = time.monotonic(), self.data.time

    def place_cube(self, x: float, y: float, yaw: float = 0.0) -> None:
        """Put the cube at rest on the table at (``x``, ``y``) (m, world frame), turned ``yaw`` about z."""
        if not self._cube:
            raise ValueError("cube: this twin was built without one (cube=False)")
        adr = self.model.joint(CUBE).qposadr[0]
        dof = self.model.joint(CUBE).dofadr[0]
        with self.lock:
            self.data.qpos[adr : adr + 7] = (x, y, CUBE_HALF_SIZE, *yaw_quat(yaw))
            self.data.qvel[dof : dof + 6] = 0.0
            mujoco.mj_forward(self.model, self.data)

    def joint_positions(self) -> np.ndarray:
        """Simulated joint angles (rad) in the config's joint order."""
        with self.lock:
            return self.data.qpos[self._qpos].copy()

    def cube_position(self) -> np.ndarray:
        """The cube's centre (m, world frame)."""
        if not self._cube:
            raise ValueError("cube: this twin was built without one (cube=False)")
        with self.lock:
            return self.data.body(CUBE).xpos.copy()

    def snapshot(self, data: mujoco.MjData) -> float:
        """Copy the simulated state into ``data`` (of this twin's model) with what drawing it needs: body,
        camera and light poses. Returns the simulated time of the copy."""
        with self.lock:
            data.qpos[:] = self.data.qpos
            data.qvel[:] = self.data.qvel
            t = float(self.data.time)
        mujoco.mj_kinematics(self.model, data)
        mujoco.mj_comPos(self.model, data)
        mujoco.mj_camlight(self.model, data)
        return t

    def close(self) -> None:
        self._running.clear()
        self._sim.join(2.0)
        super().close()

    # ----------------------------------------------------------------- registers <-> model
    def _to_steps(self, q: np.ndarray) -> np.ndarray:
        return rad_to_steps(q, self._offset, self._direction)

    def _apply_registers(self) -> None:
        torque = np.array([self.tables[i][ADDR_TORQUE_ENABLE] != 0 for i in self._ids])
        goal = np.array([self.register(i, ADDR_GOAL_POSITION) for i in self._ids], dtype=np.float64)
        model = self.model
        model.actuator_gainprm[self._actuator, 0] = np.where(torque, self._gains, 0.0)
        model.actuator_biasprm[self._actuator, 1:3] = np.where(torque[:, None], self._bias, 0.0)
        self.data.ctrl[self._actuator] = steps_to_rad(goal, self._offset, self._direction)

    def _publish(self) -> None:
        position = self._to_steps(self.data.qpos[self._qpos])
        speed = np.rint(self._direction * self.data.qvel[self._dof] / RAD_PER_STEP).astype(np.int64)
        for servo, p, v in zip(self._ids, position.tolist(), speed.tolist(), strict=True):
            self.set_register(servo, ADDR_PRESENT_POSITION, p)
            self.set_register(servo, ADDR_PRESENT_SPEED, to_sign_magnitude(v))

    def _simulate(self) -> None:
        dt = self.model.opt.timestep
        while self._running.is_set():
            with self.lock:
                now = time.monotonic()
                steps = int(((now - self._wall0) - (self.data.time - self._sim0)) / dt)
                if steps > MAX_CATCHUP_STEPS:
                    self._wall0 += (steps - MAX_CATCHUP_STEPS) * dt
                    steps = MAX_CATCHUP_STEPS
                # The bus thread changes registers only under the lock: one application holds for all.
                self._apply_registers()
                for _ in range(steps):
                    mujoco.mj_step(self.model, self.data)
                self._publish()
                next_step_in = (self.data.time + dt - self._sim0) - (time.monotonic() - self._wall0)
            time.sleep(max(next_step_in, 0.0))
