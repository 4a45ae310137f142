"""Feetech STS servo arms (SO-100 / SO-101) through the vendor's PyPI SDK, ``feetech-servo-sdk``.

The arm is a chain of STS3215 servos on one half-duplex serial bus (1 Mbaud). Each tick is one
sync read of present position + speed (addresses 56-59) for all servos and one sync write of goal
positions (address 42). Positions are 4096 steps per turn; a joint's calibration is the raw step
at which it is at 0 rad (``homing_offset``) and its sign (``direction``). Signed registers use
bit 15 as the sign (sign-magnitude), as the SDK's ``SCS_TOHOST`` decodes them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from striata.deploy.arms.sdk import ArmJoint

STEPS_PER_TURN = 4096
RAD_PER_STEP = 2.0 * math.pi / STEPS_PER_TURN
ADDR_TORQUE_ENABLE = 40
ADDR_GOAL_POSITION = 42
ADDR_PRESENT_POSITION = 56  # 2 bytes position, then 2 bytes speed (steps/s)
ADDR_PRESENT_SPEED = 58
SIGN_BIT = 15
STS3215_STALL_TORQUE_NM = 2.94  # 30 kg cm, the 12 V STS3215; the 7.4 V one gives ~1.9: set per joint
STS3215_MAX_SPEED_RAD_S = 4.7  # no-load 0.222 s per 60 degrees (datasheet)


class FeetechBusError(RuntimeError):
    """The servo bus cannot be opened, a servo does not answer, or a packet fails."""


class FeetechJoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    id: int = Field(ge=0, le=252, description="servo id on the bus")
    homing_offset: int = Field(2048, ge=0, lt=STEPS_PER_TURN, description="raw step at 0 rad")
    direction: Literal[1, -1] = 1
    lower: float = Field(description="rad")
    upper: float = Field(description="rad")
    effort: float = Field(STS3215_STALL_TORQUE_NM, gt=0, description="N m")
    velocity: float = Field(STS3215_MAX_SPEED_RAD_S, gt=0, description="rad/s")

    @model_validator(mode="after")
    def _ordered(self) -> FeetechJoint:
        if not self.lower < self.upper:
            raise ValueError(f"joint {self.name!r}: lower {self.lower} must be below upper {self.upper}")
        return self


def _so101_joints() -> list[FeetechJoint]:
    """SO-101 follower: servo ids 1..6, limits (rad) of the SO-101 URDF, mid-range homing."""
    limits = {
        "shoulder_pan": (-1.91986, 1.91986),
        "shoulder_lift": (-1.74533, 1.74533),
        "elbow_flex": (-1.69, 1.69),
        "wrist_flex": (-1.65806, 1.65806),
        "wrist_roll": (-2.74385, 2.84121),
        "gripper": (-0.174533, 1.74533),
    }
    return [
        FeetechJoint(name=n, id=i + 1, lower=lo, upper=hi) for i, (n, (lo, hi)) in enumerate(limits.items())
    ]


class FeetechArmConfig(BaseModel):
    """A Feetech arm: the bus and, per joint, servo id, calibration and limits."""

    model_config = ConfigDict(extra="forbid")

    name: str = "so101"
    port: str = Field("/dev/ttyACM0", min_length=1, description="serial device of the servo bus")
    baudrate: Literal[115200, 500000, 1000000] = 1000000
    control_period_s: float = Field(0.02, gt=0, description="bridge tick; one sync read + write each")
    read_retries: int = Field(
        2, ge=0, le=10, description="sync reads retried after a lost or corrupt status packet"
    )
    joints: list[FeetechJoint] = Field(default_factory=_so101_joints, min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> FeetechArmConfig:
        for key in ("name", "id"):
            values = [getattr(j, key) for j in self.joints]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"joints: {key} used twice: {repeated}")
        return self


def load_feetech_config(path: Path | None, port: str | None = None) -> FeetechArmConfig:
    """The arm config from a YAML file (default: SO-101), with ``port`` overriding the file's."""
    data = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise FeetechBusError(f"{path}: expected a mapping of arm settings")
    if port is not None:
        data["port"] = port
    return FeetechArmConfig(**data)


def _to_host(value: int) -> int:
    return -(value & ~(1 << SIGN_BIT)) if value & (1 << SIGN_BIT) else value


def to_sign_magnitude(value: int) -> int:
    """A signed register as the servo sends it (bit 15 the sign), the magnitude saturated to 15 bits."""
    magnitude = min(abs(value), (1 << SIGN_BIT) - 1)
    return magnitude | (1 << SIGN_BIT) if value < 0 else magnitude


