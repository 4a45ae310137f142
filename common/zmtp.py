"""A ROUTER that speaks ZMTP 3.1 itself over a ZMQ_STREAM socket, so that every bound holds while a
message arrives, not after.

libzmq's own ROUTER hands a multipart message over only whole: a peer that sends one message of a
million one-byte frames makes the reader copy out a million frames (about 0.6 s of one core) before it
sees the next client's request, and libzmq holds them all in memory meanwhile. Here libzmq only moves
bytes (a STREAM socket: TCP chunks of up to 8 KB, tagged with the connection) and the frames are parsed
as the chunks arrive. A frame header over ``max_frame_bytes``, a message's ``max_frames + 1``-th frame
header, its bytes past ``max_message_bytes``, or any breach of the protocol closes that connection at
once; its unread chunks are skipped at the cost of one ``recv`` each, and what the kernel still holds is
never read. So a hostile peer costs the server a few microseconds per 8 KB it managed to send before its
connection was closed, and at most ``max_message_bytes`` of memory. A peer past its message or byte
rate (``PeerRates``) loses the messages beyond it, as with libzmq's ROUTER.

Peers are ordinary ZMTP 3.x clients (libzmq DEALER or REQ, NULL security): the greeting, the READY
handshake and PING/PONG are answered as libzmq's ROUTER answers them (RFC 37/ZMTP). A peer's
``Identity`` property becomes its routing id, as ``ZMQ_ROUTING_ID`` does with libzmq; an id already
connected is refused, as libzmq refuses it. Without one, the peer gets a fresh 5-byte id.

CURVE is libzmq's, so a server with CURVE keeps libzmq's ROUTER (``striata.common.transport``); only
peers that passed its handshake can send there.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import zmq

from striata.common.transport_limits import Inbound, PeerGate, TransportLimits

GREETING_BYTES = 64
# signature (0xFF, 8 bytes padding, 0x7F), version 3.1, mechanism NULL, as-server 0, filler.
GREETING = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\0") + b"\0" + bytes(31)
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04
_RESERVED_BITS = 0xF8
# A command (READY, PING) a client sends is a few dozen bytes; a larger one is not a client.
MAX_COMMAND_BYTES = 4096
# Socket types whose messages a ROUTER may take (RFC 28, 37).
PEER_SOCKET_TYPES = frozenset({b"DEALER", b"REQ", b"ROUTER"})
# Connections this router closed, remembered so that the chunks libzmq had already queued for them and
# their disconnect notice are skipped rather than taken for a new connection.
_REMEMBERED_CLOSED = 4096
# Chunks read between two clock reads.
_CLOCK_EVERY = 8


class ZmtpError(Exception):
    """A peer broke a bound or the protocol; ``reason`` is what ``dropped`` counts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def command(name: bytes, body: bytes = b"") -> bytes:
    """A command frame (RFC 37 section "Commands")."""
    payload = bytes([len(name)]) + name + body
    return _header(_COMMAND, len(payload)) + payload


def ready_command(socket_type: bytes) -> bytes:
    """The NULL mechanism's READY, with the one property a peer checks: its partner's socket type."""
    return command(b"READY", _property(b"Socket-Type", socket_type))


def encode_message(frames: list[bytes]) -> bytes:
    """One message as bytes on the wire: each frame with its header, MORE on all but the last."""
    parts: list[bytes] = []
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        parts.append(_header(_MORE if i < last else 0, len(frame)))
        parts.append(frame)
    return b"".join(parts)


def parse_command(body: bytes) -> tuple[bytes, bytes]:
    """A command frame's body split into its name and its data."""
    if not body or len(body) < 1 + body[0]:
        raise ZmtpError("protocol_error")
    return body[1 : 1 + body[0]], body[1 + body[0] :]


