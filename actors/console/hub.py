"""The console's server side: one link to the watched actor, the browsers, the control rules, recording.

Control rules (enforced here, whatever a page does):

- One browser at a time is the controller. The first browser to connect when nobody controls becomes
  it; every other browser is read-only: its commands are refused (``refused`` with the reason) until
  it sends ``claim``, which makes it the controller and the previous one read-only.
- When the controller's websocket closes (tab closed, network gone), the hub sends ``handback`` to the
  actor at once if the env is taken over (or a takeover was asked for); the actor's ``control`` reply
  is broadcast with ``latency_ms``, the time from the socket closing to that reply.
- A SpaceMouse on the console's machine, while it is moved, drives a taken-over env instead of the
  controller's page (the person at the machine wins).
- An SO-101 leader arm (``leader_arm.py``) takes the watched env over when moved away from its rest
  pose, and then drives it instead of the page; handback, labels and resets stay the page's.

Websocket protocol (``/ws``): JSON text messages both ways, plus binary messages from the server that
are the watched camera's JPEG frames.

Browser -> server (``type`` and fields):

- ``claim``: become the controller. ``release``: stop being it (hands the env back if taken over).
- ``takeover`` / ``handback``: the watched env, to the person / back to the policy.
- ``action {action: [A floats]}``: the person's latest action (pages send it at a fixed rate while
  the env is taken over; the actor falls back to zeros when actions stop coming).
- ``label {success: bool}``: ends the episode with that label; a taken-over env is handed back right
  after its labelled step (that step is still the person's, the next episode the policy's).
  ``reset``: ends the episode without a label (a takeover goes on).
- ``pause {paused: bool}``: stops / resumes the watched actor's stepping.
- ``select {actor?: int, env?: int}``: watch another env (hands the current one back first).

Server -> browser:

- ``state``: everything the page shows besides steps: ``you_control``, ``has_controller``,
  ``browsers``, ``connected``, ``job``, ``actor``, ``actors``, ``env``, ``num_envs``, ``task``,
  ``task_text``, ``action_dim``, ``action_low``, ``action_high``, ``control_dt``, ``camera``,
  ``takeover``, ``paused``, ``finished``, ``spacemouse`` (device name or null), ``leader_arm`` (name or
  null), ``recording`` (folder or null). Sent on connect and on every change.
- ``steps {items: [...]}``: the watched env's steps since the last batch (about 20 batches a second),
  each ``{episode, t, action, reward, return, success, intervention, label, progress, terminated,
  truncated, next_obs}`` (``next_obs``: the observation the next action is for, so that a scripted
  operator can drive through this same socket).
- ``episode_end``, ``control {env, controlled, reason, latency_ms}``, ``error {reason, detail}``: the
  actor's messages (INTERVENTION.md); ``control`` carries why it changed where the hub knows it.
- ``refused {command, reason}``: a command this browser may not send now.
- ``notice {text}``: anything else a person should see (a restarted actor, a finished job, a saved
  session episode).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq.asyncio

from striata.actors.console.discovery import Job, Port
from striata.actors.console.leader_arm import LeaderArm
from striata.actors.console.link import ActorLink
from striata.actors.console.recording import SessionRecorder
from striata.actors.console.spacemouse import SpaceMouse

log = logging.getLogger(__name__)

FLUSH_S = 0.05
JOB_POLL_S = 0.5
# Browsers that fall this far behind lose frames first, then text messages.
QUEUE_SIZE = 256
FRAME_BACKLOG = 4
STEP_FIELDS = (
    "episode",
    "t",
    "action",
    "reward",
    "return",
    "success",
    "intervention",
    "label",
    "progress",
    "terminated",
    "truncated",
    "next_obs",
)
COMMANDS = ("claim", "release", "takeover", "handback", "action", "label", "reset", "pause", "select")


@dataclass(eq=False)
class Browser:
    """One websocket; the app's sender task drains ``queue`` (text: str, frames: bytes)."""

    id: int
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def put(self, item: str | bytes) -> None:
        if isinstance(item, bytes) and self.queue.qsize() >= FRAME_BACKLOG:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(item)