def steps_to_rad(steps: np.ndarray, offset: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Raw servo steps to joint angles (rad) for joints calibrated at ``offset`` with ``direction``."""
    return direction * (steps - offset) * RAD_PER_STEP


def rad_to_steps(q: np.ndarray, offset: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Joint angles (rad) to raw steps, rounded and clipped to the servo's 0..4095."""
    steps = np.rint(offset + direction * np.asarray(q) / RAD_PER_STEP)
    return np.clip(steps, 0, STEPS_PER_TURN - 1).astype(np.int64)


class FeetechArm:
    """``ArmSDK`` adapter for a Feetech STS bus, driving the vendor's PortHandler/PacketHandler."""

    def __init__(self, config: FeetechArmConfig) -> None:
        import scservo_sdk as scs

        self._scs = scs
        self.config = config
        self.name = config.name
        self.control_period_s = config.control_period_s
        self.joints = tuple(ArmJoint(j.name, j.lower, j.upper, j.effort, j.velocity) for j in config.joints)
        self._ids = [j.id for j in config.joints]
        self._offset = np.array([j.homing_offset for j in config.joints], dtype=np.float64)
        self._direction = np.array([j.direction for j in config.joints], dtype=np.float64)
        self._port = scs.PortHandler(config.port)
        try:
            opened = self._port.openPort() and self._port.setBaudRate(config.baudrate)
        except Exception as exc:  # pyserial raises SerialException/OSError for a missing device
            raise FeetechBusError(f"port: cannot open {config.port!r} ({exc})") from None
        if not opened:
            raise FeetechBusError(f"port: cannot open {config.port!r} at {config.baudrate} baud")
        self._packet = scs.PacketHandler(0)  # STS servos: little-endian registers
        try:
            missing = [i for i in self._ids if self._packet.ping(self._port, i)[1] != scs.COMM_SUCCESS]
            if missing:
                raise FeetechBusError(f"joints: servo ids {missing} do not answer on {config.port!r}")
        except FeetechBusError:
            self._port.closePort()
            raise
        self._sync_read = scs.GroupSyncRead(self._port, self._packet, ADDR_PRESENT_POSITION, 4)
        for servo in self._ids:
            self._sync_read.addParam(servo)
        self._sync_write = scs.GroupSyncWrite(self._port, self._packet, ADDR_GOAL_POSITION, 2)
        self._velocities = np.zeros(len(self._ids))

    def _check(self, result: int, what: str) -> None:
        if result != self._scs.COMM_SUCCESS:
            raise FeetechBusError(f"{what} on {self.config.port!r}: {self._packet.getTxRxResult(result)}")

    def _read_raw(self) -> tuple[np.ndarray, np.ndarray]:
        # Half-duplex buses drop the odd status packet (a servo answering late, a collision):
        # retry before failing the tick, as LeRobot's motor bus does.
        for _ in range(self.config.read_retries):
            if self._sync_read.txRxPacket() == self._scs.COMM_SUCCESS:
                break
        else:
            self._check(self._sync_read.txRxPacket(), "sync read of present position")
        position = [_to_host(self._sync_read.getData(i, ADDR_PRESENT_POSITION, 2)) for i in self._ids]
        speed = [_to_host(self._sync_read.getData(i, ADDR_PRESENT_SPEED, 2)) for i in self._ids]
        return np.array(position, dtype=np.float64), np.array(speed, dtype=np.float64)

    def steps_to_rad(self, steps: np.ndarray) -> np.ndarray:
        return steps_to_rad(steps, self._offset, self._direction)

    def rad_to_steps(self, q: np.ndarray) -> np.ndarray:
        return rad_to_steps(q, self._offset, self._direction)

    def read_positions(self) -> np.ndarray:
        """Present positions (rad); also samples the velocities read_velocities returns."""
        position, speed = self._read_raw()
        self._velocities = self._direction * speed * RAD_PER_STEP
        return self.steps_to_rad(position)

    def read_velocities(self) -> np.ndarray:
        return self._velocities.copy()

    def command_positions(self, q: np.ndarray) -> None:
        scs = self._scs
        self._sync_write.clearParam()
        for servo, step in zip(self._ids, self.rad_to_steps(q).tolist(), strict=True):
            self._sync_write.addParam(servo, [scs.SCS_LOBYTE(step), scs.SCS_HIBYTE(step)])
        self._check(self._sync_write.txPacket(), "sync write of goal position")

    def set_torque(self, enabled: bool) -> None:
        if enabled:
            # The goal register still holds the last target: aim it at where the arm is before
            # switching on, so enabling torque never jumps.
            self.command_positions(self.read_positions())
        for servo in self._ids:
            result, _ = self._packet.write1ByteTxRx(self._port, servo, ADDR_TORQUE_ENABLE, int(enabled))
            self._check(result, f"torque enable of servo {servo}")

    def close(self) -> None:
        self._port.closePort()
