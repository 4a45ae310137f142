"""A simulated G1 on DDS: a MuJoCo G1 that behaves like the robot's low-level interface.

It publishes rt/lowstate at 500 Hz and applies the latest valid rt/lowcmd with the PD law the
G1's motor drivers run, tau = kp (q* - q) + kd (dq* - dq) + tau, clipped to each motor's limit.
Like the robot it drops LowCmds with a bad CRC, and it counts them, and the ones whose
mode_machine does not echo its own, so tests can check every command that reached the "robot".
An elastic band holds the pelvis up, as a gantry does at the start of a real deploy. Loopback
(``lo``) only is what the tests use; the interface, unicast peers or a whole Cyclone XML are
parameters like on the real bridge (default: the vendor SDK's multicast discovery).

Run it alone with ``python -m striata.deploy.unitree.sim_g1 --domain-id 7``.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Annotated

import mujoco
import numpy as np
import typer
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

from striata.deploy.unitree.crc import crc_is_valid
from striata.deploy.unitree.dds import delete_entities, open_participant
from striata.deploy.unitree.hg_idl import LOWCMD_TOPIC, LOWSTATE_TOPIC, LowCmd_, zero_lowstate
from striata.deploy.unitree.motor_map import G1_MOTOR_INDEX
from striata.deploy.unitree.remote import encode_buttons
from striata.envs.robots.g1 import G1, G1_DEFAULT_ROOT_HEIGHT, g1_spec

G1_MODE_MACHINE = 5  # what a 29-DoF G1 reports; any value works as long as it is echoed
_BAND_STIFFNESS = 10000.0  # N/m: carries the ~35 kg robot with ~3 cm of sag
_BAND_DAMPING = 1000.0
_BAND_ROT_STIFFNESS = 1000.0  # N m/rad: a gantry also keeps the robot from swinging round
_BAND_ROT_DAMPING = 100.0


@dataclass
class SimG1Stats:
    lowstates_published: int = 0
    lowcmds_received: int = 0
    lowcmds_bad_crc: int = 0
    lowcmds_wrong_mode_machine: int = 0
    late_ticks: int = 0
    sim_time_s: float = 0.0
    pelvis_height_m: float = 0.0


def build_g1_motor_scene(physics_dt: float) -> mujoco.MjModel:
    """G1 with torque motors (PD is computed like the motor drivers do), IMU sensors and a floor."""
    spec = g1_spec()
    for joint, armature, effort in zip(G1.joint_names, G1.armature, G1.effort_limit, strict=True):
        spec.joint(joint).armature = armature
        motor = spec.add_actuator(name=joint, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        motor.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        motor.ctrlrange = [-float(effort), float(effort)]
    spec.add_sensor(
        name="imu_gyro",
        type=mujoco.mjtSensor.mjSENS_GYRO,
        objtype=mujoco.mjtObj.mjOBJ_SITE,
        objname="imu_in_pelvis",
    )
    spec.add_sensor(
        name="imu_acc",
        type=mujoco.mjtSensor.mjSENS_ACCELEROMETER,
        objtype=mujoco.mjtObj.mjOBJ_SITE,
        objname="imu_in_pelvis",
    )
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05])
    spec.option.timestep = physics_dt
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    return spec.compile()


def _rpy(quat_wxyz: np.ndarray) -> list[float]:
    w, x, y, z = quat_wxyz
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return [roll, pitch, yaw]


class SimulatedG1:
    """A MuJoCo G1 behind rt/lowstate and rt/lowcmd, stepped in real time on its own thread."""

    def __init__(
        self,
        domain_id: int,
        interface: str = "lo",
        mode_machine: int = G1_MODE_MACHINE,
        physics_dt: float = 0.002,
        elastic_band: bool = True,
        peers: tuple[str, ...] = (),
        dds_config_xml: str | None = None,
    ) -> None:
        self.physics_dt = physics_dt
        self.mode_machine = mode_machine
        self.elastic_band = elastic_band
        self.stats = SimG1Stats()
        self.model = build_g1_motor_scene(physics_dt)
        self.data = mujoco.MjData(self.model)
        joint_ids = [self.model.joint(n).id for n in G1.joint_names]
        self._qpos_adr = self.model.jnt_qposadr[joint_ids]
        self._dof_adr = self.model.jnt_dofadr[joint_ids]
        self._slots = np.array([G1_MOTOR_INDEX[n] for n in G1.joint_names])
        self._effort = G1.effort_limit
        self._pelvis = self.model.body("pelvis").id
        self.data.qpos[2] = G1_DEFAULT_ROOT_HEIGHT
        self.data.qpos[self._qpos_adr] = G1.default_pos
        mujoco.mj_forward(self.model, self.data)
        self._band_anchor = self.data.xpos[self._pelvis].copy()
        self._band_quat = self.data.qpos[3:7].copy()
        self._quat_error = np.zeros(3)
        n = len(G1.joint_names)
        # Until a valid LowCmd arrives every motor is off (mode 0), as on the robot.
        self._enabled = np.zeros(n, dtype=bool)
        self._q_ref, self._dq_ref, self._kp, self._kd, self._tau_ff = (np.zeros(n) for _ in range(5))
        self._lowstate = zero_lowstate()
        self._lowstate.mode_machine = mode_machine
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        self._participant = open_participant(domain_id, interface, peers, dds_config_xml)
        self._state_topic = Topic(self._participant, LOWSTATE_TOPIC, type(self._lowstate))
        self._cmd_topic = Topic(self._participant, LOWCMD_TOPIC, LowCmd_)
        self._writer = DataWriter(self._participant, self._state_topic, qos=Qos(Policy.History.KeepLast(1)))
        # Keep a short history so that counting sees every LowCmd that arrives between two ticks.
        self._reader = DataReader(
            self._participant,
            self._cmd_topic,
            qos=Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(64)),
        )

    def start(self) -> SimulatedG1:
        self._thread = threading.Thread(target=self._run, name="sim-g1", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> SimG1Stats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        delete_entities(self._reader, self._writer, self._state_topic, self._cmd_topic, self._participant)
        return self.snapshot()

    def snapshot(self) -> SimG1Stats:
        with self._lock:
            return SimG1Stats(**asdict(self.stats))

    def press(self, *buttons: str) -> None:
        """Hold these remote buttons down (none: release all) in every LowState from now on."""
        remote = encode_buttons(buttons)
        with self._lock:
            self._lowstate.wireless_remote = list(remote)

    def __enter__(self) -> SimulatedG1:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        next_tick = time.perf_counter()
        while not self._stop.is_set():
            self.tick()
            next_tick += self.physics_dt
            delay = next_tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -10 * self.physics_dt:
                # Far behind (a loaded machine): drop the backlog instead of bursting to catch up.
                with self._lock:
                    self.stats.late_ticks += 1
                next_tick = time.perf_counter()

    def tick(self) -> None:
        """Take new LowCmds, run the motor PD for one physics step, publish the LowState."""
        self._receive_commands()
        self._apply_motor_pd()
        mujoco.mj_step(self.model, self.data)
        self._publish_state()

    def _receive_commands(self) -> None:
        latest = None
        received = bad_crc = wrong_machine = 0
        for cmd in self._reader.take(N=64):
            if not isinstance(cmd, LowCmd_):
                continue
            received += 1
            if not crc_is_valid(cmd):
                bad_crc += 1  # the robot drops these
                continue
            if cmd.mode_machine != self.mode_machine:
                wrong_machine += 1
            latest = cmd
        with self._lock:
            self.stats.lowcmds_received += received
            self.stats.lowcmds_bad_crc += bad_crc
            self.stats.lowcmds_wrong_mode_machine += wrong_machine
        if latest is not None:
            motors = [latest.motor_cmd[s] for s in self._slots]
            self._enabled = np.array([m.mode == 1 for m in motors])
            self._q_ref = np.array([m.q for m in motors])
            self._dq_ref = np.array([m.dq for m in motors])
            self._kp = np.array([m.kp for m in motors])
            self._kd = np.array([m.kd for m in motors])
            self._tau_ff = np.array([m.tau for m in motors])

    def _apply_motor_pd(self) -> None:
        q = self.data.qpos[self._qpos_adr]
        dq = self.data.qvel[self._dof_adr]
        tau = self._kp * (self._q_ref - q) + self._kd * (self._dq_ref - dq) + self._tau_ff
        self.data.ctrl[:] = np.where(self._enabled, np.clip(tau, -self._effort, self._effort), 0.0)
        if self.elastic_band:
            offset = self._band_anchor - self.data.xpos[self._pelvis]
            self.data.xfrc_applied[self._pelvis, :3] = (
                _BAND_STIFFNESS * offset - _BAND_DAMPING * self.data.qvel[:3]
            )

    def _publish_state(self) -> None:
        state = self._lowstate
        q = self.data.qpos[self._qpos_adr]
        dq = self.data.qvel[self._dof_adr]
        tau = self.data.actuator_force
        for i, slot in enumerate(self._slots.tolist()):
            m = state.motor_state[slot]
            m.mode = int(self._enabled[i])
            m.q, m.dq, m.tau_est = float(q[i]), float(dq[i]), float(tau[i])
        quat = self.data.qpos[3:7]
        imu = state.imu_state
        imu.quaternion = quat.tolist()
        imu.gyroscope = self.data.sensor("imu_gyro").data.tolist()
        imu.accelerometer = self.data.sensor("imu_acc").data.tolist()
        imu.rpy = _rpy(quat)
        state.tick = round(self.data.time * 1000) & 0xFFFFFFFF  # the G1's tick counts milliseconds
        with self._lock:
            self._writer.write(state)
            self.stats.lowstates_published += 1
            self.stats.sim_time_s = float(self.data.time)
            self.stats.pelvis_height_m = float(self.data.xpos[self._pelvis, 2])


def main(
    domain_id: Annotated[int, typer.Option(help="DDS domain id")] = 1,
    interface: Annotated[str, typer.Option(help="network interface")] = "lo",
    duration_s: Annotated[float, typer.Option(help="run this long, then print the counters as JSON")] = 60.0,
    elastic_band: Annotated[bool, typer.Option(help="hold the pelvis up like a gantry")] = True,
) -> None:
    """Run a simulated G1 on DDS for ``duration_s`` (Ctrl-C stops it early)."""
    sim = SimulatedG1(domain_id, interface, elastic_band=elastic_band).start()
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(duration_s)
    print(json.dumps(asdict(sim.stop())))


if __name__ == "__main__":
    typer.run(main)
