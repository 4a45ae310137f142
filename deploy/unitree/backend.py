"""``UnitreeG1Backend``: a G1 on its own DDS interface (rt/lowstate in, rt/lowcmd out) as a RobotBackend.

It speaks the vendor's unitree_hg messages directly through the PyPI ``cyclonedds`` package, with
the vendor SDK's discovery settings by default (``striata.deploy.unitree.dds``): every LowCmd carries motor
mode 1 for the used motors, the configured mode_pr, the mode_machine echoed from the latest
LowState and a valid CRC. No LowState at start within ``connect_timeout_s`` is an error; one that
stops for longer than ``state_timeout_ms`` makes ``read_state`` raise ``StateLost`` (the bridge then
damps), never a silent hang on stale state, and commands can still be written while it is lost.

With ``gain_limits`` (a simulated G1: the model and timestep it is stepped at) every command's gains
are first brought into the region that loop holds (``striata.deploy.gain_stability``); each joint whose gains
had to change is reported once.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from pydantic import BaseModel, ConfigDict, Field

from striata.deploy.gain_stability import GainLimits
from striata.deploy.robot import JointCommand, RobotState, StateLost
from striata.deploy.unitree.crc import lowcmd_crc
from striata.deploy.unitree.dds import delete_entities, open_participant
from striata.deploy.unitree.g1_model import (
    g1_brake_accel,
    g1_effort_limits,
    g1_joint_limits,
    g1_self_collision,
    g1_velocity_limits,
)
from striata.deploy.unitree.hg_idl import LOWCMD_TOPIC, LOWSTATE_TOPIC, LowCmd_, LowState_, zero_lowcmd
from striata.deploy.unitree.motor_map import MotorMap
from striata.deploy.unitree.remote import pressed_buttons
from striata.envs.robots.g1 import G1_JOINT_NAMES

MOTOR_MODE_ENABLE = 1
G1_CONTROL_PERIOD_S = 0.002
_POLL_S = 0.001


class UnitreeG1Config(BaseModel):
    """How to reach a G1 over DDS and which joint order the bridge reports."""

    model_config = ConfigDict(extra="forbid")

    interface: str = Field("lo", min_length=1, description="network interface the G1 is on, e.g. enp3s0")
    domain_id: int = Field(0, ge=0, le=232, description="DDS domain id (the G1 uses 0)")
    peers: tuple[str, ...] = Field(
        (), description="unicast discovery peers (multicast off); default: the vendor's multicast discovery"
    )
    dds_config_xml: str | None = Field(None, description="a Cyclone DDS XML that replaces interface/peers")
    joint_names: tuple[str, ...] = Field(G1_JOINT_NAMES, description="joint order reported to the bridge")
    mode_pr: Literal[0, 1] = Field(0, description="ankle/waist mode: 0 pitch/roll (joint space), 1 A/B")
    state_timeout_ms: float = Field(
        100.0, gt=0, description="no LowState for this long: read_state raises StateLost (the bridge damps)"
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="wait this long for the first LowState")


class G1ConnectionError(RuntimeError):
    """No rt/lowstate from the G1 within connect_timeout_s of starting."""


class UnitreeG1Backend:
    """A RobotBackend for the Unitree G1 29-DoF over its low-level DDS topics."""

    control_period_s = G1_CONTROL_PERIOD_S
    applies_gains = True

    def __init__(
        self,
        config: UnitreeG1Config,
        gain_limits: GainLimits | None = None,
        report: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    ) -> None:
        self.config = config
        self.gain_limits = gain_limits
        self._report = report
        self._reported_joints: set[str] = set()
        self.gains_clipped = 0  # commands whose gains gain_limits changed
        self._map = MotorMap(config.joint_names)
        self.joint_names = list(config.joint_names)
        self.joint_limits = g1_joint_limits(self.joint_names)
        self.effort_limits = g1_effort_limits(self.joint_names)
        self.velocity_limits = g1_velocity_limits(self.joint_names)
        self.brake_accel = g1_brake_accel(self.joint_names)
        self.self_collision = g1_self_collision(self.joint_names)
        self._participant = open_participant(
            config.domain_id, config.interface, config.peers, config.dds_config_xml
        )
        # Best-effort keep-last-1: a late LowState is worthless, and a best-effort reader matches
        # the robot's writer whatever its reliability.
        latest_only = Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(1))
        self._state_topic = Topic(self._participant, LOWSTATE_TOPIC, LowState_)
        self._cmd_topic = Topic(self._participant, LOWCMD_TOPIC, LowCmd_)
        self._reader = DataReader(self._participant, self._state_topic, qos=latest_only)
        self._writer = DataWriter(self._participant, self._cmd_topic, qos=Qos(Policy.History.KeepLast(1)))
        self._lowcmd = zero_lowcmd()
        self._lowcmd.mode_pr = config.mode_pr
        for slot in self._map.slots:
            self._lowcmd.motor_cmd[slot].mode = MOTOR_MODE_ENABLE
        self.lowcmds_sent = 0
        self.lowstates_dropped = 0  # implausible LowStates (see _plausible)
        self.connect_s = float("nan")  # from the DDS entities' creation to the first LowState
        self._latest: LowState_ | None = None
        self._latest_at = time.monotonic()
        try:
            self._wait_for_first_state()
        except G1ConnectionError:
            self.close()
            raise

    def _where(self) -> str:
        if self.config.dds_config_xml is not None:
            return f"the given DDS config, domain_id {self.config.domain_id}"
        return f"interface {self.config.interface!r}, domain_id {self.config.domain_id}"

    def _wait_for_first_state(self) -> None:
        started = time.monotonic()
        deadline = started + self.config.connect_timeout_s
        while time.monotonic() < deadline:
            if self._take_latest():
                self.connect_s = time.monotonic() - started
                return
            time.sleep(_POLL_S)
        raise G1ConnectionError(
            f"no {LOWSTATE_TOPIC} from a G1 within {self.config.connect_timeout_s:g} s on {self._where()}: "
            "is the robot on, on that interface, and in that domain?"
        )

    def _take_latest(self) -> bool:
        samples = [s for s in self._reader.take(N=16) if isinstance(s, LowState_)]
        valid = [s for s in samples if self._plausible(s)]
        self.lowstates_dropped += len(samples) - len(valid)
        if valid:
            self._latest = valid[-1]
            self._latest_at = time.monotonic()
        return bool(valid)

    def _plausible(self, state: LowState_) -> bool:
        """A LowState a controller can use: finite joints and a unit IMU quaternion.

        Unitree's simulator copies ``mjData.sensordata`` into LowState on another thread than the one
        that steps it, with no lock, and ``mj_step`` clears sensordata while it runs: about 2 in 10,000
        such reads give a non-unit quaternion (measured here), and one reached a policy, which computed
        NaN, so the bridge's watchdog fired. Such a state is dropped, as a late one would be, and counted.
        """
        motors = state.motor_state
        joints = [value for s in self._map.slots.tolist() for value in (motors[s].q, motors[s].dq)]
        quaternion_norm = math.sqrt(sum(c * c for c in state.imu_state.quaternion))
        return all(math.isfinite(v) for v in joints) and abs(quaternion_norm - 1.0) < 0.1

    def read_state(self) -> RobotState:
        """The newest LowState in joint order; raises StateLost while it is older than the timeout."""
        if not self._take_latest():
            silent_ms = (time.monotonic() - self._latest_at) * 1e3
            if silent_ms > self.config.state_timeout_ms:
                raise StateLost(
                    f"no {LOWSTATE_TOPIC} from the G1 for {silent_ms:.0f} ms "
                    f"(state_timeout_ms={self.config.state_timeout_ms:g}) on {self._where()}"
                )
        state = self._latest
        motors = state.motor_state
        slots = self._map.slots
        q = np.array([motors[s].q for s in slots], dtype=np.float64)
        dq = np.array([motors[s].dq for s in slots], dtype=np.float64)
        tau = np.array([motors[s].tau_est for s in slots], dtype=np.float64)
        imu = state.imu_state
        return RobotState(
            q=q,
            dq=dq,
            imu_quat_wxyz=np.array(imu.quaternion, dtype=np.float64),
            gyro=np.array(imu.gyroscope, dtype=np.float64),
            tau=tau,
            tick=int(state.tick),
            remote=pressed_buttons(state.wireless_remote),
        )

    def build_lowcmd(self, command: JointCommand) -> LowCmd_:
        """The LowCmd for ``command`` (joint order) with mode_machine echoed and its CRC set."""
        fields = (command.q_target, command.dq_target, command.kp, command.kd, command.tau_ff)
        arrays = [np.asarray(f, dtype=np.float64) for f in fields]
        for name, array in zip(("q_target", "dq_target", "kp", "kd", "tau_ff"), arrays, strict=True):
            if array.shape != (len(self.joint_names),) or not np.all(np.isfinite(array)):
                raise ValueError(f"{name}: need {len(self.joint_names)} finite values, got {array!r}")
        cmd = self._lowcmd
        cmd.mode_machine = self._latest.mode_machine
        motors = cmd.motor_cmd
        for j, slot in enumerate(self._map.slots.tolist()):
            m = motors[slot]
            m.q = float(arrays[0][j])
            m.dq = float(arrays[1][j])
            m.kp = float(arrays[2][j])
            m.kd = float(arrays[3][j])
            m.tau = float(arrays[4][j])
        cmd.crc = lowcmd_crc(cmd)
        return cmd

    def write_command(self, command: JointCommand) -> None:
        """Send ``command`` (gains within ``gain_limits`` first, if set); works while the state is lost."""
        if self.gain_limits is not None:
            command = self._limit_gains(command)
        self._writer.write(self.build_lowcmd(command))
        self.lowcmds_sent += 1

    def _limit_gains(self, command: JointCommand) -> JointCommand:
        limits = self.gain_limits
        kp, kd = limits.clip(command.kp, command.kd)
        changed = (kp != command.kp) | (kd != command.kd)
        if not changed.any():
            return command
        self.gains_clipped += 1
        for j in np.flatnonzero(changed).tolist():
            name = self.joint_names[j]
            if name not in self._reported_joints:
                self._reported_joints.add(name)
                self._report(
                    f"[bridge] gains: {limits.describe(j, float(command.kp[j]), float(command.kd[j]))}; "
                    f"sending kp={kp[j]:.4g} kd={kd[j]:.4g} on this joint instead"
                )
        return JointCommand(command.q_target, command.dq_target, kp, kd, command.tau_ff)

    def close(self) -> None:
        delete_entities(self._reader, self._writer, self._state_topic, self._cmd_topic, self._participant)
