"""Reward server mechanics over a real ZMQ socket: batching, deadlines, overload, cache, health, metrics,
and many malformed requests, each answered with an error while good requests keep being served.

The server runs in-process with a small image-statistics backend (progress = mean brightness), so the
tests exercise the server and its protocol, not a model.
"""

from __future__ import annotations

import io
import math
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from PIL import Image

from striata.reward_server.backend import ScoreInput, ScoreOutput
from striata.reward_server.client import RewardClient, query_server
from striata.reward_server.config import RewardServerConfig
from striata.reward_server.protocol import PROTOCOL_VERSION, decode_reply, encode_request
from striata.reward_server.server import RewardServer

TASK = "pick up the cube"


class BrightnessBackend:
    """progress = mean pixel value / 255 of the first camera; records every batch size. ``release`` holds
    ``score`` until set; ``entered`` is set once a batch is inside."""

    model_id = "brightness"
    revision = "1"

    def __init__(self, delay_s: float = 0.0, max_batch: int = 64) -> None:
        self.delay_s = delay_s
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def score(self, inputs: list[ScoreInput]) -> list[ScoreOutput]:
        self.entered.set()
        self.release.wait(timeout=10)
        self.batch_sizes.append(len(inputs))
        time.sleep(self.delay_s)
        return [ScoreOutput(progress=float(item.frames[min(item.frames)].mean() / 255)) for item in inputs]


def make_server(backend: BrightnessBackend, **overrides) -> RewardServer:
    config = RewardServerConfig.model_validate(
        {"port": 0, "max_side": 256, "max_image_bytes": 256 * 256 * 3, **overrides,
         "backend": {"kind": "clip", "path": "unused"}}
    )  # fmt: skip
    return RewardServer(config, backend=backend)


