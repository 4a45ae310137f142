"""The wire helper under the three protocols (striata.common.wire): what it packs, what it refuses and how
each protocol names what it refuses, without sockets."""

from __future__ import annotations

from typing import ClassVar

import msgpack
import numpy as np
import pytest

from striata.common import intervention_port as port
from striata.common.wire import Message, Reasons, Wire, WireError
from striata.deploy import protocol as bridge
from striata.reward_server import protocol as reward

PORT_INFO = port.PortInfo(
    actor_id=0, task="panda_pick", task_text="pick", num_envs=2, action_dim=3, action_low=(-1.0,) * 3,
    action_high=(1.0,) * 3, control_dt=0.1, cameras=("front", "side"),
)  # fmt: skip
SCORE = {
    "v": 1, "type": "score", "request_id": 1, "actor_id": 0, "episode_id": 0, "t": 0, "task": "pick",
    "mode": "progress", "deadline_ms": 500,
    "images": [{"camera": "front", "role": "frame", "encoding": "raw", "shape": [4, 4, 3]}],
}  # fmt: skip


class Probe(Message):
    TYPE: ClassVar[str] = "probe"

    count: int
    values: list[float]


class ProbeError(WireError):
    pass


PROBE = Wire(version=3, max_bytes=256, error=ProbeError, reasons=Reasons(), messages=(Probe,))


def packed(**fields: object) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def refusal(wire: Wire, data: bytes, context: object = None) -> WireError:
    with pytest.raises(wire.error) as caught:
        wire.decode(data, context)
    return caught.value


def test_a_message_round_trips_with_numpy_values() -> None:
    data = PROBE.pack({"type": "probe", "count": np.int64(4), "values": np.array([0.5, 2.0], np.float32)})
    assert msgpack.unpackb(data) == {"v": 3, "type": "probe", "count": 4, "values": [0.5, 2.0]}
    message = PROBE.decode(data)
    assert isinstance(message, Probe) and (message.count, message.values) == (4, [0.5, 2.0])
    with pytest.raises(TypeError, match="object"):
        PROBE.pack({"type": "probe", "count": object()})


def test_the_protocols_pack_the_bytes_their_documents_describe() -> None:
    """Clients written from PROTOCOL.md, INTERVENTION.md and the reward protocol's text build these maps."""
    assert bridge.hello_message("c", ["a", "b"]) == packed(
        v=2, type="hello", client="c", joint_names=["a", "b"]
    )
    q = np.array([0.25, -1.0])
    assert bridge.command_message(3, 7, "hold", q, q, q, q, q) == packed(
        v=2, type="command", seq=3, session=7, phase="hold", q_target=[0.25, -1.0], dq_target=[0.25, -1.0],
        kp=[0.25, -1.0], kd=[0.25, -1.0], tau_ff=[0.25, -1.0],
    )  # fmt: skip
    assert reward.pack({"type": "health"}) == packed(v=1, type="health")
    assert port.WIRE.pack({"type": "pong"}) == packed(v=1, type="pong")


def test_an_oversized_message_is_refused_before_it_is_unpacked() -> None:
    big = PROBE.pack({"type": "probe", "count": 1, "values": [0.0] * 100})
    error = refusal(PROBE, big)
    assert (error.reason, error.detail) == ("too_large", f"message: {len(big)} bytes, more than 256")
    assert PROBE.unpack(big, max_bytes=len(big))["count"] == 1  # a client reading the other way sets its own
    assert refusal(bridge.WIRE, bytes(bridge.MAX_MESSAGE_BYTES + 1), 2).reason == "too_large"
    assert refusal(port.WIRE, bytes(port.MAX_MESSAGE_BYTES + 1), PORT_INFO).reason == "too_large"
    # The reward server names the bad part instead of a rule: its replies say ``header: ...``.
    error = refusal(reward.WIRE, bytes(reward.MAX_HEADER_BYTES + 1), reward.Limits())
    assert error.reason == "header" and str(error).startswith("header: 65537 bytes")


@pytest.mark.parametrize("version", [None, 2, 4, True, 3.0, "3"])
def test_a_wrong_version_is_refused(version: object) -> None:
    error = refusal(PROBE, packed(v=version, type="probe", count=1, values=[]))
    assert (
        error.reason == "bad_version" and error.detail == f"v: expected protocol version 3, got {version!r}"
    )


