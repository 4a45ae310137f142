"""The ZMTP router (``striata.common.zmtp``) against libzmq peers, a client written from RFC 37 alone
over a plain TCP socket, and peers that break the protocol or the bounds."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from striata.common.floods import send_million_frames
from striata.common.transport import Inbound, StreamRouter, TransportLimits, open_router

LIMITS = TransportLimits(
    max_frames=3, max_frame_bytes=4096, max_message_bytes=8192, max_connections=8, frames_per_call=64
)


class Served:
    """A StreamRouter on loopback, echoing every message back with a last frame ``echo``, in its own
    thread (a REQ's envelope comes first, so a REQ peer gets its reply too)."""

    def __init__(self, limits: TransportLimits = LIMITS) -> None:
        self.context = zmq.Context()
        self.router = open_router(self.context, limits, "tcp://127.0.0.1")
        assert isinstance(self.router, StreamRouter)
        self.router.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.router.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.seen: list[Inbound] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._stats: dict = {"dropped": {}, "peers": 0}
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            if self.router.sock.poll(20):
                for message in self.router.receive():
                    self.seen.append(message)
                    self.router.send(message.identity, [*message.frames, b"echo"])
            with self._lock:
                self._stats = {"dropped": dict(self.router.dropped), "peers": self.router.peers}

    def stats(self) -> dict:
        with self._lock:
            return dict(self._stats)

    def wait_for(self, predicate, what: str, timeout_s: float = 10.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate(self.stats()):
                return
            time.sleep(0.005)
        raise AssertionError(f"timed out waiting for {what}: {self.stats()}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.router.sock.close(linger=0)
        self.context.term()


@pytest.fixture
def served() -> Iterator[Served]:
    running = Served()
    yield running
    running.close()


def _dealer(context: zmq.Context, endpoint: str, routing_id: bytes | None = None) -> zmq.Socket:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(endpoint)
    return sock


def _reply(sock: zmq.Socket, timeout_ms: int = 5000) -> list[bytes]:
    assert sock.poll(timeout_ms), "no reply"
    return sock.recv_multipart()


# ----------------------------------------------------------------- a client from RFC 37 alone
GREETING = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\0") + b"\0" + bytes(31)


def _frame(body: bytes, more: bool = False, command: bool = False) -> bytes:
    flags = (1 if more else 0) | (4 if command else 0)
    if len(body) > 255:
        return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


def _ready(socket_type: bytes, identity: bytes = b"") -> bytes:
    props = b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    props += b"\x08Identity" + struct.pack(">I", len(identity)) + identity
    return _frame(b"\x05READY" + props, command=True)


class RawPeer:
    """A TCP socket that speaks ZMTP 3.1 by hand, as RFC 37 describes it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read_frame(self) -> tuple[int, bytes]:
        flags = self.read(1)[0]
        size = struct.unpack(">Q", self.read(8))[0] if flags & 2 else self.read(1)[0]
        return flags, self.read(size)

    def handshake(self, socket_type: bytes = b"DEALER", identity: bytes = b"") -> dict[bytes, bytes]:
        self.send(GREETING + _ready(socket_type, identity))
        greeting = self.read(64)
        assert greeting[0] == 0xFF and greeting[9] == 0x7F and greeting[10] == 3
        assert greeting[12:32].rstrip(b"\0") == b"NULL"
        flags, body = self.read_frame()
        assert flags & 4 and body[: 1 + body[0]] == b"\x05READY"
        return {b"socket-type": body.split(b"Socket-Type")[1][4:]}

    def closed_by_server(self, timeout_s: float = 5.0) -> bool:
        self.sock.settimeout(timeout_s)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def test_a_client_written_from_the_rfc_alone_is_answered(served: Served) -> None:
    peer = RawPeer(served.port)
    assert peer.handshake()[b"socket-type"] == b"ROUTER"
    long_frame = bytes(range(256)) * 4  # over 255 bytes: the 8-byte size form
    peer.send(_frame(b"hello", more=True) + _frame(long_frame))
    assert [peer.read_frame()[1] for _ in range(3)] == [b"hello", long_frame, b"echo"]
    # A PING (TTL, then a context) is answered with a PONG carrying the context.
    peer.send(_frame(b"\x04PING" + b"\x00\x0a" + b"ctx", command=True))
    flags, body = peer.read_frame()
    assert flags & 4 and body == b"\x04PONGctx"
    peer.close()


def test_libzmq_dealer_and_req_peers_are_served_as_by_a_router(served: Served) -> None:
    context = zmq.Context()
    try:
        dealer = _dealer(context, served.endpoint)
        dealer.send_multipart([b"a", b"b"])
        assert _reply(dealer) == [b"a", b"b", b"echo"]
        req = context.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.ROUTING_ID, b"named")
        req.connect(served.endpoint)
        req.send(b"question")
        # A REQ's envelope (the empty delimiter) reaches the application, as with libzmq's ROUTER.
        assert _reply(req) == [b"question", b"echo"]
        assert any(m.identity == b"named" and m.frames == [b"", b"question"] for m in served.seen)
        generated = [m.identity for m in served.seen if m.frames == [b"a", b"b"]]
        assert len(generated) == 1 and generated[0][:1] == b"\0" and len(generated[0]) == 5
        # A second connection with a routing id in use is refused, as libzmq refuses it.
        twin = _dealer(context, served.endpoint, b"named")
        twin.send(b"who")
        served.wait_for(lambda s: s["dropped"].get("routing_id_in_use", 0) >= 1, "the twin refused")
        assert not twin.poll(200)
        # Heartbeats (ZMTP 3.1 PING/PONG from libzmq) keep a quiet connection up.
        beating = context.socket(zmq.DEALER)
        beating.setsockopt(zmq.LINGER, 0)
        for option, value in ((zmq.HEARTBEAT_IVL, 50), (zmq.HEARTBEAT_TIMEOUT, 150)):
            beating.setsockopt(option, value)
        monitor = beating.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        beating.connect(served.endpoint)
        beating.send(b"first")
        assert _reply(beating) == [b"first", b"echo"]
        time.sleep(0.6)  # a dozen heartbeats: a timeout would disconnect (checked on the monitor)
        assert not monitor.poll(0)
        beating.disable_monitor()
        monitor.close(linger=0)
    finally:
        context.destroy(linger=0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "protocol_error"),
        (b"\xff" + bytes(8) + b"\x7f\x02\x00" + bytes(52), "unsupported_version"),
        (b"\xff" + bytes(8) + b"\x7f\x03\x01" + b"PLAIN".ljust(20, b"\0") + bytes(32), "unsupported_mechanism"),  # noqa: E501
        (GREETING + _ready(b"PUB"), "incompatible_socket_type"),
        (GREETING + _frame(b"before the handshake"), "protocol_error"),
        (GREETING + _ready(b"DEALER") + b"\x08\x01x", "protocol_error"),  # a reserved flag bit
        (GREETING + _ready(b"DEALER") + b"\x02" + struct.pack(">Q", 1 << 60), "frame_too_large"),
        (GREETING + _ready(b"DEALER") + _frame(b"x", more=True) * 3 + _frame(b"x"), "too_many_frames"),
        (GREETING + _ready(b"DEALER") + _frame(bytes(4000), more=True) * 3, "message_too_large"),
        (GREETING + b"\x06" + struct.pack(">Q", 1 << 20), "protocol_error"),  # a 1 MB command
    ],
    ids=[
        "http", "zmtp2", "plain", "pub", "early_message", "reserved_bit", "huge_header", "frames",
        "message_bytes", "huge_command",
    ],
)  # fmt: skip
def test_a_peer_that_breaks_a_bound_is_closed_at_once_and_others_are_served(served, data, reason) -> None:
    context = zmq.Context()
    try:
        honest = _dealer(context, served.endpoint)
        honest.send(b"before")
        assert _reply(honest) == [b"before", b"echo"]
        hostile = RawPeer(served.port)
        hostile.send(data)
        # Closed without the server waiting for the bytes a header announces.
        assert hostile.closed_by_server(), reason
        served.wait_for(lambda s: s["dropped"].get(reason, 0) == 1, reason)
        honest.send(b"after")
        assert _reply(honest) == [b"after", b"echo"]
        hostile.close()
    finally:
        context.destroy(linger=0)


def test_a_message_of_a_million_frames_costs_its_connection_not_the_others_turn(served: Served) -> None:
    context = zmq.Context()
    try:
        honest = _dealer(context, served.endpoint)
        attacker = _dealer(context, served.endpoint)
        honest.send(b"warm")
        _reply(honest)
        send_million_frames(attacker)
        served.wait_for(lambda s: s["dropped"].get("too_many_frames", 0) >= 1, "the flood dropped")
        honest.send(b"after")
        assert _reply(honest) == [b"after", b"echo"]
    finally:
        context.destroy(linger=0)


def test_connections_beyond_the_limit_are_closed(served: Served) -> None:
    peers = [RawPeer(served.port) for _ in range(LIMITS.max_connections)]
    served.wait_for(lambda s: s["peers"] == LIMITS.max_connections, "every connection accepted")
    extra = RawPeer(served.port)
    assert extra.closed_by_server()
    served.wait_for(lambda s: s["dropped"] == {"too_many_connections": 1}, "the extra one counted")
    for peer in [*peers, extra]:
        peer.close()
    served.wait_for(lambda s: s["peers"] == 0, "every connection gone")


@pytest.mark.parametrize("scheme", ["tcp", "ipc"])
def test_a_penalized_peer_loses_its_next_messages_even_within_one_read(scheme: str, tmp_path) -> None:
    """Both readers charge a message to its peer as the server takes it: once the server penalizes a
    malformed message, the same peer's later ones are dropped, those already read included; another peer's
    pass."""
    limits = TransportLimits(peer_burst_messages=20, peer_messages_per_s=1.0, bad_message_cost=64)
    endpoint = "tcp://127.0.0.1:*" if scheme == "tcp" else f"ipc://{tmp_path}/router"
    context = zmq.Context()
    router = open_router(context, limits, endpoint)
    router.sock.bind(endpoint)
    bound = router.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        bad, good = _dealer(context, bound, b"bad"), _dealer(context, bound, b"good")
        for i in range(10):
            bad.send(b"garbage %d" % i)
        good.send(b"fine")
        taken: list[bytes] = []
        give_up = time.monotonic() + 10.0
        while len(taken) + router.dropped["peer_over_message_rate"] < 11 and time.monotonic() < give_up:
            router.sock.poll(20)
            for message in router.receive():
                taken.append(message.frames[-1])
                if message.frames[-1].startswith(b"garbage"):
                    router.penalize(message.identity)
        assert taken == [b"garbage 0", b"fine"] or taken == [b"fine", b"garbage 0"]
        assert router.dropped["peer_over_message_rate"] == 9
        assert router.received == 2
    finally:
        context.destroy(linger=0)
