"""The ``openai`` backend against a local OpenAI-compatible chat endpoint that the test starts, and a
reward server subprocess in front of it that is killed and restarted under a client.

The endpoint checks each request (model, image_url parts carrying base64 JPEGs, the profile's prompt)
and answers with the reply that the task text names, realistic and malformed ones alike.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from striata.reward_server.backend import ScoreInput
from striata.reward_server.client import RewardClient
from striata.reward_server.config import OpenAIBackendConfig, RewardServerConfig
from striata.reward_server.launch import start_reward_server
from striata.reward_server.openai_backend import OpenAIBackend
from striata.reward_server.profiles import accumulate_hop

REPLIES = {
    "rr-4": "The gripper holds the cube above the table but it is tilted.\nANSWER: 4",
    "rr-5": "ANSWER: 5",
    "rr-1": "Nothing moved.\n\nANSWER: 1",
    "rr-prose": "The robot seems to have done quite well overall.",
    "rr-range": "ANSWER: 7",
    "grm-up": "<score>+35%</score>",
    "grm-down": "<score>-20%</score>",
    "grm-zero": "<score>0%</score>",
    "grm-words": "<score>about half</score>",
    "grm-untagged": "The AFTER set is better by +35%",
    "grm-range": "<score>+250%</score>",
    "vlac-ok": "DELTA: +12%\nDONE: no",
    "vlac-done": "DELTA: -3.5%\nDONE: yes",
    "vlac-half": "DELTA: +12%",
    "prog-ok": "PROGRESS: 60%\nSUCCESS: no",
    "prog-done": "PROGRESS: 100%\nSUCCESS: yes",
    "prog-only": "PROGRESS: 42%",
    "prog-range": "PROGRESS: 160%\nSUCCESS: no",
    "prog-empty": "",
}


class FakeVLM(BaseHTTPRequestHandler):
    """POST /v1/chat/completions; the reply key is the text after '#' in the task."""

    seen: ClassVar[list[dict]] = []
    fail_first: ClassVar[dict[str, int]] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeVLM.seen.append(body)
        content = body["messages"][0]["content"]
        text = " ".join(part["text"] for part in content if part["type"] == "text")
        key = text.split("#", 1)[1].split()[0].strip(".")
        if FakeVLM.fail_first.get(key, 0) > 0:
            FakeVLM.fail_first[key] -= 1
            return self._send(503, b'{"error": "busy"}')
        if key == "not-json":
            return self._send(200, b"<html>gateway</html>")
        for part in content:
            if part["type"] == "image_url":
                url = part["image_url"]["url"]
                assert url.startswith("data:image/jpeg;base64,")
                Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).verify()
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": REPLIES[key]}}]}  # fmt: skip
        self._send(200, json.dumps(reply).encode())

    def _send(self, code: int, payload: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def vlm_url():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeVLM)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def backend(url: str, profile: str, **extra) -> OpenAIBackend:
    return OpenAIBackend(
        OpenAIBackendConfig(base_url=url, model="teetone/RoboReward-4B", profile=profile, concurrency=4,
                            retries=2, backoff_s=0.01, timeout_s=5, **extra)
    )  # fmt: skip


def item(key: str, mode: str, reference: bool = False) -> ScoreInput:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    refs = {"front": image, "anchor_start": image} if reference else {}
    return ScoreInput(
        task=f"pick up the cube #{key}", mode=mode, frames={"front": image}, reference_frames=refs
    )


def test_roboreward_episode_scores(vlm_url):
    out = backend(vlm_url, "roboreward").score(
        [item(k, "episode_score", reference=True) for k in ("rr-4", "rr-5", "rr-1", "rr-prose", "rr-range")]
    )
    assert [o.status for o in out] == ["ok", "ok", "ok", "parse_error", "parse_error"]
    assert [o.progress for o in out[:3]] == [0.75, 1.0, 0.0]
    assert [o.done_prob for o in out[:3]] == [0.0, 1.0, 0.0]
    assert all(math.isnan(o.progress) and math.isnan(o.done_prob) for o in out[3:])
    prompt = FakeVLM.seen[-1]["messages"][0]["content"]
    assert "ANSWER: <score>" in prompt[-1]["text"]
    assert sum(part["type"] == "image_url" for part in prompt) == 3  # two reference frames + the frame


def test_robodopamine_hops_and_progress(vlm_url):
    grm = backend(vlm_url, "robodopamine")
    keys = ("grm-up", "grm-down", "grm-zero", "grm-words", "grm-untagged", "grm-range")
    out = grm.score([item(k, "pairwise_delta", reference=True) for k in keys])
    assert [o.status for o in out] == ["ok", "ok", "ok", "parse_error", "parse_error", "parse_error"]
    assert [o.delta for o in out[:3]] == [0.35, -0.2, 0.0]
    assert all(math.isnan(o.delta) for o in out[3:])
    (from_start,) = grm.score([item("grm-up", "progress", reference=True)])
    assert from_start.progress == pytest.approx(0.35)
    # phi += (1 - phi) h for a gain, phi += phi h for a loss
    assert accumulate_hop(0.5, 0.5) == pytest.approx(0.75)
    assert accumulate_hop(0.5, -0.5) == pytest.approx(0.25)
    text = " ".join(p.get("text", "") for p in FakeVLM.seen[-1]["messages"][0]["content"])
    assert "REFERENCE START" in text and "BEFORE front" in text and "AFTER front" in text


def test_vlac_delta_and_done(vlm_url):
    out = backend(vlm_url, "vlac").score(
        [item(k, "pairwise_delta", reference=True) for k in ("vlac-ok", "vlac-done", "vlac-half")]
    )
    assert [o.status for o in out] == ["ok", "ok", "parse_error"]
    assert (out[0].delta, out[0].done_prob) == (0.12, 0.0)
    assert (out[1].delta, out[1].done_prob) == (-0.035, 1.0)


def test_generic_progress(vlm_url):
    keys = ("prog-ok", "prog-done", "prog-only", "prog-range", "prog-empty")
    out = backend(vlm_url, "progress").score([item(k, "progress") for k in keys])
    assert [o.status for o in out] == ["ok", "ok", "ok", "parse_error", "parse_error"]
    assert [o.progress for o in out[:3]] == [0.6, 1.0, 0.42]
    assert out[0].done_prob == 0.0 and out[1].done_prob == 1.0 and math.isnan(out[2].done_prob)


def test_retries_transport_failures_and_reports_model_errors(vlm_url):
    FakeVLM.fail_first["prog-ok"] = 2
    (retried,) = backend(vlm_url, "progress").score([item("prog-ok", "progress")])
    assert retried.status == "ok" and retried.progress == 0.6
    FakeVLM.fail_first["prog-ok"] = 5
    (gave_up,) = backend(vlm_url, "progress").score([item("prog-ok", "progress")])
    assert gave_up.status == "model_error" and "503" in gave_up.detail
    FakeVLM.fail_first.clear()
    (not_json,) = backend(vlm_url, "progress").score([item("not-json", "progress")])
    assert not_json.status == "model_error"
    (down,) = backend("http://127.0.0.1:1/v1", "progress").score([item("prog-ok", "progress")])
    assert down.status == "model_error" and math.isnan(down.progress)
    (wrong_mode,) = backend(vlm_url, "vlac").score([item("vlac-ok", "progress")])
    assert wrong_mode.status == "bad_request"


def collect(client: RewardClient, count: int, timeout_s: float) -> list:
    labels: list = []
    give_up = time.monotonic() + timeout_s
    while len(labels) < count and time.monotonic() < give_up:
        labels += client.poll()
        time.sleep(0.005)
    return labels


def test_client_survives_server_kill_and_restart(vlm_url):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = RewardServerConfig(
        port=port, cache_size=0, backend=OpenAIBackendConfig(base_url=vlm_url, model="m", profile="progress")
    )
    frames = {"front": np.zeros((16, 16, 3), dtype=np.uint8)}
    server = start_reward_server(config, timeout_s=60)
    client = RewardClient(server.endpoint, actor_id=5, deadline_ms=2000, late_grace_ms=100)
    try:
        assert client.wait_connected(10)
        t = 0
        statuses: dict[str, list[str]] = {"before": [], "down": [], "after": []}

        def step(phase: str, count: int) -> None:
            nonlocal t
            for _ in range(count):
                start = time.perf_counter()
                client.submit(0, t, "lift #prog-ok", frames)
                assert time.perf_counter() - start < 0.5  # stepping never waits on the server
                t += 1
                statuses[phase] += [label.status for label in client.poll()]
                time.sleep(0.01)

        step("before", 20)
        statuses["before"] += [label.status for label in collect(client, 20 - len(statuses["before"]), 10)]
        server.kill()
        step("down", 30)
        statuses["down"] += [label.status for label in collect(client, client.in_flight, 5)]
        server = start_reward_server(config, timeout_s=60)
        give_up = time.monotonic() + 20
        while "ok" not in statuses["after"] and time.monotonic() < give_up:
            step("after", 5)
        statuses["after"] += [label.status for label in collect(client, client.in_flight, 10)]
        statuses["resumed"] = []
        step("resumed", 10)
        statuses["resumed"] += [label.status for label in collect(client, client.in_flight, 10)]
    finally:
        client.close()
        server.stop()
    assert statuses["before"] == ["ok"] * 20
    assert statuses["down"] and set(statuses["down"]) <= {"dropped", "late", "ok"}
    assert "dropped" in statuses["down"]
    assert "ok" in statuses["after"]
    assert statuses["resumed"] == ["ok"] * 10  # labels resumed
