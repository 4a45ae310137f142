"""The intervention port: how a person reaches the envs of a running job or a deployed robot
(protocol: actors/INTERVENTION.md). Both actors (training envs) and deploy (a robot) serve it, so it
lives here, below both.

``InterventionPort`` binds a ZMQ ROUTER and serves it from a thread of its own, so that a client is
answered at once whatever the port's owner (``EnvActor``, or the deploy controller's ``RobotHumanLoop``;
anything with batched envs can own one) is doing: stepping a slow env, rendering, in a policy forward,
waiting on Ray between chunks. The port knows no env. Its thread keeps what clients asked for (who
controls which env, their latest actions, the episodes to end, a pause) behind a lock, and the owner
reads it before each step: which actions to replace (``actions``), which episodes to end
(``take_ends``), whether to wait (``paused``, ``hold``). What the owner sends (``send_frames``,
``send_to_watchers``) is queued to the port's thread over an inproc socket: a ZMQ socket is used by one
thread only, and here that is the port's.

Inbound traffic is read through ``striata.common.transport.open_router``'s reader within ``LIMITS``, so a
flood from one peer is dropped (counted in ``stats``) instead of reaching the handlers. Every message that
gets through is decoded by ``WIRE`` (``striata.common.wire``) into one of the typed messages below (size,
version, type, fields, env index, finite numbers checked); a bad one is answered with ``error`` and
otherwise ignored. One client controls an env at a time; a client silent for
``client_timeout_s`` is dropped and its envs go back to the policy. Sends never block: a client too slow
to read loses messages.

``HilConfig`` is the ``hil`` section of an experiment config (a training job's and a robot's ports).
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import zmq
from PIL import Image
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from striata.common.curve import CurveServer
from striata.common.transport import Inbound, TransportLimits, open_router
from striata.common.wire import Message, Reasons, Wire, WireError, field_error, is_number

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024  # the protocol's limit: a larger message is answered ``too_large``
# What a client reads back: a frame of the largest camera image (1920x1080 JPEG at quality 95) fits.
MAX_SENT_BYTES = 16 * 1024 * 1024
MAX_CLIENTS = 32
MAX_FPS = 60.0
# What reaches the port's handlers at all (common/transport.py); beyond these a message is dropped
# unanswered. Clients send one small map per message, tens a second: two frames or a message up to twice
# the protocol's limit still get an ``error`` that says what is wrong, larger floods only cost a count.
LIMITS = TransportLimits(
    max_frames=2,
    max_frame_bytes=2 * MAX_MESSAGE_BYTES,  # libzmq disconnects a peer that sends a larger frame
    max_message_bytes=2 * MAX_MESSAGE_BYTES,
    peer_bytes_per_s=1e6,
    peer_burst_bytes=1 << 20,
    peer_messages_per_s=500.0,
    peer_burst_messages=200,
)
OUTBOX_HWM = 1000  # messages the owner may have queued to the port's thread; more are lost
OUTBOX_PER_TURN = 256  # sent per turn of the port's thread, so that replies are not held up behind them
TURN_S = 0.02  # the port's thread wakes at least this often: to drop silent clients, to see ``close``
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
FREE_CAMERA = "free"  # MuJoCo's free camera (-1), offered when a model has no camera of its own
LABEL_NONE, LABEL_FAILURE, LABEL_SUCCESS = -1, 0, 1
HIL_FILE = "hil.json"


class HilConfig(BaseModel):
    """Human-in-the-loop: each actor serves an intervention port (off by default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = False
    allow_remote: bool = Field(default=False, description="allow hil.host beyond loopback (then use Curve)")
    host: str = Field(default="127.0.0.1", description="address each actor's port binds (a free port)")
    curve_secret: Path | None = Field(default=None, description="CurveZMQ: the ports' .key_secret")
    curve_clients: Path | None = Field(
        default=None, description="CurveZMQ: folder of the authorised consoles' .key files"
    )
    client_timeout_s: float = Field(default=2.0, gt=0, description="a client silent this long is dropped")
    action_timeout_s: float = Field(
        default=0.3, gt=0, description="a person's action older than this is replaced by the neutral one"
    )
    max_pause_s: float = Field(default=60.0, ge=0, description="longest pause a client can hold an actor in")
    takeover_speed: float = Field(
        default=1.0, gt=0, description="pace while an env is taken over: 1.0 = real time (control_dt a step)"
    )
    camera: str | None = Field(default=None, description="frames' default camera; default: the task's first")
    width: int = Field(default=160, ge=16, le=1920)
    height: int = Field(default=120, ge=16, le=1080)
    jpeg_quality: int = Field(default=80, ge=1, le=95)
    shadows: bool = Field(
        default=False, description="render shadows and reflections (several times slower on software GL)"
    )

    @field_validator("host")
    @classmethod
    def _loopback_unless_allowed(cls, host: str, info: ValidationInfo) -> str:
        if host not in LOOPBACK_HOSTS and not info.data.get("allow_remote", False):
            raise ValueError(f"{host!r} binds beyond loopback; set hil.allow_remote: true (and Curve keys)")
        return host

    @model_validator(mode="after")
    def _curve_pair(self) -> HilConfig:
        if (self.curve_secret is None) != (self.curve_clients is None):
            raise ValueError("hil.curve_secret and hil.curve_clients are given together or not at all")
        return self

    def chunk_allowance_s(self, chunk_length: int, control_dt: float) -> float:
        """Extra seconds a chunk may take with the port on: one full pause, every step at takeover pace."""
        if not self.enabled:
            return 0.0
        return self.max_pause_s + chunk_length * control_dt / self.takeover_speed


@dataclass(frozen=True)
class PortInfo:
    """What a ``welcome`` tells a client about the envs behind the port."""

    actor_id: int
    task: str
    task_text: str
    num_envs: int
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    control_dt: float
    cameras: tuple[str, ...]


@dataclass
class _Client:
    name: str
    last_seen: float
    watch: int | None = None
    camera: str = ""
    fps: float = 10.0  # 0: no frames (after a render failed)
    next_frame_at: float = 0.0


class ProtocolError(WireError):
    """A client message the port does not act on; becomes an ``error`` reply with its reason and detail."""


# Validators read the port's ``PortInfo`` from the validation context (``InterventionPort._decode``).
def _env_index(env: int, info: ValidationInfo) -> int:
    num_envs = info.context.num_envs
    if not 0 <= env < num_envs:
        raise field_error(f"out of range 0..{num_envs - 1}", reason="bad_env")
    return env


def _action(value: Any, info: ValidationInfo) -> np.ndarray:
    size = info.context.action_dim
    if not isinstance(value, list) or len(value) != size or not all(map(is_number, value)):
        raise field_error(f"expected a list of {size} numbers")
    action = np.asarray(value, dtype=np.float64)
    if not np.isfinite(action).all():
        raise field_error("values must be finite")
    return action


EnvIndex = Annotated[int, AfterValidator(_env_index)]


class Hello(Message):
    TYPE: ClassVar[str] = "hello"

    client: str = Field(default="", max_length=100)


class Ping(Message):
    TYPE: ClassVar[str] = "ping"


class Bye(Message):
    TYPE: ClassVar[str] = "bye"


class Watch(Message):
    TYPE: ClassVar[str] = "watch"

    env: EnvIndex
    camera: str | None = None  # None: the port's default camera
    fps: float = Field(default=10.0, gt=0, le=MAX_FPS)

    @field_validator("camera")
    @classmethod
    def _offered(cls, camera: str | None, info: ValidationInfo) -> str | None:
        if camera is not None and camera not in info.context.cameras:
            raise field_error(f"not among {list(info.context.cameras)}")
        return camera


class Unwatch(Message):
    TYPE: ClassVar[str] = "unwatch"


class Takeover(Message):
    TYPE: ClassVar[str] = "takeover"

    env: EnvIndex


class Handback(Message):
    TYPE: ClassVar[str] = "handback"

    env: EnvIndex


class Action(Message):
    TYPE: ClassVar[str] = "action"

    env: EnvIndex
    action: Annotated[np.ndarray, PlainValidator(_action)]


class Label(Message):
    """A person's verdict on the episode of ``env``; it ends at the next step."""

    TYPE: ClassVar[str] = "label"

    env: EnvIndex
    success: bool


class Reset(Message):
    TYPE: ClassVar[str] = "reset"

    env: EnvIndex


class Pause(Message):
    TYPE: ClassVar[str] = "pause"

    paused: bool


WIRE = Wire(
    version=PROTOCOL_VERSION,
    max_bytes=MAX_MESSAGE_BYTES,
    error=ProtocolError,
    reasons=Reasons(
        not_msgpack="bad_message",
        not_a_map="bad_message",
        bad_type="unknown_type",
        specific=frozenset({"bad_env"}),
    ),
    messages=(Hello, Ping, Bye, Watch, Unwatch, Takeover, Handback, Action, Label, Reset, Pause),
)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """uint8 [H, W, 3] RGB as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class InterventionPort:
    """The ROUTER socket of one actor, served by its own thread, and what its clients asked for (see the
    module docstring). Every method is for the owner's threads; the port's thread runs ``_serve``."""

    def __init__(
        self, cfg: HilConfig, info: PortInfo, default_camera: str | None = None, port: int | None = None
    ) -> None:
        """Bind at ``cfg.host`` on ``port``, or on a free port when it is None (``endpoint`` says which),
        and start serving."""
        if not info.cameras:
            raise ValueError("an intervention port needs at least one camera name (FREE_CAMERA for none)")
        self.cfg = cfg
        self.info = info
        self.default_camera = default_camera or info.cameras[0]
        if self.default_camera not in info.cameras:
            raise ValueError(f"hil.camera: {self.default_camera!r} is not among {list(info.cameras)}")
        n, a = info.num_envs, info.action_dim
        self.low = np.broadcast_to(np.asarray(info.action_low, dtype=np.float64), (a,)).copy()
        self.high = np.broadcast_to(np.asarray(info.action_high, dtype=np.float64), (a,)).copy()
        self.neutral = np.clip(np.zeros(a), self.low, self.high)
        # What clients asked for, written by the port's thread and read by the owner: under ``_lock``.
        self._lock = threading.Lock()
        self._resumed = threading.Condition(self._lock)  # notified when a pause ends
        self._controller: list[bytes | None] = [None] * n
        self._action = np.zeros((n, a))
        self._action_time = np.full(n, -math.inf)
        self._ends: dict[int, int] = {}
        self._clients: dict[bytes, _Client] = {}
        self._paused_by: bytes | None = None
        self._paused_since = 0.0
        self._received = 0
        self._dropped: dict[str, int] = {}
        self._context = zmq.Context()
        secure = cfg.curve_secret is not None and cfg.curve_clients is not None
        self._router = open_router(self._context, LIMITS, f"tcp://{cfg.host}", curve=secure)
        self._sock = self._router.sock
        self._sock.setsockopt(zmq.SNDHWM, 1000)
        self._auth = None
        if secure:
            self._auth = CurveServer(cfg.curve_secret, cfg.curve_clients).apply(self._context, self._sock)
        try:
            self.endpoint = self._bind(cfg.host, port)
        except zmq.ZMQError:  # an address in use: release the socket and the auth thread
            self._sock.close(linger=0)
            self._release()
            raise
        # The owner's messages reach the port's thread through an inproc pipe (``_outbox`` in, ``_queued``
        # out); ``_outbox_lock`` lets any of the owner's threads send.
        self._queued = self._context.socket(zmq.PULL)
        self._queued.setsockopt(zmq.RCVHWM, OUTBOX_HWM)
        self._queued.bind("inproc://outbox")
        self._outbox = self._context.socket(zmq.PUSH)
        self._outbox.setsockopt(zmq.SNDHWM, OUTBOX_HWM)
        self._outbox.setsockopt(zmq.LINGER, 0)
        self._outbox.connect("inproc://outbox")
        self._outbox_lock = threading.Lock()
        self._handlers: dict[type[Message], Callable[[bytes, _Client, Any, float], None]] = {
            Hello: self._hello, Ping: self._ping, Bye: self._bye, Watch: self._watch, Unwatch: self._unwatch,
            Takeover: self._takeover, Handback: self._handback, Action: self._action_msg, Label: self._label,
            Reset: self._reset, Pause: self._pause,
        }  # fmt: skip
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._serve, name=f"intervention-port-{info.actor_id}", daemon=True
        )
        self._thread.start()

    def _bind(self, host: str, port: int | None) -> str:
        if ":" in host:
            self._sock.setsockopt(zmq.IPV6, 1)
            host = f"[{host}]"
        if port is None:
            port = self._sock.bind_to_random_port(f"tcp://{host}")
        else:
            self._sock.bind(f"tcp://{host}:{port}")
        return f"tcp://{host}:{port}"

    # ----------------------------------------------------------------- what the owner asks
    @property
    def controlled(self) -> np.ndarray:
        """[N] bool: envs a client has taken over."""
        with self._lock:
            return np.array([c is not None for c in self._controller], dtype=bool)

    def actions(self, policy_actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The actions to execute and the envs a person acted in ([N] bool).

        A controlled env gets its client's latest action while it is younger than ``action_timeout_s``,
        the neutral action (zeros, clipped to the bounds) after that or before the first one. Raises if
        the port's thread has failed (the port would be deaf).
        """
        if self._failure is not None:
            raise RuntimeError("the intervention port's thread failed") from self._failure
        with self._lock:
            controlled = np.array([c is not None for c in self._controller], dtype=bool)
            if not controlled.any():
                return policy_actions, controlled
            fresh = time.monotonic() - self._action_time < self.cfg.action_timeout_s
            human = np.where(fresh[:, None], self._action, self.neutral)
        out = np.array(policy_actions, copy=True)
        out[controlled] = human[controlled]
        return out, controlled

    def take_ends(self) -> dict[int, int]:
        """Episodes to end at the coming step: env -> LABEL_SUCCESS, LABEL_FAILURE or LABEL_NONE (a reset)."""
        with self._lock:
            ends, self._ends = self._ends, {}
        return ends

    def watched(self) -> set[int]:
        """Envs some client watches."""
        with self._lock:
            return {c.watch for c in self._clients.values() if c.watch is not None}

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused_by is not None

    def hold(self, budget_s: float) -> float:
        """Wait while a client has paused the port, at most ``budget_s`` (then the pause ends); returns
        seconds held.

        A pause also ends after ``max_pause_s``, when its client resumes, or when that client is dropped.
        """
        start = time.monotonic()
        with self._resumed:
            while self._paused_by is not None:
                now = time.monotonic()
                left = min(budget_s - (now - start), self.cfg.max_pause_s - (now - self._paused_since))
                if left <= 0:
                    self._unpause("max_pause_s")
                    break
                self._resumed.wait(left)
        return time.monotonic() - start

    def send_frames(
        self, render: Callable[[int, str], np.ndarray], t: np.ndarray, episode: np.ndarray
    ) -> None:
        """Render (``render(env, camera) -> uint8 [H, W, 3]``) and send the frames that are due.

        A frame is due for a watcher when its ``fps`` allows; each (env, camera) is rendered once for all
        its watchers. ``t`` and ``episode`` [N] name the step whose observation the frame shows.
        """
        now = time.monotonic()
        due: dict[tuple[int, str], list[bytes]] = {}
        with self._lock:
            for identity, client in self._clients.items():
                if client.watch is not None and client.fps > 0 and now >= client.next_frame_at:
                    due.setdefault((client.watch, client.camera), []).append(identity)
                    client.next_frame_at = max(client.next_frame_at + 1.0 / client.fps, now)
        # Rendering takes tens of ms (hundreds on a busy machine): outside the lock, so the port's
        # thread takes messages meanwhile.
        for (env, camera), identities in due.items():
            try:
                image = render(env, camera)
            except (ValueError, RuntimeError) as exc:  # e.g. a frame larger than the model's framebuffer
                with self._lock:
                    for identity in identities:
                        client = self._clients.get(identity)
                        if client is not None and (client.watch, client.camera) == (env, camera):
                            client.fps = 0.0
                        self._error(identity, "render_failed", f"camera {camera!r} of env {env}: {exc}")
                continue
            message = WIRE.pack({
                "type": "frame", "env": env, "episode": int(episode[env]), "t": int(t[env]),
                "camera": camera, "width": int(image.shape[1]), "height": int(image.shape[0]),
                "jpeg": encode_jpeg(image, self.cfg.jpeg_quality),
            })  # fmt: skip
            for identity in identities:
                self._out(identity, message)

    def send_to_watchers(self, env: int, message: dict[str, Any]) -> None:
        """Send ``message`` (``step`` or ``episode_end``, without ``v``) to every client watching ``env``."""
        with self._lock:
            identities = [identity for identity, client in self._clients.items() if client.watch == env]
        if identities:
            packed = WIRE.pack(message)
            for identity in identities:
                self._out(identity, packed)

    def stats(self) -> dict[str, Any]:
        """Clients now, messages that reached the handlers, and those the transport dropped by reason."""
        with self._lock:
            return {"clients": len(self._clients), "received": self._received, "dropped": dict(self._dropped)}

    def close(self) -> None:
        """Stop the port's thread (within ``TURN_S``) and release the sockets."""
        self._stopping.set()
        self._thread.join()
        self._outbox.close(linger=0)
        self._release()

    def _release(self) -> None:
        if self._auth is not None:
            self._auth.stop()
        self._context.term()

    # ----------------------------------------------------------------- the port's thread
    def _serve(self) -> None:
        """Read, handle and answer what arrives, send what the owner queued, drop silent clients."""
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._queued, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                poller.poll(TURN_S * 1000)
                now = time.monotonic()
                inbound = self._router.receive(until=now + TURN_S)
                with self._lock:
                    for message in inbound:
                        self._handle(message, now)
                    self._expire(now)
                    self._received, self._dropped = self._router.received, dict(self._router.dropped)
                self._send_queued()
        except BaseException as exc:
            self._failure = exc  # the owner's next ``actions`` raises it
            raise
        finally:
            self._sock.close(linger=0)
            self._queued.close(linger=0)

    def _send_queued(self) -> None:
        for _ in range(OUTBOX_PER_TURN):
            try:
                identity, *frames = self._queued.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._send_now(identity, frames)

    def _send_now(self, identity: bytes, frames: list[bytes]) -> None:
        # A client whose queue is full misses this message; the env goes on.
        self._router.send(identity, frames)

    # ----------------------------------------------------------------- messages in (port's thread, locked)
    def _handle(self, inbound: Inbound, now: float) -> None:
        identity = inbound.identity
        try:
            message = self._decode(inbound.frames)
            client = self._clients.get(identity)
            if client is None:
                if len(self._clients) >= MAX_CLIENTS:
                    raise ProtocolError("too_many_clients", f"this port serves at most {MAX_CLIENTS} clients")
                client = self._clients[identity] = _Client(name="", last_seen=now)
            client.last_seen = now
            self._handlers[type(message)](identity, client, message, now)
        except ProtocolError as refusal:
            self._error(identity, refusal.reason, refusal.detail)

    def _decode(self, frames: list[bytes]) -> Message:
        if len(frames) != 1:
            raise ProtocolError("bad_message", f"expected one frame per message, got {len(frames)}")
        return WIRE.decode(frames[0], context=self.info)

    def _free_or_mine(self, identity: bytes, env: int) -> None:
        holder = self._controller[env]
        if holder is not None and holder != identity:
            raise ProtocolError("busy", f"env {env} is controlled by another client")

    def _hello(self, identity: bytes, client: _Client, message: Hello, now: float) -> None:
        client.name = message.client
        self._send(identity, {"type": "welcome", **asdict(self.info), "default_camera": self.default_camera})

    def _ping(self, identity: bytes, client: _Client, message: Ping, now: float) -> None:
        self._send(identity, {"type": "pong"})

    def _bye(self, identity: bytes, client: _Client, message: Bye, now: float) -> None:
        self._drop(identity)

    def _watch(self, identity: bytes, client: _Client, message: Watch, now: float) -> None:
        client.watch, client.fps, client.next_frame_at = message.env, message.fps, now
        client.camera = self.default_camera if message.camera is None else message.camera

    def _unwatch(self, identity: bytes, client: _Client, message: Unwatch, now: float) -> None:
        client.watch = None

    def _takeover(self, identity: bytes, client: _Client, message: Takeover, now: float) -> None:
        env = message.env
        self._free_or_mine(identity, env)
        if self._controller[env] is None:
            self._controller[env] = identity
            self._action_time[env] = -math.inf  # neutral until the client's first action
        self._send(identity, {"type": "control", "env": env, "controlled": True})

    def _handback(self, identity: bytes, client: _Client, message: Handback, now: float) -> None:
        env = message.env
        if self._controller[env] != identity:
            raise ProtocolError("not_controller", f"env {env} is not controlled by this client")
        self._controller[env] = None
        self._send(identity, {"type": "control", "env": env, "controlled": False})

    def _action_msg(self, identity: bytes, client: _Client, message: Action, now: float) -> None:
        env = message.env
        if self._controller[env] != identity:
            raise ProtocolError(
                "not_controller", f"env {env} is not controlled by this client; send takeover first"
            )
        self._action[env] = np.clip(message.action, self.low, self.high)
        self._action_time[env] = now

    def _label(self, identity: bytes, client: _Client, message: Label, now: float) -> None:
        self._end(identity, message.env, LABEL_SUCCESS if message.success else LABEL_FAILURE)

    def _reset(self, identity: bytes, client: _Client, message: Reset, now: float) -> None:
        self._end(identity, message.env, LABEL_NONE)

    def _end(self, identity: bytes, env: int, label: int) -> None:
        self._free_or_mine(identity, env)
        self._ends[env] = label
        self._send(identity, {"type": "queued", "env": env, "label": label})

    def _pause(self, identity: bytes, client: _Client, message: Pause, now: float) -> None:
        if message.paused:
            if self._paused_by is None:
                self._paused_since = now
            self._paused_by = identity
            self._broadcast({"type": "paused", "paused": True, "reason": "client"})
        elif self._paused_by is not None:
            self._unpause("client")

    # ----------------------------------------------------------------- bookkeeping (locked)
    def _unpause(self, reason: str) -> None:
        self._paused_by = None
        self._resumed.notify_all()
        self._broadcast({"type": "paused", "paused": False, "reason": reason})

    def _expire(self, now: float) -> None:
        timeout = self.cfg.client_timeout_s
        for identity in [i for i, c in self._clients.items() if now - c.last_seen > timeout]:
            self._drop(identity)

    def _drop(self, identity: bytes) -> None:
        """Forget a client: its watch ends, its envs go back to the policy, its pause ends."""
        self._clients.pop(identity, None)
        self._controller = [None if c == identity else c for c in self._controller]
        if self._paused_by == identity:
            self._unpause("client_gone")

    # ----------------------------------------------------------------- messages out
    def _out(self, identity: bytes, payload: bytes) -> None:
        """Send from the port's thread, queue from any other (the socket is the port's thread's)."""
        if threading.current_thread() is self._thread:
            self._send_now(identity, [payload])
            return
        # A full queue (the port's thread starved, clients too slow) loses the message, as a client would.
        with self._outbox_lock, contextlib.suppress(zmq.Again):
            self._outbox.send_multipart([identity, payload], zmq.NOBLOCK, copy=False)

    def _send(self, identity: bytes, message: dict[str, Any]) -> None:
        self._out(identity, WIRE.pack(message))

    def _error(self, identity: bytes, reason: str, detail: str) -> None:
        self._send(identity, {"type": "error", "reason": reason, "detail": detail})

    def _broadcast(self, message: dict[str, Any]) -> None:
        payload = WIRE.pack(message)
        for identity in self._clients:
            self._out(identity, payload)