def parse_properties(data: bytes) -> dict[bytes, bytes]:
    """READY's metadata (name-size, name, 4-byte value-size, value; repeated), names lower-cased."""
    properties: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        size = data[pos]
        name = data[pos + 1 : pos + 1 + size]
        pos += 1 + size
        if len(name) != size or pos + 4 > len(data):
            raise ZmtpError("protocol_error")
        (value_size,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + value_size > len(data):
            raise ZmtpError("protocol_error")
        properties[name.lower()] = data[pos : pos + value_size]
        pos += value_size
    return properties


def check_greeting(greeting: bytes | bytearray) -> None:
    """A ZMTP 3.x greeting with the NULL mechanism, or ``ZmtpError``."""
    if greeting[0] != 0xFF or not greeting[9] & 1:
        raise ZmtpError("protocol_error")
    if greeting[10] < 3:
        raise ZmtpError("unsupported_version")
    if bytes(greeting[12:32]).rstrip(b"\0") != b"NULL":
        raise ZmtpError("unsupported_mechanism")


def _header(flags: int, size: int) -> bytes:
    if size > 255:
        return bytes([flags | _LONG]) + size.to_bytes(8, "big")
    return bytes([flags, size])


def _property(name: bytes, value: bytes) -> bytes:
    return bytes([len(name)]) + name + struct.pack(">I", len(value)) + value


@dataclass
class _Connection:
    stream_id: bytes
    buffer: bytearray = field(default_factory=bytearray)
    greeted: bool = False
    identity: bytes = b""  # set by READY; empty until then
    frames: list[bytes] = field(default_factory=list)
    size: int = 0


class StreamRouter(PeerGate):
    """Reads and writes a ZMQ_STREAM socket as a ROUTER would, within ``limits``; ``receive`` returns
    only messages inside every bound, ``send`` answers a peer by its routing id.

    Not thread-safe, like the socket it owns: one thread owns both.
    """

    def __init__(self, sock: zmq.Socket, limits: TransportLimits) -> None:
        if sock.type != zmq.STREAM:
            raise ValueError(f"StreamRouter needs a ZMQ_STREAM socket, got socket type {sock.type}")
        super().__init__(limits)
        self.sock = sock
        self._connections: dict[bytes, _Connection] = {}
        self._routes: dict[bytes, bytes] = {}  # routing id -> stream id
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        self._next_id = 0

    @property
    def mid_message(self) -> bool:
        """True while a message is half read (more of its frames are on their way)."""
        return any(c.frames for c in self._connections.values())

    @property
    def peers(self) -> int:
        """Connections open now, handshake done or not."""
        return len(self._connections)

    def receive(self, until: float | None = None) -> Iterator[Inbound]:
        """Messages that are complete now, reading at most ``frames_per_call`` chunks and stopping at
        ``until`` (monotonic seconds); never blocks. Each is charged to its peer's rate as it is taken."""
        out: list[Inbound] = []
        for n in range(self.limits.frames_per_call):
            if until is not None and n % _CLOCK_EVERY == _CLOCK_EVERY - 1 and time.monotonic() >= until:
                break
            try:
                stream_id, chunk = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._chunk(stream_id, chunk, out)
        return self._admit(out)

    def send(self, identity: bytes, frames: list[bytes]) -> bool:
        """Queue ``frames`` for the peer with routing id ``identity``; False if it is gone or not reading."""
        stream_id = self._routes.get(identity)
        if stream_id is None:
            return False
        try:
            self.sock.send_multipart([stream_id, encode_message(frames)], zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        return True

    # ----------------------------------------------------------------- inbound
    def _chunk(self, stream_id: bytes, chunk: bytes, out: list[Inbound]) -> None:
        connection = self._connections.get(stream_id)
        if connection is None:
            if stream_id in self._closed:
                if not chunk:  # its disconnect notice: nothing more will come
                    del self._closed[stream_id]
            elif not chunk:  # a connect notice
                self._accept(stream_id)
            return
        if not chunk:  # the peer went away
            self._forget(connection)
            return
        # Most chunks start on a frame boundary: parse them as they came, without copying them first;
        # the rest of a frame (an image over many chunks) grows the connection's buffer in place.
        buffer = connection.buffer
        data: bytes | bytearray = chunk
        if buffer:
            buffer += chunk
            data = buffer
        try:
            pos = self._parse(connection, data, out)
        except ZmtpError as exc:
            self._close(connection, exc.reason)
            return
        if data is buffer:
            del buffer[:pos]
        elif pos < len(chunk):
            buffer += chunk[pos:]

    def _accept(self, stream_id: bytes) -> None:
        if len(self._connections) >= self.limits.max_connections:
            self._hang_up(stream_id)
            self.dropped["too_many_connections"] += 1
            return
        self._connections[stream_id] = _Connection(stream_id)
        # Our whole greeting and READY at once: a ZMTP 3 peer reads them in order after its own greeting.
        with contextlib.suppress(zmq.ZMQError):
            self.sock.send_multipart([stream_id, GREETING + ready_command(b"ROUTER")], zmq.NOBLOCK)

    def _parse(self, connection: _Connection, buffer: bytes | bytearray, out: list[Inbound]) -> int:
        """Take the complete frames of ``buffer`` (the connection's unparsed bytes); the bytes taken."""
        pos = 0
        if not connection.greeted:
            if buffer[0] != 0xFF:
                raise ZmtpError("protocol_error")
            if len(buffer) < GREETING_BYTES:
                return 0
            check_greeting(buffer[:GREETING_BYTES])
            connection.greeted, pos = True, GREETING_BYTES
        limits = self.limits
        end = len(buffer)
        while end - pos >= 2:
            flags = buffer[pos]
            if flags & _RESERVED_BITS:
                raise ZmtpError("protocol_error")
            if flags & _LONG:
                if end - pos < 9:
                    break
                size, head = int.from_bytes(buffer[pos + 1 : pos + 9], "big"), 9
            else:
                size, head = buffer[pos + 1], 2
            # Every bound is judged on the header, before the frame's bytes are waited for.
            if flags & _COMMAND:
                if size > MAX_COMMAND_BYTES:
                    raise ZmtpError("protocol_error")
            elif not connection.identity:
                raise ZmtpError("protocol_error")  # a message before the handshake
            elif size > limits.max_frame_bytes:
                raise ZmtpError("frame_too_large")
            elif len(connection.frames) >= limits.max_frames:
                raise ZmtpError("too_many_frames")
            elif connection.size + size > limits.max_message_bytes:
                raise ZmtpError("message_too_large")
            if end - pos < head + size:
                break
            body = bytes(buffer[pos + head : pos + head + size]) if size else b""
            pos += head + size
            if flags & _COMMAND:
                self._command(connection, body)
            else:
                connection.frames.append(body)
                connection.size += size
                if not flags & _MORE:
                    self._complete(connection, out)
        return pos

    def _command(self, connection: _Connection, body: bytes) -> None:
        name, data = parse_command(body)
        if name == b"READY" and not connection.identity:
            self._ready(connection, parse_properties(data))
        elif name == b"PING" and len(data) >= 2:  # its TTL (2 bytes), then the context PONG echoes
            with contextlib.suppress(zmq.ZMQError):
                self.sock.send_multipart([connection.stream_id, command(b"PONG", data[2:18])], zmq.NOBLOCK)
        elif name == b"ERROR":
            raise ZmtpError("peer_error")
        elif name != b"PONG":
            raise ZmtpError("protocol_error")

    def _ready(self, connection: _Connection, properties: dict[bytes, bytes]) -> None:
        if properties.get(b"socket-type") not in PEER_SOCKET_TYPES:
            raise ZmtpError("incompatible_socket_type")
        identity = properties.get(b"identity", b"")
        if identity:
            if identity in self._routes:
                raise ZmtpError("routing_id_in_use")
        else:
            # As libzmq does: a zero byte, then a counter (skipping an id a peer chose to look like one).
            while not identity or identity in self._routes:
                self._next_id = (self._next_id + 1) % (1 << 32)
                identity = b"\0" + self._next_id.to_bytes(4, "big")
        connection.identity = identity
        self._routes[identity] = connection.stream_id

    def _complete(self, connection: _Connection, out: list[Inbound]) -> None:
        out.append(Inbound(connection.identity, connection.frames))
        connection.frames, connection.size = [], 0

    # ----------------------------------------------------------------- connections
    def _close(self, connection: _Connection, reason: str) -> None:
        self.dropped[reason] += 1
        self._forget(connection)
        self._hang_up(connection.stream_id)

    def _forget(self, connection: _Connection) -> None:
        del self._connections[connection.stream_id]
        if connection.identity and self._routes.get(connection.identity) == connection.stream_id:
            del self._routes[connection.identity]

    def _hang_up(self, stream_id: bytes) -> None:
        # An empty message on a STREAM socket closes that connection.
        try:
            self.sock.send_multipart([stream_id, b""], zmq.NOBLOCK)
        except zmq.ZMQError:
            return
        self._closed[stream_id] = None
        if len(self._closed) > _REMEMBERED_CLOSED:
            self._closed.popitem(last=False)