def test_each_protocol_names_a_wrong_version_its_own_way() -> None:
    assert refusal(bridge.WIRE, packed(v=True, type="hello"), 2).reason == "bad_version"
    assert refusal(port.WIRE, packed(v=1.0, type="ping"), PORT_INFO).reason == "bad_version"
    assert str(refusal(reward.WIRE, packed(v=99, type="health"))) == "v: expected protocol version 1, got 99"


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # a byte msgpack never uses
        b"\x93\x01",  # truncated
        packed(v=3, type="probe", count=1, values=[], when=msgpack.Timestamp(1)),
        packed(v=3, type="probe", count=1, values=[msgpack.ExtType(5, b"x")]),
        msgpack.packb({1: 2}),  # a map key that is not a string
    ],
)
def test_what_is_not_plain_msgpack_is_refused(data: bytes) -> None:
    assert refusal(PROBE, data).reason == "not_msgpack"


def test_a_message_that_is_not_a_map_of_string_keys_with_a_type_is_refused() -> None:
    assert refusal(PROBE, msgpack.packb([1, 2])).detail == "message: expected a map, got list"
    assert refusal(PROBE, msgpack.packb({b"v": 3}, use_bin_type=True)).reason == "not_a_map"
    assert refusal(PROBE, packed(v=3, type=7)).detail == "type: expected a string, got 7"
    error = refusal(PROBE, packed(v=3, type="launch"))
    assert (error.reason, error.detail) == ("unknown_type", "type: unknown 'launch'; allowed: probe")


def test_a_wrong_field_names_the_field_and_the_value() -> None:
    assert refusal(PROBE, packed(v=3, type="probe", count="4", values=[])).detail == (
        "count: should be a valid integer, got '4'"
    )
    assert refusal(PROBE, packed(v=3, type="probe", count=True, values=[])).reason == "bad_field"
    assert refusal(PROBE, packed(v=3, type="probe", count=1, values=[0.5, "x"])).detail == (
        "values[1]: should be a valid number, got 'x'"
    )
    assert refusal(PROBE, packed(v=3, type="probe", values=[])).detail == "count: missing"
    long = refusal(PROBE, packed(v=3, type="probe", count="y" * 200, values=[])).detail
    assert long.endswith("...") and len(long) < 120  # a peer's value is quoted, not all of it


def test_the_bridge_refuses_with_its_documented_reasons() -> None:
    n = 3
    good = {"v": 2, "type": "command", "seq": 1, "session": 5, "phase": "hold"}
    arrays = {key: [0.0] * n for key in bridge.COMMAND_ARRAYS}
    cases = {
        "bad_field": {**good, **arrays, "seq": "one"},
        "bad_size": {**good, **arrays, "kp": [1.0] * (n + 1)},
        "not_finite": {**good, **arrays, "tau_ff": [0.0, float("inf"), 0.0]},
        "bad_phase": {**good, **arrays, "phase": "dance"},
        "bad_gains": {**good, **arrays, "kd": [0.0, -1.0, 0.0]},
        "bad_type": {"v": 2},
        "unknown_type": {"v": 2, "type": "welcome"},
    }
    for reason, fields in cases.items():
        error = refusal(bridge.WIRE, msgpack.packb(fields), n)
        assert isinstance(error, bridge.ProtocolError) and error.reason == reason, (reason, error)
    error = refusal(bridge.WIRE, msgpack.packb({**good, **arrays, "seq": "one"}), n)
    assert error.detail == "seq: should be a valid integer, got 'one'"
    # Arrays are required in a position phase and ignored (whatever they hold) in the others.
    assert (
        refusal(bridge.WIRE, msgpack.packb(good), n).detail == "q_target: required in phase 'hold', got None"
    )
    damping = bridge.decode_client_message(msgpack.packb({**good, "phase": "damping", "kp": "x"}), n)
    assert isinstance(damping, bridge.Command) and damping.kp is None
    clear = bridge.decode_client_message(msgpack.packb({"v": 2, "type": "clear_estop", "session": 5}), n)
    assert isinstance(clear, bridge.ClearEstop) and clear.session == 5


