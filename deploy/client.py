"""The controller's side of the bridge protocol: a ZMQ DEALER that says hello, commands and reads states.

Every wait has a timeout: ``hello`` raises ``BridgeUnavailableError`` when no welcome comes, and
``latest_state`` returns what has arrived so far. Round trips are measured on the state message the
bridge sends right after accepting each command (``ack_seq`` = that command's ``seq``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

import numpy as np
import zmq

from striata.common.curve import CurveClient
from striata.deploy import protocol
from striata.deploy.protocol import ProtocolError, StateMessage
from striata.deploy.zmq_wait import wait_readable


class BridgeUnavailableError(RuntimeError):
    """The bridge did not answer in time, or refused the controller."""


class BridgeClient:
    def __init__(
        self, endpoint: str, client_name: str = "striata-controller", curve: CurveClient | None = None
    ) -> None:
        self.endpoint = endpoint
        self.client_name = client_name
        self.context = zmq.Context.instance()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        if curve is not None:
            curve.apply(self.sock)
        self.sock.connect(endpoint)
        self.num_joints = 0
        self.session = 0
        self.seq = 0
        self.latest: StateMessage | None = None
        self.latest_at = -np.inf
        self.errors: Counter = Counter()
        self.last_error = ""
        self.rtt_s: deque[tuple[int, float]] = deque(maxlen=100_000)  # (command seq, seconds)
        self._sent_at: dict[int, float] = {}

    def hello(self, joint_names: list[str], timeout_s: float = 3.0) -> dict[str, Any]:
        """Handshake; returns the bridge's welcome (robot joint names, period, limits, safety)."""
        self.sock.send(protocol.hello_message(self.client_name, joint_names))
        end = time.monotonic() + timeout_s
        while (left := end - time.monotonic()) > 0:
            if not wait_readable(self.sock, left):
                continue
            message = protocol.decode_map(self.sock.recv(zmq.NOBLOCK))
            if message["type"] == "welcome":
                try:
                    welcome = protocol.WIRE.validate(protocol.Welcome, message)
                except ProtocolError as exc:
                    raise BridgeUnavailableError(
                        f"{self.endpoint}: a welcome that is not protocol v{protocol.PROTOCOL_VERSION}'s: "
                        f"{exc.detail}"
                    ) from None
                self.num_joints = len(welcome.joint_names)
                self.session = welcome.session
                return message
            if message["type"] == "error":
                raise BridgeUnavailableError(
                    f"{self.endpoint} refused the hello: {message.get('reason')}: {message.get('detail')}"
                )
        raise BridgeUnavailableError(f"no welcome from a bridge at {self.endpoint} within {timeout_s} s")

    def send_command(self, phase: str, **arrays: np.ndarray | None) -> int:
        self.seq += 1
        self._sent_at[self.seq] = time.perf_counter()
        if len(self._sent_at) > 64:  # commands the bridge never acknowledged (dropped, rejected)
            self._sent_at.pop(min(self._sent_at))
        self.sock.send(protocol.command_message(self.seq, self.session, phase, **arrays))
        return self.seq

    def estop(self, release: bool = False) -> None:
        message = {"type": "clear_estop", "session": self.session} if release else {"type": "estop"}
        self.sock.send(protocol.encode(message))

    def receive(self, timeout_s: float) -> None:
        """Read every message that arrives within ``timeout_s`` (at least everything queued now)."""
        end = time.monotonic() + timeout_s
        while True:
            if wait_readable(self.sock, end - time.monotonic()):
                self._drain()
            if time.monotonic() >= end:
                return

    def receive_newer_state(self, timeout_s: float) -> bool:
        """Read until a state of a later robot tick than the one held arrives (True), or ``timeout_s``
        passes (False). Acks of commands repeat the held tick and do not count."""
        held = -1 if self.latest is None else self.latest.tick
        end = time.monotonic() + timeout_s
        while True:
            if wait_readable(self.sock, end - time.monotonic()):
                self._drain()
                if self.latest is not None and self.latest.tick > held:
                    return True
            if time.monotonic() >= end:
                return False

    def _drain(self) -> None:
        newest: dict[str, Any] | None = None
        for _ in range(10_000):
            try:
                data = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            now = time.perf_counter()
            try:
                message = protocol.decode_map(data)
            except ProtocolError as exc:
                self.errors[f"bad_message:{exc.reason}"] += 1
                continue
            if message["type"] == "error":
                self.errors[str(message.get("reason"))] += 1
                self.last_error = f"{message.get('reason')}: {message.get('detail')}"
            elif message["type"] == "state":
                ack = message.get("ack_seq")
                sent = self._sent_at.pop(ack, None) if isinstance(ack, int) else None
                if sent is not None:
                    self.rtt_s.append((ack, now - sent))
                newest = message
        # Only the newest state is used: validating the arrays of the others would be wasted work.
        if newest is None:
            return
        try:
            state = protocol.decode_state(newest, self.num_joints)
        except ProtocolError as exc:
            self.errors[f"bad_state:{exc.reason}"] += 1
            return
        if self.latest is None or state.seq > self.latest.seq:
            self.latest = state
            self.latest_at = time.monotonic()

    def close(self) -> None:
        self.sock.close(linger=0)
