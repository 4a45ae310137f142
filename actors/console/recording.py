"""Recording what the console watches: every episode of the watched env goes to a session on disk
(``striata.learner.session_dataset.SessionWriter``, layout in actors/SESSIONS.md), in LeRobot's format v3.0
or v2.1.

Writing an episode encodes its video, so the writer runs on one worker thread (calls stay in order)
and the console's event loop never waits on the disk. Every step the console receives is recorded: the
episode under way when watching starts is saved from its first step seen, and its metadata says how many
steps came before (``first_t``, ``missed_steps``); one a person acted in that is still under way when
watching stops is saved as far as it came. So no episode a person took over is left out.
One recorder serves one stream (one connection to a port): a restarted actor numbers its episodes anew,
so it gets a new recorder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class SessionRecorder:
    """Feeds step / frame / episode_end messages of watched envs to a SessionWriter at ``root``."""

    def __init__(
        self,
        root: Path,
        welcome: dict[str, Any],
        camera: str | None,
        on_saved: Callable[[dict[str, Any], int], None],
        on_failed: Callable[[str], None],
        version: str = "v3.0",
    ) -> None:
        self.root = root
        self.on_saved = on_saved
        self.on_failed = on_failed
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-writer")
        self._loop = asyncio.get_running_loop()
        self.failed = False
        cameras = [camera] if camera else list(welcome.get("cameras") or [])[:1]
        control_dt = float(welcome.get("control_dt") or 0.1)
        self._writer = self._executor.submit(
            _open_writer,
            root,
            welcome.get("task", ""),
            welcome.get("task_text", ""),
            1.0 / control_dt,
            cameras,
            version,
        )
        self._writer.add_done_callback(self._check)

    def step(self, message: dict[str, Any]) -> None:
        self._submit("add_step", message)

    def frame(self, message: dict[str, Any]) -> None:
        self._submit("add_frame", message)

    def episode_end(self, message: dict[str, Any]) -> None:
        future = self._submit("end_episode", message)
        if future is None:
            return

        def saved(done) -> None:
            if done.exception() is None and done.result() >= 0:
                self._loop.call_soon_threadsafe(self.on_saved, message, done.result())

        future.add_done_callback(saved)

    def _submit(self, method: str, message: dict[str, Any]):
        if self.failed:
            return None
        future = self._executor.submit(lambda: getattr(self._writer.result(), method)(message))
        future.add_done_callback(self._check)
        return future

    def _check(self, future) -> None:
        exc = future.exception()
        if exc is not None and not self.failed:
            self.failed = True
            log.error("session recording stopped: %s", exc)
            self._loop.call_soon_threadsafe(self.on_failed, f"session recording stopped: {exc}")

    async def close(self) -> None:
        """Close the writer: of the episodes that did not end, it saves those a person acted in."""

        def finish() -> None:
            if self._writer.exception() is None:
                self._writer.result().close()

        try:
            await self._loop.run_in_executor(self._executor, finish)
        finally:
            self._executor.shutdown(wait=True)


def _open_writer(root: Path, task: str, task_text: str, fps: float, cameras: list[str], version: str):
    # Imported here: pyarrow and PyAV load only in a console that records (not one on a robot's address).
    from striata.learner.session_dataset import SessionWriter

    return SessionWriter(root, task=task, task_text=task_text, fps=fps, cameras=cameras, version=version)
