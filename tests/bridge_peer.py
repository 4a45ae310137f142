"""A controller's side of the bridge protocol, by hand, for tests that play a (possibly hostile) peer."""

from __future__ import annotations

import time

import msgpack
import zmq

# The controller's phases through a whole scripted run, as its summary lists them.
FULL_RUN_PHASES = ["zero_torque", "interpolate", "hold", "policy", "damping"]


def dealer(endpoint: str, routing_id: bytes | None = None) -> zmq.Socket:
    """A DEALER connected to ``endpoint``, with a routing id of our choosing if given."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(endpoint)
    return sock


def recv_until(sock: zmq.Socket, kind: str, timeout_s: float = 5.0, ack: int | None = None) -> dict:
    """The first message of type ``kind`` (and ``ack_seq`` ``ack``) within ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if sock.poll(50):
            message = msgpack.unpackb(sock.recv(), raw=False)
            if message["type"] == kind and (ack is None or message.get("ack_seq") == ack):
                return message
    raise AssertionError(f"no {kind!r} message within {timeout_s} s")
