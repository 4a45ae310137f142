"""`striata bench reward-attacks`: what a hostile client on the reward server's port does to another client.

A reward server subprocess (the torch backend, cache off) serves one honest client that submits a
request with a fresh frame at a fixed rate, as an actor does. For each attack, a separate process
that can reach the port (``AttackProcess``: this module run as a script) connects, waits for a go,
then sends one of:

- ``frame_400mb``: a request whose one image frame is 400 MB (refused by libzmq before it is read);
- ``frames_1m``: one message of 1,000,000 one-byte frames;
- ``frames_300x1mb``: one message of 300 frames of 1 MB;
- ``garbage_10k``: 10,000 messages that are not msgpack, as fast as it can;
- ``lying_jpegs``: ten requests of 16 small JPEGs whose headers claim 1024x1024;
- ``padded_jpegs``: the same, padded past the size floor a lying header trips, so each is decoded.

Per attack, beside a quiet baseline measured just before it in the same run: the honest client's
round-trip p50/p99/max and its replies that were not ``ok``, ``p99_ratio`` (attack over baseline)
and ``within_2x``, the server's RSS before/after and its peak during the attack (``VmHWM``, reset
before each), what the server's transport dropped, and what the attacker saw.
"""

from __future__ import annotations

import io
import json
import math
import re
import select
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import psutil
import zmq
from PIL import Image
from zmq.utils.monitor import recv_monitor_message

from striata.common.floods import FLOODS, GARBAGE_MESSAGES
from striata.reward_server.bench import CAMERA, FRAME_SIZE, TASK_TEXT, resolved_backend
from striata.reward_server.client import RewardClient, query_server
from striata.reward_server.config import BackendConfig, RewardServerConfig
from striata.reward_server.launch import start_reward_server

ATTACKS = ("frame_400mb", "frames_1m", "frames_300x1mb", "garbage_10k", "lying_jpegs", "padded_jpegs")
LYING_SIDE = 1024
JPEG_REQUESTS = 10
JPEGS_PER_REQUEST = 16
ATTACK_TIMEOUT_S = 120.0


