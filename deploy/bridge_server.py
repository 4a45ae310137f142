"""The robot-side bridge: one ZMQ ROUTER socket in front of any ``RobotBackend``, with all the safety.

Public API (robot backends plug in here; the wire format is in deploy/PROTOCOL.md)::

    from striata.deploy.bridge_server import BridgeServer
    from striata.deploy.safety import SafetyConfig

    server = BridgeServer(backend, "tcp://127.0.0.1:6000", SafetyConfig())
    stats = server.serve(stop=threading.Event(), duration_s=None)   # blocks; returns BridgeStats
    server.status()                                                  # thread-safe snapshot (dict)

``serve`` binds the endpoint (loopback only unless ``allow_remote=True``), then runs the backend's low-level
loop at ``backend.control_period_s`` on absolute deadlines: each tick reads the state, applies the latest
command through ``SafetyFilter`` and writes it (``backend.write_command``), and every ``state_every`` ticks
publishes the state to the controller. Between ticks it reads the socket through
``striata.common.transport.open_router``'s bounded reader, never past the next tick's deadline: a message of
any size or frame count, or a flood of them, costs the loop a bounded slice of time (what exceeds the bounds
is dropped unanswered and counted under ``dropped``). A valid command replaces the single latest-only slot
and is answered at once with a state message carrying ``ack_seq`` (the controller measures its round trip on
it). Every malformed or out-of-place message is rejected, counted by reason and answered with an ``error``
message. A welcome hands the controller a random ``session`` that its commands must carry, so a new
connection (even one reusing a routing id) must say hello. A hello changes no mode: the robot stays as it
was (limp at start, damping after anything else) until the new controller's first command.
The watchdog fires ``safety.watchdog_s`` after the last command, checked between ticks too, and
puts the robot in damping until a controller says hello again; an ``estop`` latches damping until
``clear_estop``. A backend whose state stops arriving (``striata.deploy.robot.StateLost``) does not stop the
bridge: it damps every tick, says why on stderr, and stays damping until the state is back and a
controller says hello again. ``on_phase(phase)`` is called when the controller's phase changes (the
sim bridge uses it to release its support). However ``serve`` ends (stop, duration, an exception),
it keeps commanding damping for ``safety.exit_damping_s`` (a robot may drop one message, and a
vendor queue may drop the last) and closes the socket (not the backend: its owner closes it).
With ``realtime`` (opt-in: on a shared machine a FIFO thread that busy-waits in a vendor SDK starves
everything else) the serving thread asks for SCHED_FIFO scheduling first (``striata.deploy.realtime``;
``priority`` says what it got). With ``spin`` (opt-in: it keeps a core busy) the loop polls the
socket between ticks instead of sleeping, which takes the CPU's wake-up out of the command round
trip; it cannot be combined with ``realtime``, because the kernel throttles a real-time thread that
never sleeps for tens of ms. With ``cpus`` the serving thread and ZMQ's I/O thread run only on those CPUs
(a core kept for the bridge), and the thread is put back when ``serve`` returns.
``curve`` (``striata.common.curve.CurveServer``) encrypts the socket and admits only listed controllers.
"""

from __future__ import annotations

import contextlib
import gc
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np
import zmq

from striata.common.curve import CurveServer
from striata.common.transport import Inbound, Router, TransportLimits, open_router
from striata.deploy import protocol
from striata.deploy.protocol import ClearEstop, Command, Estop, Hello, ProtocolError
from striata.deploy.realtime import LoopPlacement
from striata.deploy.robot import JointCommand, RobotBackend, RobotState, StateLost
from striata.deploy.safety import SafetyConfig, SafetyFilter
from striata.deploy.zmq_wait import poll_readable, wait_readable

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# More than this many ticks behind: re-anchor the schedule instead of running ticks back to back.
MAX_CATCH_UP_TICKS = 10
# One controller sends a command per policy step (50 Hz) and little else; a peer beyond these rates
# is flooding. Frames per call keep one read of the socket well inside a 2 ms tick.
BRIDGE_LIMITS = TransportLimits(
    max_frames=1,
    max_frame_bytes=protocol.MAX_MESSAGE_BYTES,
    max_message_bytes=protocol.MAX_MESSAGE_BYTES,
    peer_bytes_per_s=2e6,
    peer_burst_bytes=1 << 20,
    peer_messages_per_s=1000.0,
    peer_burst_messages=500,
    frames_per_call=32,
)


class BridgeConfigError(ValueError):
    """A bridge that cannot start as configured (endpoint, binding)."""


