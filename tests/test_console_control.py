"""Control rules of `striata intervene`, against a real `striata train` job with hil on: two browsers'
websockets (the `websockets` library, no browser), one controller at a time, and the hand-back when
the controller's socket closes during a takeover, measured."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from console_job import hil_job, intervene
from typer.testing import CliRunner

from striata.actors.console.spacemouse import SpaceMouseState
from striata.cli import app

HANDBACK_LIMIT_S = 0.2
FORWARD = [1.0, 0.0, 0.0, 1.0]  # panda ee_delta: +x, gripper closed


class Browser:
    """One websocket of the console, read in the background; every JSON message is kept with its time."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.state: dict[str, Any] = {}
        self.frames = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> Browser:
        browser = cls(await websockets.connect(url.replace("http://", "ws://") + "ws", max_size=None))
        await browser.wait(lambda m: m["type"] == "state" and m["connected"], "state: connected")
        return browser

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    self.frames += 1
                    continue
                message = json.loads(raw)
                if message["type"] == "state":
                    self.state = message
                self.messages.append((time.perf_counter(), message))
        except websockets.ConnectionClosed:
            pass

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def wait(
        self, predicate: Callable[[dict], bool], what: str, after: float = 0.0, timeout_s: float = 10.0
    ) -> tuple[float, dict[str, Any]]:
        """The first message (received after ``after``) that matches; its arrival time too."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for arrived, message in self.messages:
                if arrived >= after and predicate(message):
                    return arrived, message
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {what} within {timeout_s} s; last state: {self.state}")

    def steps(self, after: float) -> list[dict[str, Any]]:
        return [s for t, m in self.messages if t >= after and m["type"] == "steps" for s in m["items"]]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


def control(controlled: bool) -> Callable[[dict], bool]:
    return lambda m: m["type"] == "control" and m["controlled"] is controlled


async def takeover(browser: Browser) -> None:
    start = time.perf_counter()
    await browser.send(type="takeover")
    await browser.wait(control(True), "control: taken over", after=start)


async def drive(browser: Browser, action: list[float], timeout_s: float = 20.0) -> dict[str, Any]:
    """Send ``action`` at the page's rate (20 Hz) until a step the person acted in executed it."""
    start = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await browser.send(type="action", action=action)
        await asyncio.sleep(0.05)
        for step in browser.steps(start):
            if step["intervention"] and step["action"] == action:
                return step
    raise AssertionError(f"no taken-over step with action {action}: {browser.steps(start)[-5:]}")


