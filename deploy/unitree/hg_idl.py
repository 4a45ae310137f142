"""The Unitree G1's low-level DDS message types (``unitree_hg``), identical to the vendor's IDL.

Type names, field names, field types, array sizes and field order match the vendor's generated
``unitree_sdk2py/idl/unitree_hg/msg/dds_`` modules exactly: DDS matches a reader and a writer by
type name and layout, so any difference here means the robot silently never sees our commands.

LowCmd_ and LowState_ travel at 500 Hz, and cyclonedds' generic serializer spends 0.4-0.6 ms per
message in Python (a quarter of a 2 ms tick), so both carry a fixed-layout XCDR1 little-endian codec
that gives the same bytes in tens of microseconds; any other encoding request (a caller's buffer,
big-endian, XCDR2) goes to the generic serializer. Tests compare the two byte for byte.
"""

# No ``from __future__ import annotations`` here: cyclonedds resolves the field annotations itself.
import struct
from dataclasses import dataclass

import cyclonedds.idl as idl
import cyclonedds.idl.annotations as annotate
import cyclonedds.idl.types as types

NUM_MOTOR_SLOTS = 35
LOWCMD_TOPIC = "rt/lowcmd"
LOWSTATE_TOPIC = "rt/lowstate"

_CDR_LE_HEADER = b"\x00\x01\x00\x00"
# CDR alignment counts from the end of the encapsulation header and a struct adds none of its own,
# so the first motor of each array sits tighter (1 pad byte) than the rest (3).
_LOWCMD_CDR = struct.Struct("<2B" + "Bx5fI" + "B3x5fI" * (NUM_MOTOR_SLOTS - 1) + "5I")
_LOWSTATE_CDR = struct.Struct("<2I2B2xI13fh" + "Bx4f2hf7I" + "B3x4f2hf7I" * (NUM_MOTOR_SLOTS - 1) + "40B5I")
_MOTOR_CMD_VALUES = 7
_MOTOR_STATE_VALUES = 15


def _fast_path(buffer, endianness, use_version_2, has_header: bool = True, data: bytes = b"") -> bool:
    if data and data[:2] != _CDR_LE_HEADER[:2]:
        return False
    return buffer is None and endianness is None and not use_version_2 and has_header


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorCmd_"):
    mode: types.uint8
    q: types.float32
    dq: types.float32
    tau: types.float32
    kp: types.float32
    kd: types.float32
    reserve: types.uint32


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorState_"):
    mode: types.uint8
    q: types.float32
    dq: types.float32
    ddq: types.float32
    tau_est: types.float32
    temperature: types.array[types.int16, 2]
    vol: types.float32
    sensor: types.array[types.uint32, 2]
    motorstate: types.uint32
    reserve: types.array[types.uint32, 4]