@dataclass
class BridgeStats:
    ticks: int = 0
    overruns: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    max_tick_lateness_s: float = 0.0
    max_tick_gap_s: float = 0.0
    state_lost_ticks: int = 0
    exit_damping_ticks: int = 0

    def as_dict(self) -> dict:
        return {
            "ticks": self.ticks,
            "overruns": self.overruns,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "dropped": dict(self.dropped),
            "max_tick_lateness_ms": round(self.max_tick_lateness_s * 1e3, 3),
            "max_tick_gap_ms": round(self.max_tick_gap_s * 1e3, 3),
            "state_lost_ticks": self.state_lost_ticks,
            "exit_damping_ticks": self.exit_damping_ticks,
        }


def check_endpoint(endpoint: str, allow_remote: bool) -> None:
    """Refuse non-TCP endpoints and, unless allowed, any bind address other than loopback."""
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("tcp", "ipc", "inproc") or (parsed.scheme == "tcp" and not parsed.port):
        raise BridgeConfigError(
            f"endpoint {endpoint!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME"
        )
    if parsed.scheme == "tcp" and parsed.hostname not in LOOPBACK_HOSTS and not allow_remote:
        raise BridgeConfigError(
            f"endpoint {endpoint!r}: binds beyond loopback; pass allow_remote (--allow-remote) to do that"
        )


