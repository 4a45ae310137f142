"""The floods a hostile peer sends at a ROUTER port, against which ``striata.common.transport``'s bounds are
measured: by the bridge's and the reward server's attack benchmarks and by the intervention port's tests.

Each ``send_*`` streams its message into a DEALER connected to the port (frame by frame, so the sender
never holds a million-frame list); ``FLOODS`` names them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import zmq

MEGABYTE = 1 << 20
GARBAGE_MESSAGES = 10_000


def send_million_frames(sock: zmq.Socket) -> None:
    """One message of 1,000,000 one-byte frames: under every frame-size bound, libzmq buffers it whole."""
    for _ in range(999_999):
        sock.send(b"x", zmq.SNDMORE)
    sock.send(b"x")


def send_big_frames(sock: zmq.Socket) -> None:
    """One message of 300 frames of 1 MB each (one buffer, not copied)."""
    frame = bytes(MEGABYTE)
    for _ in range(299):
        sock.send(frame, zmq.SNDMORE, copy=False)
    sock.send(frame, copy=False)


def send_garbage(sock: zmq.Socket) -> None:
    """10,000 one-frame messages that are not msgpack (0xc1 is a byte msgpack never uses)."""
    rng = np.random.default_rng(0)
    for _ in range(GARBAGE_MESSAGES):
        sock.send(b"\xc1" + rng.bytes(int(rng.integers(1, 200))))


FLOODS: dict[str, Callable[[zmq.Socket], None]] = {
    "million_frames": send_million_frames,
    "big_frames": send_big_frames,
    "garbage": send_garbage,
}
