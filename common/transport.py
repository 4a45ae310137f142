"""Bounded inbound ZMQ traffic: the one place where a peer's messages are limited before anyone reads them.

The robot bridge, the reward server and the intervention port all serve a socket that any peer able to
reach the port can write to. ``open_router`` gives each the reader that bounds such a peer
(``TransportLimits``, in ``striata.common.transport_limits``):

- on plain TCP, ``striata.common.zmtp.StreamRouter``: ZMTP parsed by us from a ZMQ_STREAM socket, so a
  frame, a message or a handshake over its bound closes that connection at its header, before its bytes
  are read, and never delays another peer's message;
- with CURVE, or on ipc/inproc, ``BoundedRouter`` below: libzmq's ROUTER (CURVE is libzmq's), where only
  peers that passed the CURVE handshake, or processes on this machine, can send.

``BoundedRouter`` bounds:

- **bytes per frame**, by libzmq before the frame is read (``ZMQ_MAXMSGSIZE``): a larger frame
  disconnects the peer, and the partial message it was part of is discarded by libzmq;
- **frames per message**: libzmq has no such limit and delivers a multipart message only whole, so a
  message over ``max_frames`` is skipped frame by frame without copying, a few hundred frames per
  ``receive`` call, and never reaches the application (the reader is busy with it meanwhile: that is
  what ``StreamRouter`` avoids);
- **bytes per message** (``max_message_bytes``): the same, for many frames each under the frame limit;
- **time per call**: ``receive`` reads at most ``frames_per_call`` frames and stops at ``until``, so a
  caller with a deadline (a control tick) gets its thread back in bounded time whatever arrives;
- **memory after the fact**: libzmq buffers a multipart message whole before it hands over a frame,
  so while a message of a million frames arrives it holds them (about 64 MB); once such a message is
  dropped, its memory is handed back to the OS.

Both readers bound **bytes and messages per peer** (``PeerRates``, charged as the server takes each
message) and count what they drop by reason in ``dropped`` (the callers report it in their stats /
health). A peer is not told about a drop: answering a flood would only multiply it. A server that refuses
a message as malformed calls ``penalize``: that message costs its peer ``bad_message_cost`` messages of
its rate, so a peer streaming garbage gets a few dozen answers a second instead of thousands.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import zmq

from striata.common.transport_limits import Inbound, MemoryTrimmer, PeerGate, TransportLimits
from striata.common.zmtp import StreamRouter

__all__ = ["BoundedRouter", "Inbound", "Router", "StreamRouter", "TransportLimits", "open_router"]

# Frames between two clock reads while reading (a clock read costs about as much as a frame).
_CLOCK_EVERY = 32


@dataclass
class _Partial:
    identity: bytes
    frames: list[bytes] = field(default_factory=list)
    size: int = 0
    dropped: str = ""  # the reason, once the message is being skipped


def apply_limits(sock: zmq.Socket, limits: TransportLimits) -> None:
    """Socket options that bound a peer before its bytes are read; call before bind/connect."""
    sock.setsockopt(zmq.MAXMSGSIZE, limits.max_frame_bytes)
    sock.setsockopt(zmq.RCVHWM, limits.receive_hwm)
    sock.setsockopt(zmq.LINGER, 0)


class BoundedRouter(PeerGate):
    """Reads a ROUTER socket within ``limits``; ``receive`` returns only messages inside every bound.

    Not thread-safe, like the socket it reads: one thread owns both.
    """

    def __init__(self, sock: zmq.Socket, limits: TransportLimits) -> None:
        super().__init__(limits)
        self.sock = sock
        self._partial: _Partial | None = None
        self._trimmer = MemoryTrimmer()

    @property
    def mid_message(self) -> bool:
        """True while a message is half read (more of its frames wait in the socket)."""
        return self._partial is not None

    def receive(self, until: float | None = None) -> Iterator[Inbound]:
        """Messages that are ready now, reading at most ``frames_per_call`` frames and stopping at ``until``
        (monotonic seconds); never blocks. Each is charged to its peer's rate as it is taken."""
        out: list[Inbound] = []
        budget = self.limits.frames_per_call
        for n in range(budget):
            if until is not None and n % _CLOCK_EVERY == _CLOCK_EVERY - 1 and time.monotonic() >= until:
                break
            try:
                frame = self.sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            partial = self._partial
            if partial is not None and partial.dropped and frame.more:
                continue  # inside a dropped message: only its end matters
            message = self._take(frame)
            if message is not None:
                out.append(message)
        return self._admit(out)

    def _take(self, frame: zmq.Frame) -> Inbound | None:
        partial = self._partial
        if partial is None:
            # A ROUTER's first frame is the routing id it prepends.
            self._partial = _Partial(identity=frame.bytes)
            if not frame.more:  # an empty message; cannot happen on a ROUTER, but never loop on it
                self._partial = None
            return None
        if not partial.dropped:
            size = len(frame)
            partial.size += size
            if len(partial.frames) >= self.limits.max_frames:
                partial.dropped, partial.frames = "too_many_frames", []
            elif partial.size > self.limits.max_message_bytes:
                partial.dropped, partial.frames = "message_too_large", []
            else:
                partial.frames.append(frame.bytes)
        if frame.more:
            return None
        self._partial = None
        if partial.dropped:
            self.dropped[partial.dropped] += 1
            self._trimmer.after_drop(partial.dropped)
            return None
        return Inbound(partial.identity, partial.frames)

    def send(self, identity: bytes, frames: list[bytes]) -> bool:
        """Queue ``frames`` for the peer ``identity``; False if it is gone or not reading."""
        try:
            self.sock.send_multipart([identity, *frames], zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        return True


Router = BoundedRouter | StreamRouter


def open_router(
    context: zmq.Context, limits: TransportLimits, endpoint: str, *, curve: bool = False
) -> Router:
    """The bounded reader for a server socket that will bind ``endpoint`` (bind ``router.sock`` after
    applying any CURVE options to it): ZMTP parsed by us on plain TCP, libzmq's ROUTER otherwise."""
    if urlparse(endpoint).scheme == "tcp" and not curve:
        sock = context.socket(zmq.STREAM)
        sock.setsockopt(zmq.LINGER, 0)
        # Chunks of at most 8 KB per connection; when they wait unread, libzmq stops reading that
        # connection's TCP stream, so a flood stays in the sender's kernel buffers, not in ours.
        sock.setsockopt(zmq.RCVHWM, 64)
        return StreamRouter(sock, limits)
    sock = context.socket(zmq.ROUTER)
    apply_limits(sock, limits)
    return BoundedRouter(sock, limits)
