"""The actor side of the reward server: submit frames without ever blocking, poll for labels.

``RewardClient.submit`` sends with ``NOBLOCK`` on a DEALER socket that queues only to a live
connection (``ZMQ_IMMEDIATE``): a full socket or a dead server makes it return False and count a
drop, never raise or wait. ``poll`` returns every label that is settled, matched to
(actor_id, episode_id, t): each submitted request yields exactly one label, whose status is the
server's (``ok``, ``timeout``, ``overloaded``, ``parse_error``, ``model_error``, ``bad_request``) or
the client's own: ``dropped`` (never sent) or ``late`` (no reply by its deadline plus a grace).
ZMQ reconnects by itself, so labels resume when a killed server is back on the same endpoint.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from striata.reward_server.protocol import ProtocolError, ScoreReply, decode_reply, encode_request, pack

CLIENT_STATUSES = ("dropped", "late")


@dataclass
class RewardLabel:
    """One settled request; values are NaN unless ``status == "ok"``."""

    request_id: int
    actor_id: int
    episode_id: int
    t: int
    status: str
    progress: float = math.nan
    delta: float = math.nan
    done_prob: float = math.nan
    uncertainty: float = math.nan
    cache_hit: bool = False
    round_trip_ms: float = math.nan
    model_id: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class _InFlight:
    episode_id: int
    t: int
    sent: float
    expires: float


class RewardServerUnavailable(RuntimeError):
    """No answer from the reward server within the timeout."""


class RewardClient:
    """One per actor. Not thread-safe (ZMQ sockets are not): use it from the thread that steps the env."""

    def __init__(
        self,
        endpoint: str,
        actor_id: int,
        *,
        deadline_ms: float = 2000.0,
        late_grace_ms: float = 250.0,
        send_hwm: int = 256,
        jpeg_quality: int | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.actor_id = actor_id
        self.deadline_ms = deadline_ms
        self.late_grace_ms = late_grace_ms
        self.jpeg_quality = jpeg_quality
        self._socket = _dealer(context or zmq.Context.instance(), endpoint, send_hwm)
        self._next_id = 0
        self._in_flight: dict[int, _InFlight] = {}
        self._settled: list[RewardLabel] = []
        self.counts: Counter[str] = Counter()
        self._healthy = False

    def submit(
        self,
        episode_id: int,
        t: int,
        task: str,
        frames: dict[str, np.ndarray],
        *,
        mode: str = "progress",
        reference_frames: dict[str, np.ndarray] | None = None,
        deadline_ms: float | None = None,
    ) -> bool:
        """Queue one request; False (and a ``dropped`` label) when it could not be sent right now."""
        request_id = self._next_id
        self._next_id += 1
        deadline_ms = self.deadline_ms if deadline_ms is None else deadline_ms
        message = encode_request(
            request_id=request_id,
            actor_id=self.actor_id,
            episode_id=int(episode_id),
            t=int(t),
            task=task,
            mode=mode,
            deadline_ms=deadline_ms,
            frames=frames,
            reference_frames=reference_frames,
            jpeg_quality=self.jpeg_quality,
        )
        self.counts["submitted"] += 1
        try:
            self._socket.send_multipart(message, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:  # EAGAIN: full socket or no live connection
            self.counts["dropped"] += 1
            self._settled.append(RewardLabel(request_id, self.actor_id, int(episode_id), int(t), "dropped"))
            return False
        now = time.monotonic()
        self._in_flight[request_id] = _InFlight(
            int(episode_id), int(t), now, now + (deadline_ms + self.late_grace_ms) / 1000
        )
        return True

    def poll(self, max_messages: int = 10_000) -> list[RewardLabel]:
        """Labels settled since the last call: replies that arrived, requests that went late, drops."""
        for _ in range(max_messages):
            try:
                raw = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._on_reply(raw)
        now = time.monotonic()
        for request_id in [r for r, f in self._in_flight.items() if f.expires <= now]:
            flight = self._in_flight.pop(request_id)
            self.counts["late"] += 1
            self._settled.append(RewardLabel(request_id, self.actor_id, flight.episode_id, flight.t, "late"))
        labels, self._settled = self._settled, []
        return labels

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Block until the server answers a health request on this socket (setup, not stepping)."""
        give_up = time.monotonic() + timeout_s
        self._healthy = False
        sent_at = -math.inf
        while time.monotonic() < give_up:
            if time.monotonic() - sent_at > 0.5:
                try:
                    self._socket.send(pack({"type": "health"}), zmq.NOBLOCK)
                    sent_at = time.monotonic()
                except zmq.Again:
                    pass  # not connected yet
            if self._socket.poll(20, zmq.POLLIN):
                self._settled.extend(self.poll())
                if self._healthy:
                    return True
        return False

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` until a reply is there for ``poll`` (scripts and benchmarks; an actor
        stepping envs never waits, it polls)."""
        return bool(self._socket.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN))

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _on_reply(self, raw: bytes) -> None:
        try:
            reply = decode_reply(raw)
        except ProtocolError:
            self.counts["bad_replies"] += 1
            return
        if reply.get("type") == "health":
            self._healthy = reply.get("status") == "ok"
            return
        try:
            score = ScoreReply.of(reply)
        except ProtocolError:
            self.counts["bad_replies"] += 1
            return
        flight = self._in_flight.pop(score.request_id, None)
        if flight is None:
            # Already reported late, or an answer to a request that could not be decoded at all.
            self.counts["unmatched_replies"] += 1
            return
        self.counts[score.status] += 1
        self._settled.append(
            RewardLabel(
                request_id=score.request_id,
                actor_id=self.actor_id,
                episode_id=flight.episode_id,
                t=flight.t,
                status=score.status,
                progress=score.progress,
                delta=score.delta,
                done_prob=score.done_prob,
                uncertainty=score.uncertainty,
                cache_hit=score.cache_hit,
                round_trip_ms=(time.monotonic() - flight.sent) * 1000,
                model_id=score.model_id,
                detail=score.detail,
            )
        )

    def close(self) -> None:
        self._socket.close(linger=0)


def query_server(endpoint: str, kind: str = "health", timeout_s: float = 5.0) -> dict[str, Any]:
    """Ask a server for its ``health`` or ``metrics``; raises ``RewardServerUnavailable`` on timeout."""
    socket = _dealer(zmq.Context.instance(), endpoint, send_hwm=4, immediate=False)
    try:
        socket.send(pack({"type": kind}), zmq.NOBLOCK)
        if not socket.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise RewardServerUnavailable(f"reward server at {endpoint}: no {kind} reply in {timeout_s:g} s")
        return decode_reply(socket.recv(zmq.NOBLOCK))
    finally:
        socket.close(linger=0)


def wait_until_healthy(endpoint: str, timeout_s: float) -> dict[str, Any]:
    """Poll ``health`` until the server answers or ``timeout_s`` passes."""
    give_up = time.monotonic() + timeout_s
    while True:
        remaining = give_up - time.monotonic()
        try:
            return query_server(endpoint, "health", timeout_s=max(0.05, min(1.0, remaining)))
        except RewardServerUnavailable:
            if time.monotonic() >= give_up:
                raise


def _dealer(context: zmq.Context, endpoint: str, send_hwm: int, immediate: bool = True) -> zmq.Socket:
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, send_hwm)
    socket.setsockopt(zmq.RCVHWM, 100_000)
    # Queue only to a live connection, so a dead server turns into drops instead of a backlog.
    socket.setsockopt(zmq.IMMEDIATE, 1 if immediate else 0)
    socket.setsockopt(zmq.RECONNECT_IVL, 100)
    socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    # Heartbeats find a server that vanished without closing its connection (host down, cable out).
    socket.setsockopt(zmq.HEARTBEAT_IVL, 500)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 2000)
    socket.connect(endpoint)
    return socket
