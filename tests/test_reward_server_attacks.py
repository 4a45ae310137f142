"""Hostile clients on the reward server's port (issue 18): what each attack leaves another client.

The server runs in this process with a cheap backend; every attack comes from another process
(``striata.reward_server.bench_attacks.AttackProcess``), so this process's memory is the server's. While the
attack lasts, an honest client keeps one request in flight and must get ``ok`` for every one; the
attacker reports when the server has read everything it sent (a ``health`` answered on the same
connection). Timing (another client's p99 within 2x a quiet baseline) is not asserted here: it is
what ``striata bench reward-attacks`` measures.
"""

from __future__ import annotations

import io
import math
import os
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from PIL import Image

from striata.reward_server.backend import ScoreInput, ScoreOutput
from striata.reward_server.batching import Pending
from striata.reward_server.bench_attacks import AttackProcess, lying_jpeg, peak_rss_mb, reset_peak_rss, rss_mb
from striata.reward_server.client import RewardClient, RewardLabel, query_server
from striata.reward_server.config import RewardServerConfig
from striata.reward_server.decoding import DecodeJob, FairQueue
from striata.reward_server.protocol import ScoreRequest, decode_reply, encode_request
from striata.reward_server.server import RewardServer

TASK = "pick up the cube"


class StatsBackend:
    """progress = mean pixel value / 255 of the first camera. ``gate`` holds ``score`` until set;
    ``entered`` is set once a batch is inside."""

    model_id = "stats"
    revision = "1"
    max_batch = 64

    def __init__(self, cameras: tuple[str, ...] | None = None, modes: tuple[str, ...] | None = None) -> None:
        if cameras is not None:
            self.cameras = cameras
        if modes is not None:
            self.modes = modes
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def score(self, inputs: list[ScoreInput]) -> list[ScoreOutput]:
        self.entered.set()
        self.gate.wait(timeout=30)
        return [ScoreOutput(progress=float(item.frames[min(item.frames)].mean() / 255)) for item in inputs]


@pytest.fixture
def serve():
    started: list[tuple[RewardServer, RewardClient]] = []

    def start(backend: StatsBackend | None = None, **overrides) -> tuple[RewardServer, RewardClient]:
        config = RewardServerConfig.model_validate(
            {"port": 0, "backend": {"kind": "clip", "path": "unused"}, **overrides}
        )
        server = RewardServer(config, backend=backend or StatsBackend())
        client = RewardClient(server.start(), actor_id=1, deadline_ms=30_000)
        assert client.wait_connected(10)
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        client.close()
        server.stop()


def frame(value: int, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value % 256, dtype=np.uint8)


