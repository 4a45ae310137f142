"""The robot bridge wire protocol: message schema, msgpack encoding and validation (see PROTOCOL.md).

Every message is one ZMQ frame holding one msgpack map with ``"v": PROTOCOL_VERSION`` and a
``"type"``. A welcome hands the controller a ``session`` number that its commands and ``clear_estop``
carry, so a new connection (even one that reuses a routing id) must say hello first. Arrays are
msgpack arrays of numbers (float64 on encode) in the robot's joint order.
``decode_client_message`` is the bridge's gate: anything that is not a well-formed hello, command,
estop or clear_estop of this version raises ``ProtocolError`` with a short ``reason`` (the key the
bridge counts rejections under); it never evaluates or unpickles anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 2
MAX_MESSAGE_BYTES = 64 * 1024

PHASES = ("zero_torque", "interpolate", "hold", "policy", "damping")
# Phases in which a command carries joint targets; in the others the bridge ignores the arrays.
POSITION_PHASES = ("interpolate", "hold", "policy")
REMOTE_BUTTONS = (
    "start",
    "select",
    "A",
    "B",
    "X",
    "Y",
    "L1",
    "L2",
    "R1",
    "R2",
    "up",
    "down",
    "left",
    "right",
    "F1",
    "F2",
)
COMMAND_ARRAYS = ("q_target", "dq_target", "kp", "kd", "tau_ff")


class ProtocolError(ValueError):
    """A message that breaks the protocol; ``reason`` names the rule (a counter key on the bridge)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Hello:
    client: str
    joint_names: list[str]


@dataclass
class Command:
    seq: int
    session: int
    phase: str
    q_target: np.ndarray | None
    dq_target: np.ndarray | None
    kp: np.ndarray | None
    kd: np.ndarray | None
    tau_ff: np.ndarray | None


@dataclass
class Estop:
    release: bool
    session: int | None  # only a release (clear_estop) must name the session


ClientMessage = Hello | Command | Estop


def encode(message: dict[str, Any]) -> bytes:
    """msgpack bytes of ``message`` with the protocol version added; numpy arrays become lists."""
    out = {"v": PROTOCOL_VERSION}
    for key, value in message.items():
        out[key] = value.astype(np.float64).tolist() if isinstance(value, np.ndarray) else value
    return msgpack.packb(out, use_bin_type=True)


def decode_map(data: bytes) -> dict[str, Any]:
    """Decode one message to a dict, checking size, msgpack well-formedness and the version."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, ValueError, ...)
        raise ProtocolError("not_msgpack", type(exc).__name__) from None
    if not isinstance(message, dict):
        raise ProtocolError("not_a_map", type(message).__name__)
    version = message.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError("bad_version", f"v={version!r}, this side speaks {PROTOCOL_VERSION}")
    if not isinstance(message.get("type"), str):
        raise ProtocolError("bad_type", f"type={message.get('type')!r}")
    return message


def float_array(message: dict[str, Any], key: str, size: int) -> np.ndarray:
    """``message[key]`` as a finite float64 array of exactly ``size`` numbers."""
    value = message.get(key)
    if not isinstance(value, list):
        raise ProtocolError("bad_field", f"{key} must be an array of {size} numbers")
    if len(value) != size:
        raise ProtocolError("bad_size", f"{key} has {len(value)} entries, the robot has {size}")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        raise ProtocolError("bad_field", f"{key} holds a non-number")
    array = np.array(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ProtocolError("not_finite", f"{key} holds NaN or inf")
    return array


def _int_field(message: dict[str, Any], key: str) -> int:
    value = message.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ProtocolError("bad_field", f"{key} must be a non-negative integer")
    return value


def decode_client_message(data: bytes, num_joints: int) -> ClientMessage:
    """Validate one controller -> bridge message for a robot with ``num_joints`` joints."""
    message = decode_map(data)
    kind = message["type"]
    if kind == "hello":
        names = message.get("joint_names", [])
        client = message.get("client", "")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ProtocolError("bad_field", "joint_names must be an array of strings")
        if not isinstance(client, str):
            raise ProtocolError("bad_field", "client must be a string")
        return Hello(client=client, joint_names=names)
    if kind == "command":
        seq = _int_field(message, "seq")
        session = _int_field(message, "session")
        phase = message.get("phase")
        if phase not in PHASES:
            raise ProtocolError("bad_phase", f"phase={phase!r}; allowed: {', '.join(PHASES)}")
        if phase not in POSITION_PHASES:
            return Command(seq, session, phase, None, None, None, None, None)
        arrays = {key: float_array(message, key, num_joints) for key in COMMAND_ARRAYS}
        if np.any(arrays["kp"] < 0) or np.any(arrays["kd"] < 0):
            raise ProtocolError("bad_gains", "kp and kd must be >= 0")
        return Command(seq=seq, session=session, phase=phase, **arrays)
    if kind == "estop":
        return Estop(release=False, session=None)
    if kind == "clear_estop":
        return Estop(release=True, session=_int_field(message, "session"))
    raise ProtocolError("unknown_type", f"type={kind!r}")


def hello_message(client: str, joint_names: list[str]) -> bytes:
    return encode({"type": "hello", "client": client, "joint_names": list(joint_names)})


def command_message(
    seq: int,
    session: int,
    phase: str,
    q_target: np.ndarray | None = None,
    dq_target: np.ndarray | None = None,
    kp: np.ndarray | None = None,
    kd: np.ndarray | None = None,
    tau_ff: np.ndarray | None = None,
) -> bytes:
    message: dict[str, Any] = {"type": "command", "seq": seq, "session": session, "phase": phase}
    if phase in POSITION_PHASES:
        message.update(q_target=q_target, dq_target=dq_target, kp=kp, kd=kd, tau_ff=tau_ff)
    return encode(message)


@dataclass
class StateMessage:
    """A state message as the controller reads it (arrays in the robot's joint order)."""

    seq: int
    time: float
    tick: int
    q: np.ndarray
    dq: np.ndarray
    imu_quat_wxyz: np.ndarray
    gyro: np.ndarray
    tau: np.ndarray | None
    ack_seq: int
    mode: str
    remote: list[str]


def decode_state(message: dict[str, Any], num_joints: int) -> StateMessage:
    """Validate a bridge -> controller ``state`` map (already through ``decode_map``)."""
    tau = message.get("tau")
    remote = message.get("remote", [])
    if not isinstance(remote, list) or not all(isinstance(b, str) for b in remote):
        raise ProtocolError("bad_field", "remote must be an array of button names")
    ack = message.get("ack_seq", -1)
    stamp = message.get("time")
    if not isinstance(stamp, int | float) or not math.isfinite(stamp):
        raise ProtocolError("bad_field", "time must be a finite number")
    return StateMessage(
        seq=_int_field(message, "seq"),
        time=float(stamp),
        tick=_int_field(message, "tick"),
        q=float_array(message, "q", num_joints),
        dq=float_array(message, "dq", num_joints),
        imu_quat_wxyz=float_array(message, "imu_quat", 4),
        gyro=float_array(message, "gyro", 3),
        tau=None if tau is None else float_array(message, "tau", num_joints),
        ack_seq=ack if isinstance(ack, int) else -1,
        mode=str(message.get("mode", "")),
        remote=remote,
    )
