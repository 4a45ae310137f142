"""What one peer may send to a server socket, and the bookkeeping every bounded reader shares: per-peer
rate buckets (``PeerGate``: a message is charged as its server takes it, and a malformed one costs its peer
more), and handing the memory of dropped messages back to the OS (libzmq's ROUTER only: the ZMTP reader
never lets libzmq hold more than a few chunks of a connection).

The readers themselves are in ``striata.common.transport`` (libzmq's ROUTER) and ``striata.common.zmtp``
(ZMTP spoken by us, so that a message is bounded frame by frame while it arrives).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

# Peers remembered for their rate buckets; beyond this the longest unseen is forgotten.
MAX_TRACKED_PEERS = 4096
# Drops that can leave much freed memory behind (a message of a million frames, or of 300 MB).
LARGE_DROPS = frozenset({"too_many_frames", "message_too_large", "frame_too_large"})
# How often the memory of large dropped messages is handed back at most.
_TRIM_EVERY_S = 1.0
_LIBC = ctypes.CDLL(None)


def return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc only). libzmq allocates a message's frames in its I/O
    thread's arena and glibc keeps them there once freed, so without this a dropped message of a million
    frames (or 300 MB) would leave the process's RSS that much higher for good."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


class MemoryTrimmer:
    """Calls ``return_freed_memory`` after a large drop (``LARGE_DROPS``), at most once a second, on its
    own thread: ctypes lets go of the GIL, and trimming 64 MB takes ~9 ms. glibc still locks each arena
    while it trims it, so a loop that allocates meanwhile can wait (a sim bridge's ticks, 6-10 ms): only
    libzmq's ROUTER needs it; the ZMTP reader, which a bridge on TCP uses, never holds a dropped message."""

    def __init__(self) -> None:
        self._at = -float("inf")

    def after_drop(self, reason: str) -> None:
        if reason not in LARGE_DROPS:
            return
        now = time.monotonic()
        if now - self._at >= _TRIM_EVERY_S:
            self._at = now
            threading.Thread(target=return_freed_memory, name="return-freed-memory", daemon=True).start()


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
    bad_message_cost: int = 64
    frames_per_call: int = 256
    receive_hwm: int = 1000
    max_connections: int = 256

    def __post_init__(self) -> None:
        for name in (
            "max_frames",
            "max_frame_bytes",
            "max_message_bytes",
            "bad_message_cost",
            "frames_per_call",
            "receive_hwm",
            "max_connections",
        ):
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
            "bad_message_cost": self.bad_message_cost,
        }


@dataclass
class Inbound:
    """One message that passed every bound: who sent it and its frames (routing id removed)."""

    identity: bytes
    frames: list[bytes]

    @property
    def size(self) -> int:
        """Bytes in the message's frames."""
        return sum(len(frame) for frame in self.frames)


@dataclass
class _Bucket:
    bytes_left: float
    messages_left: float
    at: float


class PeerRates:
    """Token buckets per peer (bytes and messages): a peer over its rate loses the messages beyond it, so
    one client cannot crowd out the others."""

    def __init__(self, limits: TransportLimits) -> None:
        self.limits = limits
        self._peers: OrderedDict[bytes, _Bucket] = OrderedDict()

    def charge(self, identity: bytes, size: int) -> str:
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

    def penalize(self, identity: bytes, messages: float) -> None:
        """Take ``messages`` more from the peer's message bucket, down to minus a burst: a peer that only
        sends what its server refuses waits at most ``(burst + 1) / rate`` for its next message."""
        bucket = self._peers.get(identity)
        if bucket is not None:
            floor = -float(self.limits.peer_burst_messages)
            bucket.messages_left = max(floor, bucket.messages_left - messages)


class PeerGate:
    """What both readers share: the messages they parsed are charged to their peers' rates one by one, as
    the server takes them (``_admit``), so ``penalize`` of a peer's malformed message drops the same peer's
    next ones even within one read; and the counts of what was received and dropped, by reason."""

    def __init__(self, limits: TransportLimits) -> None:
        self.limits = limits
        self.dropped: Counter[str] = Counter()
        self.received = 0
        self._rates = PeerRates(limits)

    def penalize(self, identity: bytes) -> None:
        """The server refused a message of ``identity`` as malformed: it costs ``bad_message_cost``
        messages of that peer's rate, so a peer streaming garbage is answered a few dozen times a second,
        not at its full rate, and every other client's requests wait behind none of it."""
        self._rates.penalize(identity, self.limits.bad_message_cost - 1)

    def _admit(self, parsed: list[Inbound]) -> Iterator[Inbound]:
        for message in parsed:
            over = self._rates.charge(message.identity, message.size)
            if over:
                self.dropped[over] += 1
                continue
            self.received += 1
            yield message