@dataclass
@annotate.final
@annotate.autoid("sequential")
class IMUState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.IMUState_"):
    quaternion: types.array[types.float32, 4]  # w, x, y, z
    gyroscope: types.array[types.float32, 3]
    accelerometer: types.array[types.float32, 3]
    rpy: types.array[types.float32, 3]
    temperature: types.int16


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowCmd_"):
    mode_pr: types.uint8
    mode_machine: types.uint8
    motor_cmd: types.array[MotorCmd_, 35]
    reserve: types.array[types.uint32, 4]
    crc: types.uint32

    def serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
        if not _fast_path(buffer, endianness, use_version_2):
            return super().serialize(buffer, endianness, use_version_2)
        values: list = [self.mode_pr, self.mode_machine]
        for m in self.motor_cmd:
            values += (m.mode, m.q, m.dq, m.tau, m.kp, m.kd, m.reserve)
        values += self.reserve
        values.append(self.crc)
        return _CDR_LE_HEADER + _LOWCMD_CDR.pack(*values)

    @classmethod
    def deserialize(cls, data: bytes, has_header: bool = True, use_version_2=None) -> "LowCmd_":
        if not _fast_path(None, None, use_version_2, has_header, data):
            return super().deserialize(data, has_header, use_version_2)
        v = _LOWCMD_CDR.unpack_from(data, len(_CDR_LE_HEADER))
        n = _MOTOR_CMD_VALUES
        motors = [MotorCmd_(*v[2 + n * i : 2 + n * (i + 1)]) for i in range(NUM_MOTOR_SLOTS)]
        tail = 2 + n * NUM_MOTOR_SLOTS
        return cls(v[0], v[1], motors, list(v[tail : tail + 4]), v[tail + 4])


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowState_"):
    version: types.array[types.uint32, 2]
    mode_pr: types.uint8
    mode_machine: types.uint8
    tick: types.uint32
    imu_state: IMUState_
    motor_state: types.array[MotorState_, 35]
    wireless_remote: types.array[types.uint8, 40]
    reserve: types.array[types.uint32, 4]
    crc: types.uint32

    def serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
        if not _fast_path(buffer, endianness, use_version_2):
            return super().serialize(buffer, endianness, use_version_2)
        imu = self.imu_state
        values: list = [*self.version, self.mode_pr, self.mode_machine, self.tick]
        values += (*imu.quaternion, *imu.gyroscope, *imu.accelerometer, *imu.rpy, imu.temperature)
        for m in self.motor_state:
            values += (m.mode, m.q, m.dq, m.ddq, m.tau_est, *m.temperature, m.vol, *m.sensor, m.motorstate)
            values += m.reserve
        values += self.wireless_remote
        values += self.reserve
        values.append(self.crc)
        return _CDR_LE_HEADER + _LOWSTATE_CDR.pack(*values)

    @classmethod
    def deserialize(cls, data: bytes, has_header: bool = True, use_version_2=None) -> "LowState_":
        if not _fast_path(None, None, use_version_2, has_header, data):
            return super().deserialize(data, has_header, use_version_2)
        v = _LOWSTATE_CDR.unpack_from(data, len(_CDR_LE_HEADER))
        imu = IMUState_(list(v[5:9]), list(v[9:12]), list(v[12:15]), list(v[15:18]), v[18])
        n = _MOTOR_STATE_VALUES
        motors = []
        for i in range(NUM_MOTOR_SLOTS):
            m = v[19 + n * i : 19 + n * (i + 1)]
            motors.append(MotorState_(*m[:5], list(m[5:7]), m[7], list(m[8:10]), m[10], list(m[11:15])))
        tail = 19 + n * NUM_MOTOR_SLOTS
        return cls(
            list(v[0:2]),
            v[2],
            v[3],
            v[4],
            imu,
            motors,
            bytes(v[tail : tail + 40]),  # as the generic deserializer gives uint8 arrays
            list(v[tail + 40 : tail + 44]),
            v[tail + 44],
        )


def zero_motor_cmd() -> MotorCmd_:
    return MotorCmd_(mode=0, q=0.0, dq=0.0, tau=0.0, kp=0.0, kd=0.0, reserve=0)


def zero_lowcmd() -> LowCmd_:
    """A LowCmd with every motor disabled (mode 0) and no gains; crc left at 0."""
    return LowCmd_(
        mode_pr=0,
        mode_machine=0,
        motor_cmd=[zero_motor_cmd() for _ in range(NUM_MOTOR_SLOTS)],
        reserve=[0, 0, 0, 0],
        crc=0,
    )


def zero_motor_state() -> MotorState_:
    return MotorState_(
        mode=0,
        q=0.0,
        dq=0.0,
        ddq=0.0,
        tau_est=0.0,
        temperature=[0, 0],
        vol=0.0,
        sensor=[0, 0],
        motorstate=0,
        reserve=[0, 0, 0, 0],
    )


def zero_lowstate() -> LowState_:
    return LowState_(
        version=[0, 0],
        mode_pr=0,
        mode_machine=0,
        tick=0,
        imu_state=IMUState_(
            quaternion=[1.0, 0.0, 0.0, 0.0],
            gyroscope=[0.0, 0.0, 0.0],
            accelerometer=[0.0, 0.0, 0.0],
            rpy=[0.0, 0.0, 0.0],
            temperature=0,
        ),
        motor_state=[zero_motor_state() for _ in range(NUM_MOTOR_SLOTS)],
        wireless_remote=[0] * 40,
        reserve=[0, 0, 0, 0],
        crc=0,
    )
