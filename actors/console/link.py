"""A client of one intervention port (actors/INTERVENTION.md): a ZMQ DEALER on the console's event loop.

It speaks only that protocol, so the same link drives a `striata train` actor or any other process that
serves the port (a deployed robot's). It says hello, pings so the port keeps it (a silent client is
dropped after ``hil.client_timeout_s``), notices a port that went silent, and says hello again until
the port answers (a restarted process on the same address forgets its clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from striata.common.intervention_port import MAX_SENT_BYTES, WIRE
from striata.common.wire import WireError

PING_S = 0.5
# No message for this long (pings are answered at once by the port's own thread) and the port counts as
# lost: a loaded machine may still starve the actor's process for a few seconds.
SILENT_S = 5.0


class ActorLink:
    """One DEALER connection; every decoded message goes to ``on_message`` on the event loop."""

    def __init__(
        self,
        endpoint: str,
        on_message: Callable[[dict[str, Any]], None],
        on_lost: Callable[[], None],
        context: zmq.asyncio.Context,
        client: str = "striata-intervene",
    ) -> None:
        self.endpoint = endpoint
        self.on_message = on_message
        self.on_lost = on_lost
        self.client = client
        self.welcome: dict[str, Any] | None = None
        self.last_seen = 0.0
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        # Queue only to a live connection: commands for a port that is down are stale once it is back.
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.SNDHWM, 1000)
        self.socket.connect(endpoint)
        self._task: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self.welcome is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, kind: str, **fields: Any) -> bool:
        """Queue one message without waiting; False when it could not be queued (port down or jammed)."""
        sent = self.socket.send(WIRE.pack({"type": kind, **fields}), flags=zmq.NOBLOCK)
        return sent.exception() is None if sent.done() else True

    async def _run(self) -> None:
        next_ping = 0.0
        while True:
            now = time.monotonic()
            if now >= next_ping:
                next_ping = now + PING_S
                self._keep_alive(now)
            if await self.socket.poll(timeout=max(1, int((next_ping - time.monotonic()) * 1000))):
                # Drain what is there before the next poll: a watched env sends a step every env step.
                while True:
                    try:
                        raw = self.socket.recv(flags=zmq.NOBLOCK).result()
                    except zmq.Again:
                        break
                    self._handle(raw)

    def _keep_alive(self, now: float) -> None:
        if self.welcome is not None and now - self.last_seen > SILENT_S:
            self.welcome = None
            self.on_lost()
        if self.welcome is not None:
            self.send("ping")
        else:
            self.send("hello", client=self.client)

    def _handle(self, raw: bytes) -> None:
        try:
            message = WIRE.unpack(raw, max_bytes=MAX_SENT_BYTES)
        except WireError:
            return
        self.last_seen = time.monotonic()
        if message.get("type") == "welcome":
            self.welcome = message
        elif self.welcome is None:
            # Messages of an earlier connection that arrive before the new welcome belong to nobody.
            return
        self.on_message(message)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.socket.close(linger=0)
