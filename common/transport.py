"""Bounded inbound ZMQ traffic: the one place where a peer's messages are limited before anyone reads them.

The robot bridge, the reward server and the intervention port all serve a ROUTER socket that any peer
able to reach the port can write to. What such a peer can make them do is bounded here:

- **bytes per frame**, by libzmq before the frame is read (``ZMQ_MAXMSGSIZE``): a larger frame
  disconnects the peer, and the partial message it was part of is discarded by libzmq;
- **frames per message**: libzmq has no such limit and delivers a multipart message only whole, so a
  message over ``max_frames`` is skipped frame by frame without copying, a few hundred frames per
  ``receive`` call, and never reaches the application;
- **bytes per message** (``max_message_bytes``): the same, for many frames each under the frame limit;
- **bytes and messages per peer** (token buckets per routing id): a peer over its rate loses the
  messages beyond it, so one client cannot crowd out the others;
- **time per call**: ``receive`` reads at most ``frames_per_call`` frames and stops at ``until``, so a
  caller with a deadline (a control tick) gets its thread back in bounded time whatever arrives;
- **memory after the fact**: libzmq buffers a multipart message whole before it hands over a frame,
  so while a message of a million frames arrives it holds them (about 64 MB); once such a message is
  dropped, its memory is handed back to the OS (``return_freed_memory``).

What is dropped is counted by reason in ``dropped`` (the callers report it in their stats / health).
A peer is not told about a drop: answering a flood would only multiply it.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import zmq

# Peers remembered for their rate buckets; beyond this the longest unseen is forgotten.
MAX_TRACKED_PEERS = 4096
# Frames between two clock reads while reading (a clock read costs about as much as a frame).
_CLOCK_EVERY = 32
# Drops that leave much freed memory behind, and how often that memory is handed back at most.
_LARGE_DROPS = ("too_many_frames", "message_too_large")
_TRIM_EVERY_S = 1.0
_LIBC = ctypes.CDLL(None)


def return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc only). libzmq allocates a message's frames in its I/O
    thread's arena and glibc keeps them there once freed, so without this a dropped message of a million
    frames (or 300 MB) would leave the process's RSS that much higher for good."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


@dataclass(frozen=True)
class TransportLimits:
    """What one peer may send to a ROUTER socket; each component picks its own values."""

    max_frames: int = 4
    max_frame_bytes: int = 64 * 1024
    max_message_bytes: int = 64 * 1024
    peer_bytes_per_s: float = 4e6
    peer_burst_bytes: int = 1 << 20
    peer_messages_per_s: float = 2000.0
    peer_burst_messages: int = 200
    frames_per_call: int = 256
    receive_hwm: int = 1000

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_frame_bytes", "max_message_bytes", "frames_per_call", "receive_hwm"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.peer_burst_bytes < self.max_message_bytes:
            raise ValueError(
                f"peer_burst_bytes ({self.peer_burst_bytes}) < max_message_bytes ({self.max_message_bytes}): "
                "no message could ever pass"
            )

    def as_dict(self) -> dict[str, float]:
        """The limits as a peer may learn them (health replies, welcome messages, docs)."""
        return {
            "max_frames": self.max_frames,
            "max_frame_bytes": self.max_frame_bytes,
            "max_message_bytes": self.max_message_bytes,
            "peer_bytes_per_s": self.peer_bytes_per_s,
            "peer_messages_per_s": self.peer_messages_per_s,
        }


@dataclass
class Inbound:
    """One message that passed every bound: who sent it and its frames (routing id removed)."""

    identity: bytes
    frames: list[bytes]


@dataclass
class _Bucket:
    bytes_left: float
    messages_left: float
    at: float


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


class BoundedRouter:
    """Reads a ROUTER socket within ``limits``; ``receive`` returns only messages inside every bound.

    Not thread-safe, like the socket it reads: one thread owns both.
    """

    def __init__(self, sock: zmq.Socket, limits: TransportLimits) -> None:
        self.sock = sock
        self.limits = limits
        self.dropped: Counter[str] = Counter()
        self.received = 0
        self._partial: _Partial | None = None
        self._peers: OrderedDict[bytes, _Bucket] = OrderedDict()
        self._trimmed_at = -float("inf")

    @property
    def mid_message(self) -> bool:
        """True while a message is half read (more of its frames wait in the socket)."""
        return self._partial is not None

    def receive(self, until: float | None = None) -> list[Inbound]:
        """Messages that are ready now, reading at most ``frames_per_call`` frames and stopping at ``until``
        (monotonic seconds); never blocks."""
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
        return out

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
            now = time.monotonic()
            if partial.dropped in _LARGE_DROPS and now - self._trimmed_at >= _TRIM_EVERY_S:
                self._trimmed_at = now
                # On its own thread (ctypes lets go of the GIL): trimming 64 MB takes ~9 ms, a control
                # loop's tick must not wait for it.
                threading.Thread(target=return_freed_memory, name="return-freed-memory", daemon=True).start()
            return None
        over = self._charge(partial.identity, partial.size)
        if over:
            self.dropped[over] += 1
            return None
        self.received += 1
        return Inbound(partial.identity, partial.frames)

    def _charge(self, identity: bytes, size: int) -> str:
        """Take one message of ``size`` bytes from the peer's buckets; the drop reason if it has none left."""
        limits = self.limits
        now = time.monotonic()
        bucket = self._peers.pop(identity, None)
        if bucket is None:
            bucket = _Bucket(limits.peer_burst_bytes, limits.peer_burst_messages, now)
        else:
            elapsed = now - bucket.at
            bucket.bytes_left = min(
                limits.peer_burst_bytes, bucket.bytes_left + elapsed * limits.peer_bytes_per_s
            )
            bucket.messages_left = min(
                limits.peer_burst_messages, bucket.messages_left + elapsed * limits.peer_messages_per_s
            )
            bucket.at = now
        self._peers[identity] = bucket
        if len(self._peers) > MAX_TRACKED_PEERS:
            self._peers.popitem(last=False)
        if bucket.messages_left < 1:
            return "peer_over_message_rate"
        if bucket.bytes_left < size:
            return "peer_over_byte_rate"
        bucket.messages_left -= 1
        bucket.bytes_left -= size
        return ""
