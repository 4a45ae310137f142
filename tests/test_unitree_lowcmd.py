"""Unitree G1 message layer: IDL identity, LowCmd packing + CRC against vendor vectors, motor mapping."""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from cyclonedds.idl import IdlStruct

from striata.deploy.unitree.crc import LOWCMD_STRUCT, crc32_words, crc_is_valid, lowcmd_crc, pack_lowcmd
from striata.deploy.unitree.hg_idl import (
    IMUState_,
    LowCmd_,
    LowState_,
    MotorCmd_,
    MotorState_,
    zero_lowcmd,
    zero_lowstate,
)
from striata.deploy.unitree.motor_map import G1_MOTOR_INDEX, MotorMap, MotorMapError
from striata.envs.robots.g1 import G1_JOINT_NAMES

VECTORS = Path(os.environ["STRIATA_DATA"]) / "unitree_hg_lowcmd_crc_vectors.json"


def _vectors() -> list[dict]:
    return json.loads(VECTORS.read_text())["vectors"]


def _lowcmd_from_vector(v: dict) -> LowCmd_:
    return LowCmd_(
        mode_pr=v["mode_pr"],
        mode_machine=v["mode_machine"],
        motor_cmd=[MotorCmd_(**m) for m in v["motor_cmd"]],
        reserve=list(v["reserve"]),
        crc=0,
    )


def _reference_crc(words: list[int]) -> int:
    """The algorithm exactly as the vector file describes it, bit by bit."""
    crc = 0xFFFFFFFF
    for word in words:
        for bit in range(31, -1, -1):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
            if (word >> bit) & 1:
                crc ^= 0x04C11DB7
    return crc


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_lowcmd_packing_and_crc_match_vendor_vectors(vector: dict) -> None:
    cmd = _lowcmd_from_vector(vector)
    packed = pack_lowcmd(cmd)
    assert len(packed) == 1004
    assert packed[:1000].hex() == vector["packed_hex_without_crc_word"]
    assert lowcmd_crc(cmd) == vector["crc"]
    cmd.crc = vector["crc"]
    assert crc_is_valid(cmd)
    cmd.motor_cmd[0].q += 0.5
    assert not crc_is_valid(cmd)


def test_vector_file_covers_the_cases_we_rely_on() -> None:
    names = {v["name"] for v in _vectors()}
    assert {"all_zero", "damping_mode_machine_5"} <= names
    assert sum(name.startswith("random") for name in names) >= 3


def test_fast_crc_equals_the_described_bitwise_algorithm_on_random_words() -> None:
    rng = random.Random(5)
    for length in (1, 2, 7, 250):
        words = [rng.getrandbits(32) for _ in range(length)]
        data = struct.pack(f"<{length}I", *words)
        assert crc32_words(data) == _reference_crc(words)
    with pytest.raises(ValueError, match="whole 32-bit words"):
        crc32_words(b"abc")


def test_idl_types_match_the_vendor_definitions() -> None:
    """Type names, field names/order and serialized sizes of the vendor's unitree_hg IDL."""
    expected = {
        MotorCmd_: ["mode", "q", "dq", "tau", "kp", "kd", "reserve"],
        MotorState_: [
            "mode",
            "q",
            "dq",
            "ddq",
            "tau_est",
            "temperature",
            "vol",
            "sensor",
            "motorstate",
            "reserve",
        ],
        IMUState_: ["quaternion", "gyroscope", "accelerometer", "rpy", "temperature"],
        LowCmd_: ["mode_pr", "mode_machine", "motor_cmd", "reserve", "crc"],
        LowState_: [
            "version",
            "mode_pr",
            "mode_machine",
            "tick",
            "imu_state",
            "motor_state",
            "wireless_remote",
            "reserve",
            "crc",
        ],
    }
    for cls, fields in expected.items():
        assert cls.__idl__.idl_transformed_typename == f"unitree_hg::msg::dds_::{cls.__name__}"
        assert list(cls.__dataclass_fields__) == fields
    # 4-byte CDR header + body: the sizes the vendor's messages have on the wire.
    assert len(IdlStruct.serialize(zero_lowcmd())) == 1004
    assert len(IdlStruct.serialize(zero_lowstate())) == 2092
    assert LOWCMD_STRUCT.size == 1004


def _random_lowcmd(rng: np.random.Generator) -> LowCmd_:
    cmd = zero_lowcmd()
    cmd.mode_pr, cmd.mode_machine = int(rng.integers(0, 2)), int(rng.integers(0, 256))
    for m in cmd.motor_cmd:
        m.mode = int(rng.integers(0, 2))
        m.q, m.dq, m.tau, m.kp, m.kd = (float(np.float32(x)) for x in rng.normal(size=5))
        m.reserve = int(rng.integers(0, 2**32))
    cmd.reserve = [int(x) for x in rng.integers(0, 2**32, size=4)]
    cmd.crc = int(rng.integers(0, 2**32))
    return cmd