@pytest.fixture
def serve():
    servers: list[RewardServer] = []
    clients: list[RewardClient] = []

    def start(backend: BrightnessBackend, **overrides) -> tuple[RewardServer, RewardClient]:
        server = make_server(backend, **overrides)
        endpoint = server.start()
        client = RewardClient(endpoint, actor_id=7, deadline_ms=5000)
        assert client.wait_connected(10)
        servers.append(server)
        clients.append(client)
        return server, client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def frame(value: int, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def collect(client: RewardClient, count: int, timeout_s: float = 10.0) -> list:
    labels: list = []
    give_up = time.monotonic() + timeout_s
    while len(labels) < count and time.monotonic() < give_up:
        client.wait(give_up - time.monotonic())
        labels += client.poll()
    return labels


def wait_for(condition, timeout_s: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes."""
    give_up = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.005)
    return True


def test_labels_match_actor_episode_and_step(serve):
    _, client = serve(BrightnessBackend())
    for t in range(20):
        assert client.submit(episode_id=3, t=t, task=TASK, frames={"front": frame(t * 10)})
    labels = {label.t: label for label in collect(client, 20)}
    assert sorted(labels) == list(range(20))
    for t, label in labels.items():
        assert (label.actor_id, label.episode_id, label.status) == (7, 3, "ok")
        assert label.progress == pytest.approx(t * 10 / 255)
        assert math.isnan(label.delta)


def test_flood_is_micro_batched_up_to_max_batch(serve):
    backend = BrightnessBackend(delay_s=0.02)
    server, client = serve(backend, max_batch=16, max_wait_ms=20)
    for t in range(96):
        client.submit(0, t, TASK, {"front": frame(t % 250)})
    labels = collect(client, 96)
    assert len(labels) == 96 and all(label.ok for label in labels)
    assert max(backend.batch_sizes) == 16  # capped by max_batch
    assert len(backend.batch_sizes) <= 96 / 4  # batched, not one model call per request
    metrics = query_server(server.endpoint, "metrics")
    assert metrics["batch_size_max"] == 16 and metrics["batches"] == len(backend.batch_sizes)


def test_request_past_its_deadline_in_the_queue_times_out(serve):
    backend = BrightnessBackend(max_batch=1)
    backend.release.clear()  # the model is stuck on the first request
    server, client = serve(backend, max_batch=1)
    client.late_grace_ms = 5000  # the server's answer, not the client's own verdict, is under test
    client.submit(0, 0, TASK, {"front": frame(1)}, deadline_ms=5000)
    assert backend.entered.wait(10)  # the model holds the first request
    sent = time.monotonic()
    client.submit(0, 1, TASK, {"front": frame(2)}, deadline_ms=50)
    assert wait_for(lambda: query_server(server.endpoint, "metrics")["queue_depth"] == 1)
    # A clock condition, not a synchronisation: the second request's deadline is over before the model
    # is free to take it.
    time.sleep(max(0.0, sent + 0.1 - time.monotonic()))
    backend.release.set()
    labels = {label.t: label for label in collect(client, 2)}
    assert labels[0].status == "ok"
    assert labels[1].status == "timeout" and math.isnan(labels[1].progress)


def test_full_queue_answers_overloaded_at_once(serve):
    backend = BrightnessBackend(max_batch=1)
    backend.release.clear()
    _, client = serve(backend, max_batch=1, max_queue=4)
    client.submit(0, 0, TASK, {"front": frame(0)})
    assert backend.entered.wait(10)  # the model thread has taken it
    for t in range(1, 12):
        client.submit(0, t, TASK, {"front": frame(t)})
    early = collect(client, 7, timeout_s=3)  # 12 - 1 in the model - 4 queued, before any model result
    assert len(early) == 7 and {label.status for label in early} == {"overloaded"}
    backend.release.set()
    rest = collect(client, 5)
    assert [label.status for label in rest] == ["ok"] * 5


def test_same_frames_and_task_hit_the_cache(serve):
    backend = BrightnessBackend()
    server, client = serve(backend)
    client.submit(0, 0, TASK, {"front": frame(100)})
    (first,) = collect(client, 1)
    client.submit(0, 1, TASK, {"front": frame(100)})
    client.submit(0, 2, "another task", {"front": frame(100)})
    client.submit(0, 3, TASK, {"front": frame(101)})
    later = {label.t: label for label in collect(client, 3)}
    assert not first.cache_hit
    assert later[1].cache_hit and later[1].progress == first.progress
    assert not later[2].cache_hit and not later[3].cache_hit
    assert sum(backend.batch_sizes) == 3
    assert query_server(server.endpoint, "metrics")["cache_hit_rate"] == pytest.approx(1 / 4)


def test_health_and_metrics(serve):
    server, client = serve(BrightnessBackend())
    health = query_server(server.endpoint, "health", timeout_s=5)
    assert health["v"] == PROTOCOL_VERSION
    assert (health["status"], health["model_id"], health["queue_depth"]) == ("ok", "brightness", 0)
    for t in range(10):
        client.submit(0, t, TASK, {"front": frame(t)})
    collect(client, 10)
    metrics = query_server(server.endpoint, "metrics", timeout_s=5)
    assert metrics["replies_by_status"]["ok"] == 10
    assert 0 < metrics["latency_ms"]["p50"] <= metrics["latency_ms"]["p99"]
    assert metrics["queue_depth"] == 0 and metrics["batch_size_mean"] >= 1


def test_jpeg_frames_are_decoded():
    image = np.zeros((24, 40, 3), dtype=np.uint8)
    image[:, 20:] = 200
    backend = BrightnessBackend()
    server = make_server(backend)
    client = RewardClient(server.start(), actor_id=1, jpeg_quality=95)
    try:
        assert client.wait_connected(10)
        client.submit(0, 0, TASK, {"front": image})
        (label,) = collect(client, 1)
        assert label.ok and label.progress == pytest.approx(image.mean() / 255, abs=0.01)
    finally:
        client.close()
        server.stop()


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _bad_messages() -> dict[str, list[bytes]]:
    good = encode_request(request_id=1, actor_id=0, episode_id=0, t=0, task=TASK, mode="progress",
                          deadline_ms=1000, frames={"front": frame(5)})  # fmt: skip
    header = msgpack.unpackb(good[0])

    def with_header(payloads: list[bytes] | None = None, **changes) -> list[bytes]:
        fields = {**header, **changes}
        for key in [k for k, v in changes.items() if v is ...]:
            del fields[key]
        return [msgpack.packb(fields), *(good[1:] if payloads is None else payloads)]

    raw = {"camera": "front", "role": "frame", "encoding": "raw"}
    jpeg = {"camera": "front", "role": "frame", "encoding": "jpeg"}
    return {
        "garbage bytes": [b"\x00\xffnot msgpack at all\xc1"],
        "header not a map": [msgpack.packb([1, 2, 3])],
        "no version": [msgpack.packb({"type": "health"})],
        "wrong version": with_header(v=99),
        "unknown type": with_header(type="shutdown"),
        "missing task": with_header(task=...),
        "missing images": with_header(images=...),
        "task is a number": with_header(task=12),
        "t is a string": with_header(t="zero"),
        "request_id is a bool": with_header(request_id=True),
        "unknown mode": with_header(mode="vibes"),
        "negative deadline": with_header(deadline_ms=-5),
        "deadline NaN": with_header(deadline_ms=float("nan")),
        "images not a list": with_header(images="front"),
        "image descriptor not a map": with_header(images=[7]),
        "no frames after header": with_header(images=[]),
        "more descriptors than frames": with_header(images=[{**raw, "shape": [32, 32, 3]}] * 2),
        "truncated raw image": with_header(
            [frame(5).tobytes()[:1000]], images=[{**raw, "shape": [32, 32, 3]}]
        ),
        "shape lies": with_header(images=[{**raw, "shape": [64, 64, 3]}]),
        "shape not rgb": with_header(images=[{**raw, "shape": [32, 32, 4]}]),
        "shape with floats": with_header(images=[{**raw, "shape": [32.0, 32, 3]}]),
        "huge raw image": with_header([bytes(100 * 1024)], images=[{**raw, "shape": [4096, 4096, 3]}]),
        "unknown encoding": with_header(images=[{**raw, "encoding": "png"}]),
        "unknown role": with_header(images=[{**raw, "role": "goal", "shape": [32, 32, 3]}]),
        "only reference images": with_header(images=[{**raw, "role": "reference", "shape": [32, 32, 3]}]),
        "truncated jpeg": with_header([_jpeg((64, 64))[:200]], images=[jpeg]),
        "jpeg garbage": with_header([b"\xff\xd8\xff" + bytes(500)], images=[jpeg]),
        "jpeg too large": with_header([_jpeg((2000, 10))], images=[jpeg]),
        "duplicate camera": with_header([frame(5).tobytes()] * 2, images=[{**raw, "shape": [32, 32, 3]}] * 2),
        "task too long": with_header(task="x" * 100_000),
    }


def test_bad_requests_get_error_statuses_and_good_ones_keep_being_served(serve):
    # Every bad request answered: each costs one request of the client's rate here, not the default 64.
    server, client = serve(BrightnessBackend(), bad_request_cost=1)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.endpoint)
    try:
        for name, message in _bad_messages().items():
            raw.send_multipart(message)
            assert raw.poll(5000), f"{name}: no reply"
            reply = decode_reply(raw.recv())
            assert reply["status"] == "bad_request", f"{name}: {reply}"
            assert reply["detail"] and math.isnan(reply["progress"]), name
            # The server keeps serving good requests between bad ones.
            client.submit(0, 0, TASK, {"front": frame(51)})
            (label,) = collect(client, 1, timeout_s=5)
            assert label.ok and label.progress == pytest.approx(0.2), name
        raw.send(b"")
        assert raw.poll(5000)
        assert decode_reply(raw.recv())["status"] == "bad_request"
    finally:
        raw.close()
    assert query_server(server.endpoint, "health")["status"] == "ok"


def test_dead_endpoint_counts_drops_without_blocking():
    client = RewardClient("tcp://127.0.0.1:1", actor_id=2)
    try:
        start = time.perf_counter()
        sent = [client.submit(0, t, TASK, {"front": frame(t)}) for t in range(50)]
        assert time.perf_counter() - start < 1.0
        assert not any(sent)
        labels = client.poll()
        assert [label.status for label in labels] == ["dropped"] * 50
        assert client.counts["dropped"] == 50
    finally:
        client.close()


def test_request_without_reply_is_reported_late(serve):
    backend = BrightnessBackend()
    backend.release.clear()
    _, client = serve(backend)
    client.late_grace_ms = 50
    client.submit(4, 9, TASK, {"front": frame(1)}, deadline_ms=100)
    (label,) = collect(client, 1, timeout_s=3)
    assert (label.status, label.episode_id, label.t) == ("late", 4, 9)
    backend.release.set()


def test_a_reply_is_read_into_a_typed_score_reply_or_refused() -> None:
    from striata.reward_server.protocol import ProtocolError, ScoreReply

    ok = ScoreReply.of({"request_id": 7, "status": "ok", "progress": 0.25, "done_prob": 1, "cache_hit": True})
    assert (ok.request_id, ok.status, ok.progress, ok.done_prob, ok.cache_hit) == (7, "ok", 0.25, 1.0, True)
    assert math.isnan(ok.delta) and math.isnan(ok.uncertainty)
    failed = ScoreReply.of({"request_id": 8, "status": "timeout", "progress": None, "done_prob": True})
    assert math.isnan(failed.progress) and math.isnan(failed.done_prob)  # never a default score
    for bad in ("7", None, True, 7.0):
        with pytest.raises(ProtocolError, match="request_id"):
            ScoreReply.of({"request_id": bad, "status": "ok"})
