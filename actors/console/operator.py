"""A scripted operator for the console: it drives the console's websocket exactly as a person's page
does (claim control, take over, send actions at a fixed rate, hand back), with the panda tasks'
scripted pick as its hands.

It is for benchmarks and tests of the human-in-the-loop path end to end (console -> intervention
port -> actor -> learner -> demo buffer). It acts only on what the page is sent: the watched env's
``steps`` items, whose ``next_obs`` is the observation the next action is for; it never touches the
simulator.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import websockets

from striata.envs.tasks.panda.scripted import ScriptedPickPolicy

SEND_HZ = 20  # as the page (static/console.js)
# The scripted pick covers the whole error in one step (a dead-beat controller); through the console
# it sees each observation about a step late, and dead-beat with a step of delay oscillates. Half the
# gain is stable, as a person is.
GAIN = 0.5


@dataclass
class OperatorReport:
    episodes: int = 0  # episodes the operator took over
    successes: int = 0  # of those, how many ended in the task's success
    actions_sent: int = 0
    intervened_steps: int = 0  # steps the page was told the person acted in
    timed_out: bool = False  # the time ran out before ``episodes`` episodes


class ScriptedOperator:
    """Takes over the watched env for its first ``episodes`` episodes and picks the cube in each (or
    fewer, when the job ends first)."""

    def __init__(self, url: str, episodes: int, ee_step: float, seed: int = 0) -> None:
        self.url = url
        self.episodes = episodes
        self.policy = ScriptedPickPolicy(1, ee_step / GAIN, seed=seed)
        self.report = OperatorReport()
        self._episode: int | None = None
        self._controlled = False
        self._asked = False
        self._finished = False  # the job ended: nothing left to operate
        self._action: np.ndarray | None = None  # for the newest observation seen

    async def run(self, timeout_s: float) -> dict[str, Any]:
        """Operate until ``episodes`` taken-over episodes have ended, the job ends or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        async with websockets.connect(self.url, max_size=None, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "claim"}))
            sender = asyncio.create_task(self._send_actions(ws))
            try:
                await self._operate(ws, deadline)
            finally:
                sender.cancel()
            if not self._finished:
                if self._controlled:
                    await ws.send(json.dumps({"type": "handback"}))
                await ws.send(json.dumps({"type": "release"}))
        return asdict(self.report)

    async def _operate(self, ws: Any, deadline: float) -> None:
        while self.report.episodes < self.episodes and not self._finished:
            left = deadline - time.monotonic()
            if left <= 0:
                self.report.timed_out = True
                return
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=left)
            except TimeoutError:
                continue
            except websockets.ConnectionClosed:  # the console stopped with its job
                self._finished = True
                return
            if isinstance(raw, str):
                await self._on_message(ws, json.loads(raw))

    async def _send_actions(self, ws: Any) -> None:
        """The latest action at the page's fixed rate while in control: between chunks an actor may
        wait for the learner, and it treats an action not heard again for 0.3 s as stale."""
        while True:
            await asyncio.sleep(1.0 / SEND_HZ)
            if self._controlled and self._action is not None:
                try:
                    await ws.send(json.dumps({"type": "action", "action": self._action.tolist()}))
                except websockets.ConnectionClosed:
                    return
                self.report.actions_sent += 1

    async def _on_message(self, ws: Any, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "state":
            self._finished = bool(message.get("finished"))
        elif kind == "control":
            self._controlled = bool(message.get("controlled"))
            self._asked = False
        elif kind == "steps" and message.get("items"):
            await self._on_steps(ws, message["items"])

    async def _on_steps(self, ws: Any, items: list[dict[str, Any]]) -> None:
        for item in items:
            if item["episode"] != self._episode:
                self._episode = item["episode"]
                self.policy.reset(np.ones(1, dtype=bool))
            if item.get("intervention"):
                self.report.intervened_steps += 1
            if (item.get("terminated") or item.get("truncated")) and item.get("intervention"):
                self.report.episodes += 1
                self.report.successes += int(bool(item.get("success")))
        last = items[-1]
        if self.report.episodes >= self.episodes:
            return
        if not self._controlled and not self._asked:
            await ws.send(json.dumps({"type": "takeover"}))
            self._asked = True
        if self._controlled and not (last.get("terminated") or last.get("truncated")):
            state = np.asarray(last["next_obs"]["state"], dtype=np.float64)[None]
            self._action = self.policy(state)[0]
            await ws.send(json.dumps({"type": "action", "action": self._action.tolist()}))
            self.report.actions_sent += 1