def _random_lowstate(rng: np.random.Generator) -> LowState_:
    state = zero_lowstate()
    state.version = [int(x) for x in rng.integers(0, 2**32, size=2)]
    state.mode_pr, state.mode_machine, state.tick = 1, int(rng.integers(0, 256)), int(rng.integers(0, 2**32))
    imu = state.imu_state
    imu.quaternion = [float(np.float32(x)) for x in rng.normal(size=4)]
    imu.gyroscope, imu.accelerometer, imu.rpy = (
        [float(np.float32(x)) for x in rng.normal(size=3)] for _ in range(3)
    )
    imu.temperature = int(rng.integers(-100, 100))
    for m in state.motor_state:
        m.mode = int(rng.integers(0, 256))
        m.q, m.dq, m.ddq, m.tau_est, m.vol = (float(np.float32(x)) for x in rng.normal(size=5))
        m.temperature = [int(x) for x in rng.integers(-(2**15), 2**15, size=2)]
        m.sensor = [int(x) for x in rng.integers(0, 2**32, size=2)]
        m.motorstate = int(rng.integers(0, 2**32))
        m.reserve = [int(x) for x in rng.integers(0, 2**32, size=4)]
    state.wireless_remote = [int(x) for x in rng.integers(0, 256, size=40)]
    state.reserve = [int(x) for x in rng.integers(0, 2**32, size=4)]
    state.crc = int(rng.integers(0, 2**32))
    return state


def test_fast_codecs_give_the_generic_cyclonedds_bytes_and_back() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        for msg in (_random_lowcmd(rng), _random_lowstate(rng)):
            cls = type(msg)
            fast = msg.serialize()
            generic = IdlStruct.serialize(msg)
            assert fast == generic
            decoded = cls.deserialize(fast)
            assert decoded == cls.__idl__.deserialize(generic)
            assert decoded.serialize() == fast
            # Other encodings are still served, by the generic path.
            v2 = msg.serialize(use_version_2=True)
            assert v2[:2] != fast[:2]
            assert cls.deserialize(v2) == decoded


def test_motor_map_in_sdk_order_is_the_identity() -> None:
    assert list(G1_MOTOR_INDEX) == list(G1_JOINT_NAMES)
    assert G1_MOTOR_INDEX["left_hip_pitch_joint"] == 0
    assert G1_MOTOR_INDEX["waist_yaw_joint"] == 12
    assert G1_MOTOR_INDEX["right_wrist_yaw_joint"] == 28
    mapping = MotorMap(G1_JOINT_NAMES)
    np.testing.assert_array_equal(mapping.slots, np.arange(29))
    slots = mapping.to_slots(np.arange(29.0))
    assert slots.shape == (35,)
    np.testing.assert_array_equal(slots[29:], 0.0)


def test_motor_map_maps_a_policy_order_by_name() -> None:
    rng = np.random.default_rng(3)
    policy_order = [G1_JOINT_NAMES[i] for i in rng.permutation(29)]
    mapping = MotorMap(policy_order)
    values = rng.normal(size=29)  # per joint, in the policy's order
    slots = mapping.to_slots(values, fill=np.nan)
    for name, value in zip(policy_order, values, strict=True):
        assert slots[G1_MOTOR_INDEX[name]] == value
    assert np.all(np.isnan(slots[29:]))
    np.testing.assert_array_equal(mapping.from_slots(slots), values)
    # A subset (e.g. legs only) maps too; the other slots keep the fill value.
    legs = MotorMap(["right_knee_joint", "left_knee_joint"])
    np.testing.assert_array_equal(legs.to_slots(np.array([1.0, 2.0]))[[3, 9]], [2.0, 1.0])


def test_motor_map_refuses_unknown_and_duplicate_names() -> None:
    with pytest.raises(MotorMapError, match="not G1 motors: \\['left_hand_joint'\\]"):
        MotorMap([*G1_JOINT_NAMES[:-1], "left_hand_joint"])
    with pytest.raises(MotorMapError, match="listed twice: \\['waist_yaw_joint'\\]"):
        MotorMap([*G1_JOINT_NAMES[:-1], "waist_yaw_joint"])


def test_remote_buttons_decode_from_the_vendor_bit_layout() -> None:
    from striata.deploy.protocol import REMOTE_BUTTONS
    from striata.deploy.unitree.remote import BUTTON_BITS, encode_buttons, pressed_buttons

    assert set(BUTTON_BITS) == set(REMOTE_BUTTONS)
    raw = bytearray(40)
    raw[2], raw[3] = 0b0000_0100, 0b0000_0001  # bit 2 start, bit 8 A
    assert pressed_buttons(bytes(raw)) == ("start", "A")
    assert pressed_buttons(encode_buttons(["left", "R1"])) == ("R1", "left")
    assert pressed_buttons(bytes(40)) == ()