class Hub:
    """Links the watched actor's port to the browsers; see the module docstring for the rules."""

    def __init__(
        self,
        job: Job,
        actor_id: int = 0,
        env: int = 0,
        sessions: Path | None = None,
        session_format: str = "v3.0",
        camera: str | None = None,
        fps: float | None = None,
        spacemouse: SpaceMouse | None = None,
        leader: LeaderArm | None = None,
    ) -> None:
        self.job = job
        self.port: Port = job.port(actor_id)
        self.env = env
        self.sessions = sessions
        self.session_format = session_format
        self.camera = camera
        self.fps = fps
        self.spacemouse = spacemouse
        self.leader = leader
        self.context = zmq.asyncio.Context()
        self.link: ActorLink | None = None
        self.browsers: dict[int, Browser] = {}
        self.controller: Browser | None = None
        self.controlled = False
        self.takeover_asked = False
        self.paused = False
        self.handback_on_label = False
        self.handback_on_welcome = False
        self.handback_started: float | None = None
        self.handback_reason: str | None = None
        self.recorder: SessionRecorder | None = None
        self._recorder_lock = asyncio.Lock()
        self._steps: list[dict[str, Any]] = []
        self._next_id = 1
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._connect(self.port)
        self._tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._job_loop())]

    async def stop(self) -> None:
        if self.link is not None and (self.controlled or self.takeover_asked):
            self.link.send("handback", env=self.env)
        if self.link is not None:
            self.link.send("bye")
            # Let the DEALER hand the last messages to the actor before the socket closes.
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.link is not None:
            await self.link.close()
        await self._close_recorder()
        if self.spacemouse is not None:
            self.spacemouse.close()
        if self.leader is not None:
            self.leader.close()
        self.context.term()

    def _connect(self, port: Port) -> None:
        old = self.link
        self.port = port
        self.controlled = self.takeover_asked = self.paused = False
        self.link = ActorLink(port.endpoint, self._on_message, self._on_lost, self.context)
        self.link.start()
        if old is not None:
            self._spawn(old.close())

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- browsers --------------------------------------------------------------------------------

    def connect(self) -> Browser:
        browser = Browser(self._next_id)
        self._next_id += 1
        self.browsers[browser.id] = browser
        if self.controller is None:
            self.controller = browser
        self._broadcast_state()
        return browser

    def disconnect(self, browser: Browser) -> None:
        self.browsers.pop(browser.id, None)
        if browser is self.controller:
            self.controller = None
            if self.controlled or self.takeover_asked:
                self._handback("controller disconnected")
        self._broadcast_state()

    def command(self, browser: Browser, text: str) -> None:
        """One JSON message from a browser, checked against the control rules."""
        try:
            message = json.loads(text)
            kind = message["type"]
        except (ValueError, TypeError, KeyError):
            self._refuse(browser, "?", "not a JSON object with a type")
            return
        if kind not in COMMANDS:
            self._refuse(browser, str(kind), f"unknown command; known: {', '.join(COMMANDS)}")
            return
        if kind == "claim":
            self._claim(browser)
            return
        if browser is not self.controller:
            self._refuse(browser, kind, "read-only: another browser has control; take control first")
            return
        if kind == "release":
            self.controller = None
            if self.controlled or self.takeover_asked:
                self._handback("controller released control")
            self._broadcast_state()
            return
        if kind == "select":
            self._select(browser, message)
            return
        link = self.link
        if link is None or not link.connected:
            self._refuse(browser, kind, "the actor's port is not connected")
            return
        if kind == "takeover":
            self.takeover_asked = True
            link.send("takeover", env=self.env)
        elif kind == "handback":
            self._handback("handed back")
        elif kind == "action":
            self._action(browser, message.get("action"))
        elif kind == "label":
            if not isinstance(message.get("success"), bool):
                self._refuse(browser, kind, "label needs success: true or false")
                return
            link.send("label", env=self.env, success=message["success"])
            # The labelled step is still the person's; the next episode starts under the policy.
            self.handback_on_label = self.controlled or self.takeover_asked
        elif kind == "reset":
            link.send("reset", env=self.env)
        elif kind == "pause":
            link.send("pause", paused=bool(message.get("paused", not self.paused)))

    def _claim(self, browser: Browser) -> None:
        previous = self.controller
        self.controller = browser
        if previous is not None and previous is not browser:
            self._send(
                previous, {"type": "notice", "text": "another browser took control; this one is read-only"}
            )
        self._broadcast_state()

    def _refuse(self, browser: Browser, command: str, reason: str) -> None:
        self._send(browser, {"type": "refused", "command": command, "reason": reason})

    def _action(self, browser: Browser, action: Any) -> None:
        dim = int(self.link.welcome.get("action_dim", 0)) if self.link and self.link.welcome else 0
        if (
            not isinstance(action, list)
            or len(action) != dim
            or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in action)
        ):
            self._refuse(browser, "action", f"action must be a list of {dim} numbers")
            return
        if not self.controlled:
            return  # a page's last actions may cross the control change: nothing to refuse
        if self.spacemouse is not None and self.spacemouse.active():
            return
        if self._leader_drives():
            return
        self.link.send("action", env=self.env, action=[float(a) for a in action])

    def _select(self, browser: Browser, message: dict[str, Any]) -> None:
        try:
            actor = int(message.get("actor", self.port.actor_id))
            env = int(message.get("env", self.env))
            port = self.job.port(actor)
        except (TypeError, ValueError) as exc:
            self._refuse(browser, "select", str(exc))
            return
        num_envs = port.num_envs or (self.link.welcome or {}).get("num_envs")
        if num_envs is not None and not 0 <= env < int(num_envs):
            self._refuse(browser, "select", f"env {env}: actor {actor} has envs 0..{int(num_envs) - 1}")
            return
        if self.controlled or self.takeover_asked:
            self._handback("watching another env")
        if port.actor_id != self.port.actor_id:
            self.env = env
            self._connect(port)
        else:
            self.env = env
            self._watch()
        self._broadcast_state()

    def _handback(self, reason: str) -> None:
        self.takeover_asked = self.handback_on_label = False
        self.handback_started = time.perf_counter()
        self.handback_reason = reason
        if self.link is not None:
            self.link.send("handback", env=self.env)

    # ---- the actor's port -------------------------------------------------------------------------

    def _watch(self) -> None:
        welcome = self.link.welcome or {}
        fps = self.fps or 1.0 / float(welcome.get("control_dt") or 0.1)
        self.link.send("watch", env=self.env, camera=self.camera, fps=fps)
        self._steps.clear()
        if self.leader is not None:
            self.leader.rest()
            problem = self.leader.check_task(welcome.get("task"), welcome.get("action_dim"))
            if problem is not None:
                self._notice(problem)
        if self.sessions is not None:
            self._spawn(self._renew_recorder(welcome))

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "welcome":
            if not 0 <= self.env < int(message.get("num_envs", 0)):
                self._notice(f"env {self.env}: actor {self.port.actor_id} has {message.get('num_envs')} envs")
                self.env = 0
            self.controlled = self.takeover_asked = False
            if self.handback_on_welcome:
                self.handback_on_welcome = False
                self._handback("the port was lost")
            self._watch()
            self._broadcast_state()
        elif message.get("env", self.env) != self.env:
            return
        elif kind == "step":
            self._on_step(message)
        elif kind == "frame":
            for browser in self.browsers.values():
                browser.put(bytes(message["jpeg"]))
            if self.recorder is not None:
                self.recorder.frame(message)
        elif kind == "episode_end":
            if self.recorder is not None:
                self.recorder.episode_end(message)
            self._broadcast({k: _finite(v) for k, v in message.items() if k != "v"})
        elif kind == "control":
            self._on_control(message)
        elif kind == "paused":
            # The actor says when a pause starts and ends (a client's, or hil.max_pause_s running out).
            self.paused = bool(message.get("paused"))
            self._broadcast_state()
        elif kind == "error":
            if message.get("reason") == "not_controller" and self.handback_reason == "the port was lost":
                return  # the port had dropped the takeover by itself
            if message.get("reason") == "busy":
                self.takeover_asked = False
            self._broadcast(
                {"type": "error", "reason": message.get("reason"), "detail": message.get("detail")}
            )

    def _on_step(self, message: dict[str, Any]) -> None:
        self._steps.append({k: _finite(message.get(k)) for k in STEP_FIELDS})
        if self.handback_on_label and message.get("label", -1) != -1:
            self.handback_on_label = False
            self._handback("episode labelled")
        if self.recorder is not None:
            self.recorder.step(message)
        if self.leader is not None:
            self.leader.observe((self.link.welcome or {}).get("task"), message.get("next_obs"))
            # Act on the new targets at once: an action from the step before would overshoot the leader.
            self._send_leader_action()

    def _on_control(self, message: dict[str, Any]) -> None:
        self.controlled = bool(message.get("controlled"))
        if self.leader is not None:
            if self.controlled:
                self._send_leader_action()  # before the actor's next step, which would act neutral without it
            else:
                self.leader.rest()
        reply: dict[str, Any] = {"type": "control", "env": self.env, "controlled": self.controlled}
        if self.controlled:
            reply["reason"] = "taken over"
        elif self.handback_started is not None:
            reply["reason"] = self.handback_reason
            reply["latency_ms"] = round((time.perf_counter() - self.handback_started) * 1000, 1)
            log.info("handback (%s) took %.1f ms", self.handback_reason, reply["latency_ms"])
            self.handback_started = None
        else:
            reply["reason"] = "the actor handed back"
        self._broadcast(reply)
        self._broadcast_state()

    def _on_lost(self) -> None:
        # The port may still hold this hub's takeover (it drops silent clients, but the hub kept pinging):
        # hand it back once the port answers, so the actor and the page agree that the policy acts.
        self.handback_on_welcome = self.controlled or self.takeover_asked
        self.controlled = self.takeover_asked = False
        self._notice(f"lost the actor's port {self.port.endpoint}; reconnecting")
        self._broadcast_state()

    # ---- background loops --------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if self._steps:
                steps, self._steps = self._steps, []
                self._broadcast({"type": "steps", "items": steps})
            if self.spacemouse is not None and self.controlled and self.spacemouse.active():
                dim = int(self.link.welcome.get("action_dim", 0)) if self.link.welcome else 0
                self.link.send("action", env=self.env, action=self.spacemouse.action(dim))
            self._leader_loop()

    def _leader_drives(self) -> bool:
        return self.leader is not None and self.leader.failed is None and self.controlled

    def _send_leader_action(self) -> None:
        if self._leader_drives() and self.link is not None:
            action = self.leader.action()
            if action is not None:
                self.link.send("action", env=self.env, action=action)

    def _leader_loop(self) -> None:
        """Take over when the leader is moved; keep its action fresh (the actor drops one older than
        ``hil.action_timeout_s``); hand back when it stops answering."""
        leader, link = self.leader, self.link
        if leader is None or link is None or not link.connected:
            return
        welcome = link.welcome or {}
        if leader.check_task(welcome.get("task"), welcome.get("action_dim")) is not None:
            return
        if leader.failed is not None:
            if (self.controlled or self.takeover_asked) and self.handback_started is None:
                self._handback(f"the leader arm stopped answering ({leader.failed})")
            return
        if self.controlled:
            self._send_leader_action()
        elif not self.takeover_asked and not self.paused and leader.moved():
            self.takeover_asked = True
            link.send("takeover", env=self.env)

    async def _job_loop(self) -> None:
        """Follow hil.json: a restarted actor has a new port; a finished job has none."""
        while not self.job.finished:
            await asyncio.sleep(JOB_POLL_S)
            try:
                changed = self.job.refresh()
            except ValueError as exc:
                self._notice(str(exc))
                continue
            if self.job.finished:
                self._notice("the job has finished")
                await self._close_recorder()
                self._broadcast_state()
            elif changed:
                port = next((p for p in self.job.ports if p.actor_id == self.port.actor_id), None)
                if port is not None and port.endpoint != self.port.endpoint:
                    self._notice(f"actor {port.actor_id} restarted; now at {port.endpoint}")
                    self._connect(port)
                    self._broadcast_state()

    # ---- recording ---------------------------------------------------------------------------------

    async def _renew_recorder(self, welcome: dict[str, Any]) -> None:
        async with self._recorder_lock:
            await self._close_recorder_locked()
            if self.job.finished:
                return
            self.recorder = SessionRecorder(
                self.sessions, welcome, self.camera, self._saved, self._notice, self.session_format
            )

    async def _close_recorder(self) -> None:
        async with self._recorder_lock:
            await self._close_recorder_locked()

    async def _close_recorder_locked(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            await recorder.close()

    def _saved(self, end: dict[str, Any], index: int) -> None:
        self._notice(f"episode {end.get('episode')} saved as session episode {index} in {self.sessions}")

    # ---- sending -----------------------------------------------------------------------------------

    def state(self, browser: Browser) -> dict[str, Any]:
        welcome = (self.link.welcome if self.link else None) or {}
        return {
            "type": "state",
            "you_control": browser is self.controller,
            "has_controller": self.controller is not None,
            "browsers": len(self.browsers),
            "connected": bool(self.link and self.link.connected),
            "job": self.job.description,
            "actor": self.port.actor_id,
            "actors": [p.actor_id for p in self.job.ports],
            "env": self.env,
            "num_envs": welcome.get("num_envs"),
            "task": welcome.get("task"),
            "task_text": welcome.get("task_text"),
            "action_dim": welcome.get("action_dim"),
            "action_low": welcome.get("action_low"),
            "action_high": welcome.get("action_high"),
            "control_dt": welcome.get("control_dt"),
            "camera": self.camera or (welcome.get("cameras") or [None])[0],
            "takeover": self.controlled,
            "paused": self.paused,
            "finished": self.job.finished,
            "spacemouse": self.spacemouse.name if self.spacemouse is not None else None,
            "leader_arm": self.leader.name if self.leader is not None else None,
            "recording": str(self.sessions) if self.sessions is not None and not self.job.finished else None,
        }

    def _broadcast_state(self) -> None:
        for browser in self.browsers.values():
            self._send(browser, self.state(browser))

    def _broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, default=_json_default)
        for browser in self.browsers.values():
            browser.put(text)

    def _notice(self, text: str) -> None:
        log.warning("%s", text)
        self._broadcast({"type": "notice", "text": text})

    def _send(self, browser: Browser, message: dict[str, Any]) -> None:
        browser.put(json.dumps(message, default=_json_default))


def _finite(value: Any) -> Any:
    """JSON has no NaN: a missing value (a reward model without a reply) goes to the page as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return None
    raise TypeError(f"not JSON: {type(value).__name__}")