@pytest.fixture(scope="module")
def job_and_console(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("console_control")
    with hil_job(tmp_path) as job, intervene(str(job.run_dir), tmp_path) as console:
        yield job, console
        console.stop()
        job.stop()


@pytest.fixture
def console_url(job_and_console):
    return job_and_console[1].url


def test_a_second_browser_is_read_only_until_it_takes_control(console_url):
    async def scenario() -> None:
        first = await Browser.open(console_url)
        assert first.state["you_control"]
        second = await Browser.open(console_url)
        assert not second.state["you_control"] and second.state["has_controller"]

        for command in ({"type": "takeover"}, {"type": "action", "action": FORWARD}, {"type": "reset"}):
            sent = time.perf_counter()
            await second.send(**command)
            _, refused = await second.wait(lambda m: m["type"] == "refused", "refused", after=sent)
            assert refused["command"] == command["type"] and "read-only" in refused["reason"]
        assert not second.state["takeover"]

        sent = time.perf_counter()
        await second.send(type="claim")
        await second.wait(lambda m: m["type"] == "state" and m["you_control"], "control claimed", after=sent)
        await first.wait(lambda m: m["type"] == "state" and not m["you_control"], "read-only", after=sent)
        sent = time.perf_counter()
        await first.send(type="takeover")
        await first.wait(lambda m: m["type"] == "refused", "refused", after=sent)
        await takeover(second)
        sent = time.perf_counter()
        await second.send(type="handback")
        await second.wait(control(False), "control: handed back", after=sent)
        await first.close()
        await second.close()

    asyncio.run(scenario())


def test_takeover_actions_and_handback_cycle(console_url):
    async def scenario() -> None:
        browser = await Browser.open(console_url)
        assert browser.state["you_control"] and browser.state["action_dim"] == len(FORWARD)
        for _ in range(2):
            await takeover(browser)
            await drive(browser, FORWARD)
            sent = time.perf_counter()
            await browser.send(type="handback")
            arrived, _ = await browser.wait(control(False), "control: handed back", after=sent)
            await browser.wait(
                lambda m: m["type"] == "steps", "steps after the hand-back", after=arrived + 0.2
            )
            later = browser.steps(arrived + 0.2)
            assert later and not any(s["intervention"] for s in later)
        await browser.close()

    asyncio.run(scenario())


def test_the_controller_disconnecting_hands_back_within_200_ms(console_url):
    async def scenario() -> list[tuple[float, float]]:
        times = []
        watcher = await Browser.open(console_url)
        for _ in range(3):
            controller = await Browser.open(console_url)
            sent = time.perf_counter()
            await controller.send(type="claim")
            await controller.wait(lambda m: m["type"] == "state" and m["you_control"], "control", after=sent)
            await takeover(controller)
            await drive(controller, FORWARD)
            closing = time.perf_counter()
            await controller.close()
            arrived, reply = await watcher.wait(control(False), "the hand-back", after=closing, timeout_s=5)
            assert reply["reason"] == "controller disconnected"
            times.append((arrived - closing, reply["latency_ms"] / 1000))
            await watcher.wait(lambda m: m["type"] == "state" and not m["has_controller"], "no controller")
        await watcher.close()
        return times

    times = asyncio.run(scenario())
    for seen_by_other_browser, hub_to_actor_reply in times:
        print(
            f"hand-back after the controller's socket closed: {seen_by_other_browser * 1000:.1f} ms "
            f"(close -> another browser sees control: false), {hub_to_actor_reply * 1000:.1f} ms "
            f"(hub: socket closed -> the actor's control reply)"
        )
    assert all(hub < HANDBACK_LIMIT_S for _, hub in times), times
    assert all(seen < HANDBACK_LIMIT_S for seen, _ in times), times


def test_a_console_on_a_bare_address_drives_that_port(job_and_console, tmp_path):
    """`--job tcp://...`: the hub speaks only the port protocol, whoever serves it (here actor 1)."""
    job, _ = job_and_console
    endpoint = next(
        a["endpoint"]
        for a in json.loads((job.run_dir / "hil.json").read_text())["actors"]
        if a["actor_id"] == 1
    )

    async def scenario(url: str) -> None:
        browser = await Browser.open(url)
        assert browser.state["job"] == endpoint and browser.state["recording"] is None
        await takeover(browser)
        await drive(browser, FORWARD)
        sent = time.perf_counter()
        await browser.send(type="handback")
        await browser.wait(control(False), "control: handed back", after=sent)
        assert browser.frames > 0
        await browser.close()

    with intervene(endpoint, tmp_path) as console:
        asyncio.run(scenario(console.url))
        console.stop()


def test_the_console_follows_a_restarted_actor_to_its_new_port(job_and_console):
    """A killed actor's replacement binds a new port; hil.json says where, and the console follows."""
    job, console = job_and_console

    async def scenario() -> None:
        browser = await Browser.open(console.url)
        await takeover(browser)
        await drive(browser, FORWARD)
        killed = time.perf_counter()
        os.kill(json.loads((job.run_dir / "hil.json").read_text())["actors"][0]["pid"], signal.SIGKILL)
        noticed_at, notice = await browser.wait(
            lambda m: m["type"] == "notice" and "restarted" in m["text"], "restart notice", timeout_s=120
        )
        # The hub says "restarted" before it links to the new port: the state it sends once the new
        # actor welcomed it came after the notice (perhaps before this line runs).
        await browser.wait(
            lambda m: m["type"] == "state" and m["connected"],
            "connected",
            after=noticed_at,
            timeout_s=30,
        )
        assert not browser.state["takeover"]  # the new actor starts under its policy
        print(f"console on the restarted actor after {time.perf_counter() - killed:.1f} s: {notice['text']}")
        await takeover(browser)
        await drive(browser, FORWARD)
        await browser.close()

    asyncio.run(scenario())


def _intervene(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["intervene", *args])
    return result.exit_code, result.output


def test_bad_jobs_are_one_line_errors(tmp_path):
    code, out = _intervene("--job", str(tmp_path))
    assert code == 2 and "no hil.json" in out and "--set hil.enabled=true" in out
    (tmp_path / "hil.json").write_text(
        json.dumps({"v": 1, "task": "panda_pick", "actors": [], "finished": True})
    )
    code, out = _intervene("--job", str(tmp_path))
    assert code == 2 and "has finished" in out
    code, out = _intervene("--job", "tcp://127.0.0.1")
    assert code == 2 and "tcp://HOST:PORT" in out
    code, out = _intervene("--job", str(tmp_path / "missing"))
    assert code == 2 and "neither a run folder nor" in out
    (tmp_path / "hil.json").write_text(
        json.dumps(
            {
                "v": 1,
                "task": "panda_pick",
                "actors": [{"actor_id": 0, "endpoint": "tcp://127.0.0.1:1", "num_envs": 2}],
            }
        )
    )
    code, out = _intervene("--job", str(tmp_path), "--actor", "3")
    assert code == 2 and "--actor 3" in out
    code, out = _intervene("--job", str(tmp_path), "--env", "2")
    assert code == 2 and "--env 2" in out


def test_spacemouse_reports_become_actions():
    state = SpaceMouseState()
    push_forward_and_lift = [
        1,
        *(0).to_bytes(2, "little"),
        *(-350).to_bytes(2, "little", signed=True),
        *(-175).to_bytes(2, "little", signed=True),
    ]
    state.decode(push_forward_and_lift, now=1.0)
    assert state.action(4) == [1.0, -0.0, 0.5, -1.0] and state.last_input == 1.0
    state.decode([3, 1, 0], now=2.0)  # left button: gripper closed, latched
    state.decode([3, 0, 0], now=3.0)
    assert state.action(4)[3] == 1.0 and state.action(2) == [1.0, -0.0]