def wait_label(client: RewardClient, timeout_s: float = 30.0) -> RewardLabel:
    """The next settled label (one request in flight)."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        client.wait(give_up - time.monotonic())
        labels = client.poll()
        if labels:
            (label,) = labels
            return label
    raise AssertionError(f"no label within {timeout_s} s")


def alongside(server: RewardServer, client: RewardClient, attack: str) -> tuple[dict, list[RewardLabel]]:
    """Run ``attack`` from another process while ``client`` keeps one request in flight; (what the attacker
    saw, the client's labels)."""
    attacker = AttackProcess(server.endpoint, attack).start()
    labels: list[RewardLabel] = []
    attacker.go()
    while not attacker.finished():
        client.submit(0, len(labels), TASK, {"front": frame(len(labels))})
        labels.append(wait_label(client))
    return attacker.result(), labels


def dropped(server: RewardServer) -> dict[str, int]:
    return query_server(server.endpoint, "metrics")["dropped"]


def assert_served(labels: list[RewardLabel]) -> None:
    assert labels, "the attack was over before the other client sent anything"
    assert [label.status for label in labels] == ["ok"] * len(labels)


def test_a_400_mb_frame_is_refused_before_it_is_read(serve):
    server, client = serve()
    assert reset_peak_rss(os.getpid()), "the kernel refuses to reset this process's peak RSS"
    before = rss_mb(os.getpid())
    seen, labels = alongside(server, client, "frame_400mb")
    peak = peak_rss_mb(os.getpid())
    assert seen["disconnected"] and seen["answered_after"], seen
    assert_served(labels)
    assert peak is not None and peak - before < 50, f"RSS {before:.0f} MB -> peak {peak:.0f} MB"


@pytest.mark.parametrize("attack", ["frames_1m", "frames_300x1mb"])
def test_a_message_of_too_many_frames_is_dropped_and_its_memory_returned(serve, attack):
    """The server closes the connection at the header of the frame over the bound: the message is never
    held whole, so RSS stays within 50 MB of where it was, at its peak too."""
    server, client = serve()
    before = rss_mb(os.getpid())
    assert reset_peak_rss(os.getpid()), "the kernel refuses to reset this process's peak RSS"
    seen, labels = alongside(server, client, attack)
    peak = peak_rss_mb(os.getpid())
    assert seen["answered_after"] and seen["replies"] == {}, seen
    assert_served(labels)
    assert dropped(server) == {"too_many_frames": 1}
    assert rss_mb(os.getpid()) - before < 50
    assert peak is not None and peak - before < 50, f"RSS {before:.0f} MB -> peak {peak:.0f} MB"


def test_10000_garbage_messages_from_one_client_do_not_crowd_out_another(serve):
    server, client = serve()
    seen, labels = alongside(server, client, "garbage_10k")
    assert_served(labels)
    # The first ones are answered, each costing the attacker bad_message_cost requests of its rate; the
    # rest are dropped unread (and so are the attacker's first health requests after them, until its
    # rate allows one). Without the cost, its burst alone (1,024 requests) was answered.
    over_rate = dropped(server)["peer_over_message_rate"]
    assert over_rate > 0 and set(seen["replies"]) == {"bad_request"}
    assert seen["replies"]["bad_request"] + over_rate >= 10_000
    limits = server.transport_limits
    allowed = limits.peer_burst_messages + seen["seconds"] * limits.peer_messages_per_s
    answerable = allowed / limits.bad_message_cost
    assert seen["replies"]["bad_request"] <= answerable + 8, seen


def test_jpegs_with_lying_headers_are_refused_unread(serve):
    server, client = serve()
    seen, labels = alongside(server, client, "lying_jpegs")
    assert_served(labels)
    assert seen["replies"] == {"bad_request": 10}
    assert all("JPEG header claims 1024x1024" in detail for detail in seen["details"])
    assert "images[0] (camera 'front')" in seen["details"][0]


def test_jpegs_padded_past_the_size_floor_are_decoded_without_starving_another_client(serve):
    server, client = serve()
    seen, labels = alongside(server, client, "padded_jpegs")
    assert_served(labels)
    assert sum(seen["replies"].values()) == 10


def _noise_jpeg(side: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (
            _noise_jpeg(64)[:-2000],
            "images[1] (camera 'side'): not a decodable JPEG (OSError: image file is truncated",
        ),
        (b"\xff\xd8\xff" + bytes(500), "images[1] (camera 'side'): not a decodable JPEG"),
        (b"GIF89a" + bytes(100), "images[1] (camera 'side'): not a decodable JPEG"),
        (
            lying_jpeg(side=1024),
            "images[1] (camera 'side'): JPEG header claims 1024x1024, which needs at least",
        ),
        (
            lying_jpeg(side=2000, padding=600_000),
            "images[1] (camera 'side'): JPEG is 2000x2000, sides must be",
        ),
    ],
    ids=["truncated", "garbage after the marker", "not a jpeg", "lying header", "over max_side"],
)
def test_corrupt_jpegs_are_bad_requests_naming_the_camera(serve, payload, detail):
    _, client = serve()
    client.jpeg_quality = 90
    client.submit(0, 0, TASK, {"front": frame(5)})
    assert wait_label(client).ok  # the same client's good JPEG is scored
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(client.endpoint)
    try:
        frames = {"front": frame(5), "side": frame(6)}
        good = encode_request(request_id=9, actor_id=0, episode_id=0, t=0, task=TASK, mode="progress",
                              deadline_ms=5000, frames=frames, jpeg_quality=90)  # fmt: skip
        raw.send_multipart([good[0], good[1], payload])
        assert raw.poll(10_000)
        reply = decode_reply(raw.recv())
    finally:
        raw.close()
    assert (reply["status"], reply["request_id"]) == ("bad_request", 9)
    assert reply["detail"].startswith(detail), reply["detail"]
    assert math.isnan(reply["progress"])