def test_the_controller_reads_a_state_into_a_typed_message() -> None:
    state = {
        "v": 2, "type": "state", "seq": 4, "time": 1.5, "tick": 9, "q": [0, 1], "dq": [0.5, 0], "tau": None,
        "imu_quat": [1, 0, 0, 0], "gyro": [0, 0, 0.25], "ack_seq": 3, "mode": "position", "remote": ["A"],
    }  # fmt: skip
    read = bridge.decode_state(state, 2)
    assert read.imu_quat_wxyz.tolist() == [1, 0, 0, 0] and read.q.dtype == np.float64 and read.tau is None
    assert (read.ack_seq, read.mode, read.remote) == (3, "position", ["A"])
    with pytest.raises(bridge.ProtocolError, match="gyro: has 2 entries") as caught:
        bridge.decode_state({**state, "gyro": [0, 0]}, 2)
    assert caught.value.reason == "bad_size"


def test_the_reward_server_names_the_bad_field_as_the_reason() -> None:
    limits = reward.Limits(max_images=2, max_side=8, max_task_chars=10)
    cases = {
        "t: should be a valid integer, got 'zero'": {**SCORE, "t": "zero"},
        "request_id: should be a valid integer, got True": {**SCORE, "request_id": True},
        "deadline_ms: should be a finite number, got nan": {**SCORE, "deadline_ms": float("nan")},
        "task: 11 characters, more than 10, got 'xxxxxxxxxxx'": {**SCORE, "task": "x" * 11},
        "images: 3 images, more than 2, got": {**SCORE, "images": SCORE["images"] * 3},
        "images[0].role: should be 'frame' or 'reference', got 'goal'": {
            **SCORE, "images": [{**SCORE["images"][0], "role": "goal"}]
        },
        "images[0].shape: sides must be 1 to 8, got [9, 4, 3]": {
            **SCORE, "images": [{**SCORE["images"][0], "shape": [9, 4, 3]}]
        },
        "type: unknown 'shutdown'; allowed: score, health, metrics": {"v": 1, "type": "shutdown"},
    }  # fmt: skip
    for text, fields in cases.items():
        error = refusal(reward.WIRE, msgpack.packb(fields), limits)
        assert isinstance(error, reward.ProtocolError) and str(error).startswith(text), (text, str(error))
        assert error.reason == text.split(":")[0]
    header = reward.WIRE.decode(msgpack.packb(SCORE), limits)
    assert isinstance(header, reward.ScoreHeader) and header.images[0].shape == (4, 4, 3)
    request = reward.parse_score_request(header, [bytes(48)], limits)
    assert request.images[0].shape == (4, 4, 3) and request.mode == "progress"
    with pytest.raises(reward.ProtocolError, match=r"images\[0\] \(camera 'front'\): 47 bytes"):
        reward.parse_score_request(header, [bytes(47)], limits)


def test_the_intervention_port_refuses_with_its_documented_reasons() -> None:
    cases = {
        "bad_message": msgpack.packb([1]),
        "bad_version": packed(type="ping"),
        "unknown_type": packed(v=1, type="fly"),
        "bad_env": packed(v=1, type="takeover", env=2),
        "bad_field": packed(v=1, type="takeover", env="1"),
    }
    for reason, data in cases.items():
        error = refusal(port.WIRE, data, PORT_INFO)
        assert isinstance(error, port.ProtocolError) and error.reason == reason, (reason, error)
    assert refusal(port.WIRE, packed(v=1, type="takeover", env=-1), PORT_INFO).detail == (
        "env: out of range 0..1, got -1"
    )
    assert refusal(port.WIRE, packed(v=1, type="watch", env=0, camera="top"), PORT_INFO).detail == (
        "camera: not among ['front', 'side'], got 'top'"
    )
    assert refusal(port.WIRE, packed(v=1, type="action", env=0, action=[0, 1]), PORT_INFO).detail == (
        "action: expected a list of 3 numbers, got [0, 1]"
    )
    action = port.WIRE.decode(packed(v=1, type="action", env=1, action=[0, 0.5, 1]), PORT_INFO)
    assert isinstance(action, port.Action) and action.action.tolist() == [0, 0.5, 1]
    watch = port.WIRE.decode(packed(v=1, type="watch", env=0), PORT_INFO)
    assert isinstance(watch, port.Watch) and (watch.camera, watch.fps) == (None, 10.0)
