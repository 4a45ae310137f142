"""The console's ASGI app (Starlette): the page, its static files, and the websocket at ``/ws``.

Everything the page needs is served from ``static/`` (no build step, no CDN). The websocket protocol
and the control rules are in ``striata.actors.console.hub``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from striata.actors.console.hub import Browser, Hub

STATIC = Path(__file__).resolve().parent / "static"


def create_app(hub: Hub) -> Starlette:
    """The console for ``hub``; the app starts and stops the hub with its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    async def index(_) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        browser = hub.connect()
        sender = asyncio.create_task(_send_loop(ws, browser))
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                hub.command(browser, message.get("text") or "")
        finally:
            # First the hub (a takeover is handed back now), then the sender.
            hub.disconnect(browser)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    routes = [
        Route("/", index),
        WebSocketRoute("/ws", websocket),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _send_loop(ws: WebSocket, browser: Browser) -> None:
    # A closed socket ends the loop; the receiving side tells the hub.
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        while True:
            item = await browser.queue.get()
            if isinstance(item, bytes):
                await ws.send_bytes(item)
            else:
                await ws.send_text(item)