# ----------------------------------------------------------------- the attacker process
class AttackProcess:
    """One attack in its own process: ``start`` returns once it is connected and answered, ``go`` sends
    it, ``result`` waits for what it saw (its last stdout line, JSON)."""

    def __init__(self, endpoint: str, attack: str) -> None:
        if attack not in ATTACKS:
            raise ValueError(f"attack: unknown {attack!r}; allowed: {', '.join(ATTACKS)}")
        self.attack = attack
        self.process = subprocess.Popen(
            [sys.executable, "-m", "striata.reward_server.bench_attacks", endpoint, attack],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self, timeout_s: float = 60.0) -> AttackProcess:
        line = self._line(timeout_s)
        if line.get("ready") is not True:
            raise RuntimeError(f"attacker {self.attack}: not ready ({line})")
        return self

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finished(self) -> bool:
        """Whether its result line is there to read (never blocks)."""
        assert self.process.stdout is not None
        return bool(select.select([self.process.stdout], [], [], 0)[0])

    def result(self, timeout_s: float = ATTACK_TIMEOUT_S) -> dict[str, Any]:
        try:
            return self._line(timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def _line(self, timeout_s: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        if not select.select([self.process.stdout], [], [], timeout_s)[0]:
            self.close()
            raise TimeoutError(f"attacker {self.attack}: nothing within {timeout_s:g} s")
        line = self.process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"attacker {self.attack}: exited with code {self.process.wait(timeout=10)}")
        return json.loads(line)


def lying_jpeg(side: int = LYING_SIDE, padding: int = 0) -> bytes:
    """A 32x32 JPEG whose header says ``side`` x ``side``; ``padding`` zero bytes go before its end marker."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    sof = data.index(b"\xff\xc0")  # baseline start of frame: length (2), precision (1), height, width
    data = data[: sof + 5] + struct.pack(">HH", side, side) + data[sof + 9 :]
    return data[:-2] + bytes(padding) + data[-2:]


def _score_header(request_id: int, images: list[dict[str, Any]]) -> bytes:
    return msgpack.packb(
        {"v": 1, "type": "score", "request_id": request_id, "actor_id": 666, "episode_id": 0, "t": 0,
         "task": TASK_TEXT, "mode": "progress", "deadline_ms": 30_000.0, "images": images}
    )  # fmt: skip


def _replies_until_health(sock: zmq.Socket, timeout_s: float) -> tuple[bool, Counter[str]]:
    """Ask ``health`` until it is answered (a peer over its rate loses requests), counting the score
    replies that come first. Messages on one connection are read in order, so the answer means the
    server has read everything sent before it."""
    statuses: Counter[str] = Counter()
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        sock.send(msgpack.packb({"v": 1, "type": "health"}))
        while sock.poll(500):
            reply = msgpack.unpackb(sock.recv())
            if reply.get("type") == "health":
                return True, statuses
            statuses[str(reply.get("status"))] += 1
    return False, statuses


def _frame_400mb(sock: zmq.Socket, monitor: zmq.Socket, cameras: list[str]) -> dict[str, Any]:
    payload = bytes(400 * 1024 * 1024)
    header = _score_header(
        0, [{"camera": cameras[0], "role": "frame", "encoding": "raw", "shape": [1, 1, 3]}]
    )
    sock.send_multipart([header, payload], copy=False)
    disconnected = False
    give_up = time.monotonic() + ATTACK_TIMEOUT_S
    while not disconnected and monitor.poll(max(1, int((give_up - time.monotonic()) * 1000))):
        event = recv_monitor_message(monitor)
        disconnected = event["event"] == zmq.EVENT_DISCONNECTED
    answered, _ = _replies_until_health(sock, 30)
    return {"disconnected": disconnected, "answered_after": answered}


def _flood(name: str, **sent: int) -> Callable[[zmq.Socket, zmq.Socket, list[str]], dict[str, Any]]:
    """``striata.common.floods``' flood ``name``, then the replies it drew; ``sent`` says how much it was."""

    def attack(sock: zmq.Socket, monitor: zmq.Socket, cameras: list[str]) -> dict[str, Any]:
        FLOODS[name](sock)
        answered, statuses = _replies_until_health(sock, ATTACK_TIMEOUT_S)
        return {**sent, "answered_after": answered, "replies": dict(statuses)}

    return attack


def _jpegs(padding: int) -> Callable[[zmq.Socket, zmq.Socket, list[str]], dict[str, Any]]:
    def attack(sock: zmq.Socket, monitor: zmq.Socket, cameras: list[str]) -> dict[str, Any]:
        # The server's own cameras first: a request without them is refused before anything is decoded.
        names = [*cameras, *(f"cam{i}" for i in range(JPEGS_PER_REQUEST))][:JPEGS_PER_REQUEST]
        images = [{"camera": name, "role": "frame", "encoding": "jpeg"} for name in names]
        jpeg = lying_jpeg(padding=padding)
        for request_id in range(JPEG_REQUESTS):
            sock.send_multipart([_score_header(request_id, images), *[jpeg] * len(images)])
        statuses: Counter[str] = Counter()
        details: list[str] = []
        give_up = time.monotonic() + ATTACK_TIMEOUT_S
        while sum(statuses.values()) < JPEG_REQUESTS and sock.poll(
            max(1, int((give_up - time.monotonic()) * 1000))
        ):
            reply = msgpack.unpackb(sock.recv())
            statuses[str(reply["status"])] += 1
            details.append(str(reply["detail"]))
        return {
            "requests": JPEG_REQUESTS,
            "jpeg_bytes": len(jpeg),
            "replies": dict(statuses),
            "details": details,
        }

    return attack


def _padding_past_the_floor() -> int:
    # One bit per 8x8 block of a LYING_SIDE^2 image (striata.reward_server.protocol's floor), plus a margin.
    return math.ceil(LYING_SIDE / 8) ** 2 // 8 + 1024


ATTACK_SENDERS: dict[str, Callable[[zmq.Socket, zmq.Socket, list[str]], dict[str, Any]]] = {
    "frame_400mb": _frame_400mb,
    "frames_1m": _flood("million_frames", frames=1_000_000),
    "frames_300x1mb": _flood("big_frames", frames=300),
    "garbage_10k": _flood("garbage", messages=GARBAGE_MESSAGES),
    "lying_jpegs": _jpegs(padding=0),
    "padded_jpegs": _jpegs(padding=_padding_past_the_floor()),
}


def _attacker_main(endpoint: str, attack: str) -> None:
    """Connect, learn the server's cameras, print ``{"ready": true}``, wait for a line on stdin, attack,
    print what happened as one JSON line."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)  # everything goes out at once, as a flood would
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    sock.connect(endpoint)
    sock.send(msgpack.packb({"v": 1, "type": "health"}))
    if not sock.poll(30_000):
        raise SystemExit(f"attacker: no health reply from {endpoint}")
    cameras = msgpack.unpackb(sock.recv()).get("cameras") or ["front"]
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    outcome = ATTACK_SENDERS[attack](sock, monitor, cameras)
    print(
        json.dumps({"attack": attack, "seconds": round(time.monotonic() - start, 3), **outcome}), flush=True
    )
    sock.disable_monitor()
    monitor.close(0)
    sock.close(0)
    context.term()


# ----------------------------------------------------------------- server memory
def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's peak RSS (``VmHWM``) of ``pid``; False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


# ----------------------------------------------------------------- the benchmark
def bench_reward_attacks(
    *,
    backend: BackendConfig | None = None,
    attacks: tuple[str, ...] = ATTACKS,
    window_s: float = 4.0,
    rate_hz: float = 100.0,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    backend = resolved_backend(backend)
    stage = on_stage or (lambda _: None)
    config = RewardServerConfig(port=0, cache_size=0, backend=backend)
    frames = np.random.default_rng(0).integers(0, 256, size=(64, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    results: dict[str, Any] = {}
    with start_reward_server(config) as server:
        pid = server.process.pid
        cameras = query_server(server.endpoint, "health", timeout_s=30)["cameras"] or [CAMERA]
        client = RewardClient(server.endpoint, actor_id=0, deadline_ms=10_000)
        try:
            if not client.wait_connected(30):
                raise RuntimeError(f"reward server at {server.endpoint} did not answer")
            _measure(client, cameras, frames, 1.0, rate_hz)  # warm-up
            for attack in attacks:
                stage(f"{attack}: quiet baseline, then the attack ({window_s:g} s each)")
                baseline = _measure(client, cameras, frames, window_s, rate_hz)
                attacker = AttackProcess(server.endpoint, attack).start()
                dropped_before = query_server(server.endpoint, "metrics")["dropped"]
                peak_known = reset_peak_rss(pid)
                rss_before = rss_mb(pid)
                attacker.go()
                under = _measure(client, cameras, frames, window_s, rate_hz)
                seen = attacker.result()
                dropped_after = query_server(server.endpoint, "metrics")["dropped"]
                peak = peak_rss_mb(pid) if peak_known else None
                results[attack] = {
                    "baseline": baseline,
                    "attack": under,
                    "p99_ratio": _ratio(under["p99"], baseline["p99"]),
                    "within_2x": _ratio(under["p99"], baseline["p99"]) <= 2.0,
                    "server_rss_mb": {"before": round(rss_before, 1), "after": round(rss_mb(pid), 1),
                                      "peak": None if peak is None else round(peak, 1)},
                    "dropped": {k: v - dropped_before.get(k, 0) for k, v in dropped_after.items()
                                if v != dropped_before.get(k, 0)},
                    "attacker": seen,
                }  # fmt: skip
        finally:
            client.close()
    return {
        "attacks": results,
        "all_within_2x": all(r["within_2x"] for r in results.values()),
        "setup": {"window_s": window_s, "rate_hz": rate_hz, "backend": backend.kind,
                  "device": getattr(backend, "device", None), "cameras": cameras, "frame_size": FRAME_SIZE},
    }  # fmt: skip


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 2) if baseline > 0 else math.inf


def _measure(
    client: RewardClient, cameras: list[str], frames: np.ndarray, seconds: float, rate_hz: float
) -> dict[str, Any]:
    """Submit a request with fresh frames every 1/rate_hz s for ``seconds`` (open loop, as an actor does)
    and wait for every label; round trips of the server's replies, whatever their status."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent = 0

    def take(labels: list) -> None:
        for label in labels:
            statuses[label.status] += 1
            if math.isfinite(label.round_trip_ms):
                latencies.append(label.round_trip_ms)

    start = time.monotonic()
    while time.monotonic() - start < seconds:
        images = {camera: frames[(sent + i) % len(frames)] for i, camera in enumerate(cameras)}
        client.submit(0, sent, TASK_TEXT, images)
        sent += 1
        # Until the next request's slot, take replies as they come (round trips to the millisecond).
        slot = start + sent / rate_hz
        while (left := slot - time.monotonic()) > 0:
            client.wait(left)
            take(client.poll())
    give_up = time.monotonic() + client.deadline_ms / 1000 + 5
    while sum(statuses.values()) < sent and time.monotonic() < give_up:
        client.wait(give_up - time.monotonic())
        take(client.poll())
    values = np.asarray(latencies, dtype=np.float64)
    return {
        "requests": sent,
        "not_ok": {k: v for k, v in statuses.items() if k != "ok"},
        "p50": round(float(np.percentile(values, 50)), 2) if values.size else math.nan,
        "p99": round(float(np.percentile(values, 99)), 2) if values.size else math.nan,
        "max": round(float(values.max()), 2) if values.size else math.nan,
    }


if __name__ == "__main__":
    _attacker_main(*sys.argv[1:3])
