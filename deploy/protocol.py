"""The robot bridge wire protocol: message schema, msgpack encoding and validation (see PROTOCOL.md).

Every message is one ZMQ frame holding one msgpack map with ``"v": PROTOCOL_VERSION`` and a
``"type"``. A welcome hands the controller a ``session`` number that its commands and ``clear_estop``
carry, so a new connection (even one that reuses a routing id) must say hello first. Arrays are
msgpack arrays of numbers (float64 on encode) in the robot's joint order.
``decode_client_message`` is the bridge's gate (``WIRE``, a ``striata.common.wire.Wire``): anything that
is not a well-formed hello, command, estop or clear_estop of this version raises ``ProtocolError`` with a
short ``reason`` (the key the bridge counts rejections under); it never evaluates or unpickles anything.
The controller reads the bridge's ``welcome`` and ``state`` through the same ``WIRE``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, cast

import numpy as np
from pydantic import Field, PlainValidator, ValidationInfo, field_validator

from striata.common.wire import Message, Reasons, Wire, WireError, field_error, is_number

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


class ProtocolError(WireError):
    """A message that breaks the bridge protocol; ``reason`` names the rule (a counter key on the bridge)."""


# Validators read the robot's joint count from the validation context (``decode_client_message``).
def _sized_array(size: int | None) -> Callable[[Any, ValidationInfo], np.ndarray]:
    def validate(value: Any, info: ValidationInfo) -> np.ndarray:
        """A msgpack array of exactly ``size`` finite numbers (None: the robot's joints) as float64; an
        array given in code (a ``Command`` built by hand) is taken as it is."""
        if isinstance(value, np.ndarray):
            return value.astype(np.float64)
        expected = info.context if size is None else size
        if not isinstance(value, list) or not all(map(is_number, value)):
            raise field_error(f"expected an array of {expected} numbers")
        if len(value) != expected:
            raise field_error(f"has {len(value)} entries, expected {expected}", reason="bad_size")
        array = np.array(value, dtype=np.float64)
        if not np.all(np.isfinite(array)):
            raise field_error("holds NaN or inf", reason="not_finite")
        return array

    return validate


_joint_array = _sized_array(None)


def _command_array(value: Any, info: ValidationInfo) -> np.ndarray | None:
    """A command's joint array: required in a position phase, ignored (whatever it holds) in the others."""
    if info.data.get("phase") not in POSITION_PHASES:
        return None
    if value is None:
        raise field_error(f"required in phase {info.data['phase']!r}")
    array = _joint_array(value, info)
    if info.field_name in ("kp", "kd") and np.any(array < 0):
        raise field_error("gains must be >= 0", reason="bad_gains")
    return array


JointArray = Annotated[np.ndarray, PlainValidator(_joint_array)]
CommandArray = Annotated[np.ndarray | None, PlainValidator(_command_array)]
Counter63 = Annotated[int, Field(ge=0, lt=2**63)]  # seq, session, tick: what any language's int64 holds


class Hello(Message):
    TYPE: ClassVar[str] = "hello"

    client: str = ""
    joint_names: list[str] = Field(default_factory=list)


class Command(Message):
    TYPE: ClassVar[str] = "command"

    seq: Counter63
    session: Counter63
    phase: str
    q_target: CommandArray = Field(default=None, validate_default=True)
    dq_target: CommandArray = Field(default=None, validate_default=True)
    kp: CommandArray = Field(default=None, validate_default=True)
    kd: CommandArray = Field(default=None, validate_default=True)
    tau_ff: CommandArray = Field(default=None, validate_default=True)

    @field_validator("phase")
    @classmethod
    def _known_phase(cls, phase: str) -> str:
        if phase not in PHASES:
            raise field_error(f"not one of {', '.join(PHASES)}", reason="bad_phase")
        return phase


class Estop(Message):
    """``estop`` from any peer latches damping."""

    TYPE: ClassVar[str] = "estop"


class ClearEstop(Message):
    """``clear_estop`` releases it; only the connected controller may, so it names the session."""

    TYPE: ClassVar[str] = "clear_estop"

    session: Counter63


ClientMessage = Hello | Command | Estop | ClearEstop

WIRE = Wire(
    version=PROTOCOL_VERSION,
    max_bytes=MAX_MESSAGE_BYTES,
    error=ProtocolError,
    reasons=Reasons(specific=frozenset({"bad_size", "not_finite", "bad_gains", "bad_phase"})),
    messages=(Hello, Command, Estop, ClearEstop),
)


def encode(message: dict[str, Any]) -> bytes:
    """msgpack bytes of ``message`` with the protocol version added; numpy arrays become lists."""
    return WIRE.pack(message)


def decode_map(data: bytes) -> dict[str, Any]:
    """Decode one message to a dict, checking size, msgpack well-formedness, the version and the type."""
    return WIRE.unpack(data)


def decode_client_message(data: bytes, num_joints: int) -> ClientMessage:
    """Validate one controller -> bridge message for a robot with ``num_joints`` joints."""
    return cast(ClientMessage, WIRE.decode(data, context=num_joints))


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


class Welcome(Message):
    """What the controller needs of a ``welcome`` (the rest it reads from the map as information)."""

    TYPE: ClassVar[str] = "welcome"

    joint_names: list[str]
    session: int


class StateMessage(Message):
    """A state message as the controller reads it (arrays in the robot's joint order)."""

    TYPE: ClassVar[str] = "state"

    seq: Counter63
    time: float = Field(allow_inf_nan=False)
    tick: Counter63
    q: JointArray
    dq: JointArray
    imu_quat_wxyz: Annotated[np.ndarray, PlainValidator(_sized_array(4))] = Field(alias="imu_quat")
    gyro: Annotated[np.ndarray, PlainValidator(_sized_array(3))]
    tau: JointArray | None = None
    ack_seq: int = -1
    mode: str = ""
    remote: list[str] = Field(default_factory=list)


def decode_state(message: dict[str, Any], num_joints: int) -> StateMessage:
    """Validate a bridge -> controller ``state`` map (already through ``decode_map``)."""
    return WIRE.validate(StateMessage, message, context=num_joints)