class BridgeServer:
    """Runs ``backend`` at its low-level rate and serves one controller at a time over ZMQ."""

    def __init__(
        self,
        backend: RobotBackend,
        endpoint: str,
        safety: SafetyConfig,
        *,
        robot_name: str = "robot",
        state_every: int = 1,
        allow_remote: bool = False,
        on_phase: Callable[[str], None] | None = None,
        realtime: bool = False,
        spin: bool = False,
        curve: CurveServer | None = None,
        cpus: Sequence[int] | None = None,
    ) -> None:
        check_endpoint(endpoint, allow_remote)
        try:
            self.placement = LoopPlacement(cpus, realtime)
        except ValueError as exc:
            raise BridgeConfigError(str(exc)) from None
        if spin and realtime:
            raise BridgeConfigError(
                "spin with realtime: the kernel throttles a real-time thread that never sleeps; choose one"
            )
        self.backend = backend
        self.endpoint = endpoint
        self.safety = safety
        self.robot_name = robot_name
        self.state_every = max(1, state_every)
        self.on_phase = on_phase
        self._wait = poll_readable if spin else wait_readable
        self.curve = curve
        self.filter = SafetyFilter(
            safety,
            np.asarray(backend.joint_limits),
            np.asarray(backend.effort_limits),
            np.asarray(backend.velocity_limits),
            backend.brake_accel,
            backend.self_collision,
            backend.gain_limits,
            backend.applies_gains,
        )
        self.num_joints = len(backend.joint_names)
        self.stats = BridgeStats()
        self._lock = threading.Lock()
        self._owner: bytes | None = None
        self._session = 0
        self._command: Command | None = None
        self._last_command_at = -np.inf
        self._last_seq = -1
        self._watchdog_fired = False
        self._estop = False
        self._phase = ""
        self._mode = "zero_torque"
        self._mode_since = time.monotonic()
        self._state_seq = 0
        self._state: RobotState | None = None
        self._state_lost = False
        self._state_fresh = False
        self._last_tick_at = np.nan
        self._router: Router | None = None

    # ----------------------------------------------------------------- public
    def status(self) -> dict:
        """A snapshot: applied mode (zero_torque|damping|position) and since when (monotonic s), the
        controller's phase, whether the watchdog or e-stop holds damping, counters."""
        with self._lock:
            return {
                "mode": self._mode,
                "mode_since": self._mode_since,
                "phase": self._phase,
                "watchdog_fired": self._watchdog_fired,
                "estop": self._estop,
                "state_lost": self._state_lost,
                "reading_message": self._router is not None and self._router.mid_message,
                "connected": self._owner is not None,
                "last_command_at": self._last_command_at,
                **self.stats.as_dict(),
            }

    def latest_command(self) -> Command | None:
        """The command in the latest-only slot, as received (before the safety filter)."""
        with self._lock:
            return self._command

    @property
    def priority(self) -> str:
        """The serving thread's scheduling, in words (what ``realtime`` got)."""
        return self.placement.scheduling or "normal priority"

    def serve(self, stop: threading.Event | None = None, duration_s: float | None = None) -> BridgeStats:
        """Run until ``stop`` is set or ``duration_s`` has passed; the robot is left in damping."""
        self.placement.enter()  # first: ZMQ's I/O thread, started with the context, inherits it
        context = zmq.Context.instance()
        router = open_router(context, BRIDGE_LIMITS, self.endpoint, curve=self.curve is not None)
        sock = router.sock
        auth = self.curve.apply(context, sock) if self.curve is not None else None
        try:
            sock.setsockopt(zmq.SNDHWM, 100)
            self.stats.dropped = router.dropped
            self._router = router
            try:
                sock.bind(self.endpoint)
            except zmq.ZMQError as exc:
                raise BridgeConfigError(f"endpoint {self.endpoint!r}: {exc}") from None
            period = self.backend.control_period_s
            gc.collect()
            gc.freeze()  # long-lived setup objects out of the collector's scans: shorter GC pauses
            start = time.monotonic()
            end = np.inf if duration_s is None else start + duration_s
            anchor, k = start, 0
            self._read_state()
            while not (stop is not None and stop.is_set()) and time.monotonic() < end:
                deadline = anchor + k * period
                self._wait_and_receive(router, deadline)
                lateness = time.monotonic() - deadline
                self.stats.max_tick_lateness_s = max(self.stats.max_tick_lateness_s, lateness)
                self._tick(router)
                k += 1
                if time.monotonic() - (anchor + k * period) > MAX_CATCH_UP_TICKS * period:
                    self.stats.overruns += 1
                    anchor, k = time.monotonic(), 0
        finally:
            try:
                self._exit_damping()
            finally:
                sock.close(linger=0)
                if auth is not None:
                    auth.stop()
                self.placement.leave()
        return self.stats

    def _exit_damping(self) -> None:
        """Damping for ``exit_damping_s`` at the control period, however the loop ended."""
        period = self.backend.control_period_s
        end = time.monotonic() + self.safety.exit_damping_s
        while True:
            # Whatever ended the loop may be the robot itself: damp on the last state read if need be.
            with contextlib.suppress(Exception):
                self._read_state()
            if self._state is not None:
                self._apply("damping", self.filter.passive(self._state, damping=True))
                self.stats.exit_damping_ticks += 1
            if time.monotonic() >= end:
                return
            time.sleep(period)

    def _read_state(self) -> None:
        """Read the backend's newest state (``_state_fresh`` says whether this read found one); a lost
        state latches damping (said once on stderr), not an exit."""
        try:
            self._state = self.backend.read_state()
            self._state_fresh = True
        except StateLost as exc:
            self._state_fresh = False
            if not self._state_lost:
                print(
                    f"[bridge] robot state lost, damping until it is back and a controller says hello: {exc}",
                    file=sys.stderr,
                    flush=True,
                )
                with self._lock:
                    self._state_lost = True
            self.stats.state_lost_ticks += 1

    # ----------------------------------------------------------------- loop parts
    def _wait_and_receive(self, router: Router, deadline: float) -> None:
        while True:
            # Read what is queued before judging the watchdog: after a stall of this process, the
            # commands sent meanwhile are waiting in the socket, and the controller is not to blame.
            # Each read stops at the deadline and after a few frames, so no message can hold the tick.
            for message in router.receive(until=deadline):
                self._handle(router, message)
            now = time.monotonic()
            watchdog_at = self._last_command_at + self.safety.watchdog_s
            if self._command is not None and not self._watchdog_fired and now >= watchdog_at:
                self._fire_watchdog()
            if now >= deadline:
                return
            wait = deadline - now
            if self._command is not None and not self._watchdog_fired:
                wait = min(wait, watchdog_at - now)
            self._wait(router.sock, wait)

    def _handle(self, router: Router, inbound: Inbound) -> None:
        identity = inbound.identity
        try:
            message = protocol.decode_client_message(inbound.frames[0], self.num_joints)
            if isinstance(message, Hello):
                self._hello(router, identity, message)
            elif isinstance(message, Command):
                self._accept_command(router, identity, message)
            else:
                self._estop_message(router, identity, message)
        except ProtocolError as exc:
            self._reject(router, identity, exc)

    def _reject(self, router: Router, identity: bytes, exc: ProtocolError) -> None:
        with self._lock:
            self.stats.rejected[exc.reason] += 1
        self._send(router, identity, {"type": "error", "reason": exc.reason, "detail": exc.detail})

    def _hello(self, router: Router, identity: bytes, hello: Hello) -> None:
        silent = time.monotonic() - self._last_command_at > self.safety.watchdog_s
        if self._owner not in (None, identity) and not silent:
            raise ProtocolError("busy", "another controller is connected and commanding")
        with self._lock:
            self._owner = identity
            # Never 0, so a command without the welcome's session cannot match by accident.
            self._session = secrets.randbelow(2**53 - 1) + 1
            self._command = None
            self._last_seq = -1
            self._watchdog_fired = False
            if self._state_fresh:
                self._state_lost = False
            self.stats.accepted += 1
        backend = self.backend
        self._send(
            router,
            identity,
            {
                "type": "welcome",
                "robot": self.robot_name,
                "joint_names": list(backend.joint_names),
                "control_period_s": backend.control_period_s,
                "joint_limits": np.asarray(backend.joint_limits, dtype=np.float64).tolist(),
                "effort_limits": np.asarray(backend.effort_limits, dtype=np.float64),
                "velocity_limits": np.asarray(backend.velocity_limits, dtype=np.float64),
                "safety": self.safety.model_dump(),
                "limits": BRIDGE_LIMITS.as_dict(),
                "estop": self._estop,
                "mode": self._mode,
                "session": self._session,
            },
        )
        self._publish_state(router)

    def _accept_command(self, router: Router, identity: bytes, command: Command) -> None:
        if identity != self._owner or command.session != self._session:
            raise ProtocolError("not_owner", "send hello first (or another controller owns the robot)")
        if self._watchdog_fired:
            raise ProtocolError("watchdog_latched", "the watchdog fired; say hello again to resume")
        if command.seq <= self._last_seq:
            raise ProtocolError("stale_seq", f"seq {command.seq} <= last {self._last_seq}")
        with self._lock:
            self._command = command
            self._last_seq = command.seq
            self._last_command_at = time.monotonic()
            self.stats.accepted += 1
            changed = command.phase != self._phase
            self._phase = command.phase
        if changed and self.on_phase is not None:
            self.on_phase(command.phase)
        self._publish_state(router)

    def _estop_message(self, router: Router, identity: bytes, message: Estop | ClearEstop) -> None:
        release = isinstance(message, ClearEstop)
        if release and (identity != self._owner or message.session != self._session):
            raise ProtocolError("not_owner", "only the connected controller may clear the e-stop")
        with self._lock:
            self._estop = not release
            self.stats.accepted += 1
        if self._estop and self._state is not None:
            self._apply("damping", self.filter.passive(self._state, damping=True))
        self._publish_state(router)

    def _fire_watchdog(self) -> None:
        with self._lock:
            self._watchdog_fired = True
        if self._state is not None:
            self._apply("damping", self.filter.passive(self._state, damping=True))

    def _tick(self, router: Router) -> None:
        now = time.monotonic()
        self.stats.max_tick_gap_s = max(self.stats.max_tick_gap_s, now - self._last_tick_at)
        self._last_tick_at = now
        self._read_state()
        state = self._state
        if state is None:  # lost before the first reading: nothing to command yet
            return
        command = self._command
        if self._estop or self._watchdog_fired or self._state_lost:
            mode, joint_command = "damping", self.filter.passive(state, damping=True)
        elif command is None:  # after a hello: the robot stays as it was until the first command
            held = "zero_torque" if self._mode == "zero_torque" else "damping"
            mode, joint_command = held, self.filter.passive(state, damping=held == "damping")
        elif command.phase == "zero_torque":
            mode, joint_command = "zero_torque", self.filter.passive(state, damping=False)
        elif command.phase == "damping":
            mode, joint_command = "damping", self.filter.passive(state, damping=True)
        else:
            mode, joint_command = "position", self.filter.position(command, state)
        self._apply(mode, joint_command)
        self.stats.ticks += 1
        if self._state_fresh and self._owner is not None and self.stats.ticks % self.state_every == 0:
            self._publish_state(router)

    def _apply(self, mode: str, command: JointCommand) -> None:
        self.backend.write_command(command)
        if mode != self._mode:
            with self._lock:
                self._mode = mode
                self._mode_since = time.monotonic()

    # ----------------------------------------------------------------- sending
    def _publish_state(self, router: Router) -> None:
        state = self._state
        if self._owner is None or state is None:
            return
        self._state_seq += 1
        self._send(
            router,
            self._owner,
            {
                "type": "state",
                "seq": self._state_seq,
                "time": time.monotonic(),
                "tick": int(state.tick),
                "q": state.q,
                "dq": state.dq,
                "imu_quat": np.asarray(state.imu_quat_wxyz),
                "gyro": np.asarray(state.gyro),
                "tau": state.tau,
                "ack_seq": self._last_seq,
                "mode": "estop" if self._estop else self._mode,
                "remote": list(state.remote),
                "rejected": sum(self.stats.rejected.values()),
            },
        )

    def _send(self, router: Router, identity: bytes, message: dict) -> None:
        # A peer that is gone or not reading: states are latest-only, so dropping is correct.
        router.send(identity, [protocol.encode(message)])