def test_decoding_runs_off_the_socket_thread(serve, monkeypatch):
    """A decode that never ends holds one decode thread: health and another client's request are answered."""
    import striata.reward_server.server as server_module

    stuck = threading.Event()
    release = threading.Event()
    decode = server_module.decode_image

    def slow_decode(image, limits):
        if image.encoding == "jpeg":
            stuck.set()
            release.wait(timeout=30)
        return decode(image, limits)

    monkeypatch.setattr(server_module, "decode_image", slow_decode)
    server, client = serve()
    heavy = RewardClient(server.endpoint, actor_id=2, deadline_ms=30_000, jpeg_quality=90)
    try:
        assert heavy.wait_connected(10)
        heavy.submit(0, 0, TASK, {"front": frame(1)})
        assert stuck.wait(10)
        assert query_server(server.endpoint, "health", timeout_s=5)["status"] == "ok"
        client.submit(0, 0, TASK, {"front": frame(2)})
        assert wait_label(client, timeout_s=10).ok
        release.set()
        assert wait_label(heavy).ok
    finally:
        release.set()
        heavy.close()


def _job(identity: bytes, t: int) -> DecodeJob:
    request = ScoreRequest(
        request_id=t, actor_id=0, episode_id=0, t=t, task=TASK, mode="progress", deadline_ms=1
    )
    return DecodeJob(Pending(identity, request, received=0.0, deadline=1.0))


def test_decode_queue_takes_clients_in_turn():
    queue = FairQueue()
    for t in range(10):
        queue.put(_job(b"flood", t))
    queue.put(_job(b"actor", 0))
    first = queue.take(0)
    assert first is not None and first.identity == b"flood"
    assert queue.others_waiting(b"flood")
    queue.give_back(first)  # half decoded: the other client goes first, then it resumes
    taken = [queue.take(0) for _ in range(3)]
    assert [(job.identity, job.pending.request.t) for job in taken if job] == [
        (b"actor", 0),
        (b"flood", 0),
        (b"flood", 1),
    ]
    assert len(queue) == 8 and not queue.others_waiting(b"flood")


def test_a_score_ready_after_the_deadline_is_sent_as_timeout(serve):
    backend = StatsBackend()
    backend.gate.clear()
    _, client = serve(backend)
    client.late_grace_ms = 30_000  # the server's answer, not the client's own verdict, is under test
    sent = time.monotonic()
    client.submit(0, 0, TASK, {"front": frame(9)}, deadline_ms=200)
    assert backend.entered.wait(10)  # in the model before its deadline: it is scored, not expired
    time.sleep(max(0.0, sent + 0.25 - time.monotonic()))  # a clock condition: the deadline is over
    backend.gate.set()
    label = wait_label(client)
    assert label.status == "timeout" and math.isnan(label.progress)
    assert "after the deadline" in label.detail


def test_health_lists_cameras_modes_and_limits(serve):
    backend = StatsBackend(cameras=("workspace", "side"), modes=("progress", "success"))
    server, client = serve(backend, max_images=4, max_image_bytes=1 << 20, max_request_bytes=2 << 20,
                           peer_burst_bytes=4 << 20)  # fmt: skip
    health = query_server(server.endpoint, "health")
    assert (health["cameras"], health["modes"], health["encodings"]) == (
        ["workspace", "side"],
        ["progress", "success"],
        ["raw", "jpeg"],
    )
    limits = health["limits"]
    assert (limits["max_frames"], limits["max_frame_bytes"], limits["max_message_bytes"]) == (
        5,
        1 << 20,
        2 << 20,
    )
    assert (limits["max_images"], limits["max_side"], limits["max_queue"]) == (4, 1024, 1024)
    for key in ("peer_messages_per_s", "peer_bytes_per_s", "max_task_chars", "max_batch", "max_header_bytes"):
        assert limits[key] > 0, key
    assert limits["bad_message_cost"] == 64

    client.submit(0, 0, TASK, {"front": frame(1)})
    label = wait_label(client)
    assert label.status == "bad_request"
    assert (
        label.detail
        == "images: no frame from camera 'workspace'; this server takes cameras workspace, side (got front)"
    )
    client.submit(0, 1, TASK, {"workspace": frame(1), "side": frame(2)}, mode="episode_score")
    label = wait_label(client)
    assert label.detail == "mode: 'episode_score' is not served here; this server takes progress, success"
    client.submit(0, 2, TASK, {"workspace": frame(51), "side": frame(2)})
    assert wait_label(client).ok


def test_an_oversized_frame_costs_its_sender_the_connection_not_a_reply(serve):
    server, client = serve(max_image_bytes=1 << 16)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    monitor = raw.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    raw.connect(server.endpoint)
    try:
        header = msgpack.packb({"v": 1, "type": "health"})
        raw.send_multipart([header, bytes(1 << 17)])
        assert monitor.poll(10_000), "the server kept the connection"
        client.submit(0, 0, TASK, {"front": frame(3)})
        assert wait_label(client).ok
    finally:
        raw.disable_monitor()
        monitor.close(0)
        raw.close()
