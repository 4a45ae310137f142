"""``striata bench reward``: what the reward server costs and delivers, measured through the real socket path.

- ``batched_frames_per_s`` / ``unbatched_frames_per_s``: frames scored per second by a server
  subprocess with the torch backend, fed a flood of distinct frames, with micro-batching
  (``max_batch``) against ``max_batch = 1``; cache off, so every frame reaches the model.
- ``latency_ms``: round-trip p50/p99 with 8 concurrent clients, each one request in flight.
- ``actor_ratio``: env steps/s of a batched panda_pick loop that renders the progress model's camera and
  submits every env's frame every ``every_k`` steps, with the server on against off: the same loop,
  in alternating blocks, submits either to the live server or to an endpoint nobody serves (every
  submit is a drop), so rendering and encoding cost the same in both and the ratio is what the
  server's work and its replies take from the actor.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from striata.reward_server.backend import backend_device
from striata.reward_server.client import RewardClient, RewardLabel
from striata.reward_server.config import BackendConfig, RewardServerConfig, TorchBackendConfig
from striata.reward_server.launch import start_reward_server
from striata.reward_server.progress_model.config import DatasetConfig

TASK_TEXT = "pick up the cube and lift it"
# What the progress model is trained on: requests carry this task's camera frames at this size,
# rendered without shadows, as actors feeding it do.
TASK = DatasetConfig().task
CAMERA = DatasetConfig().camera
FRAME_SIZE = DatasetConfig().image_size


def resolved_backend(backend: BackendConfig | None) -> BackendConfig:
    """The benchmarked backend (random-weight torch by default) with its device resolved here: the server
    subprocesses see this process's devices, so the figures can say where the model ran."""
    backend = backend or TorchBackendConfig()
    if isinstance(backend, TorchBackendConfig):
        backend = backend.model_copy(update={"device": backend_device(backend.device)})
    return backend


def bench_reward(
    *,
    backend: BackendConfig | None = None,
    frames: int = 512,
    max_batch: int = 32,
    image_size: int = FRAME_SIZE,
    clients: int = 8,
    latency_s: float = 5.0,
    num_envs: int = 8,
    every_k: int = 5,
    actor_blocks: int = 6,
    block_steps: int = 20,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    backend = resolved_backend(backend)
    stage = on_stage or (lambda _: None)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, size=(frames, image_size, image_size, 3), dtype=np.uint8)

    stage("unbatched throughput (max_batch 1)")
    unbatched = _throughput(_config(backend, 1), pool)
    stage(f"batched throughput (max_batch {max_batch}), latency with {clients} clients, actor loop")
    with start_reward_server(_config(backend, max_batch)) as server:
        batched = _throughput_on(server.endpoint, pool)
        latency = _latency(server.endpoint, pool, clients, latency_s)
        actor = _actor_ratio(server.endpoint, num_envs, every_k, actor_blocks, block_steps, image_size)
    return {
        "batched_frames_per_s": round(batched, 1),
        "unbatched_frames_per_s": round(unbatched, 1),
        "batching_ratio": round(batched / unbatched, 2) if unbatched > 0 else None,
        "latency_ms": latency,
        "actor_ratio": round(actor["on"] / actor["off"], 3),
        "actor_env_steps_per_s": actor,
        "setup": {"frames": frames, "max_batch": max_batch, "image_size": image_size, "clients": clients,
                  "num_envs": num_envs, "every_k": every_k, "backend": backend.kind,
                  "device": getattr(backend, "device", None)},
    }  # fmt: skip


def _config(backend: BackendConfig, max_batch: int) -> RewardServerConfig:
    # The throughput runs are one client submitting every frame at once: its burst is the whole pool.
    return RewardServerConfig(
        port=0, max_batch=max_batch, max_wait_ms=5.0, max_queue=100_000, peer_burst_messages=100_000,
        cache_size=0, backend=backend,
    )  # fmt: skip


def _throughput(config: RewardServerConfig, pool: np.ndarray) -> float:
    with start_reward_server(config) as server:
        return _throughput_on(server.endpoint, pool)


def _throughput_on(endpoint: str, pool: np.ndarray) -> float:
    """Frames/s for scoring every frame of ``pool`` once, all submitted at once (after a warm-up)."""
    client = RewardClient(endpoint, actor_id=0, deadline_ms=600_000, send_hwm=100_000)
    try:
        if not client.wait_connected(30):
            raise RuntimeError(f"reward server at {endpoint} did not answer")
        _collect(client, [client.submit(0, t, TASK_TEXT, {CAMERA: pool[t]}) for t in range(8)], 120)
        start = time.perf_counter()
        sent = [client.submit(1, t, TASK_TEXT, {CAMERA: frame}) for t, frame in enumerate(pool)]
        labels = _collect(client, sent, 600)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    return sum(label.ok for label in labels) / elapsed


def _collect(client: RewardClient, sent: list[bool], timeout_s: float) -> list[RewardLabel]:
    labels: list[RewardLabel] = []
    give_up = time.monotonic() + timeout_s
    while len(labels) < len(sent) and time.monotonic() < give_up:
        labels += client.poll()
        time.sleep(0.001)
    return labels


def _latency(endpoint: str, pool: np.ndarray, clients: int, seconds: float) -> dict[str, float]:
    """Round trips of ``clients`` threads, each with one request in flight, for ``seconds``."""
    results: list[list[float]] = [[] for _ in range(clients)]

    def run(index: int) -> None:
        client = RewardClient(endpoint, actor_id=index, deadline_ms=30_000)
        try:
            client.wait_connected(30)
            stop = time.monotonic() + seconds
            t = 0
            while time.monotonic() < stop:
                client.submit(0, t, TASK_TEXT, {CAMERA: pool[(index * 97 + t) % len(pool)]})
                t += 1
                for label in _collect(client, [True], 60):
                    if label.ok:
                        results[index].append(label.round_trip_ms)
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    latencies = np.concatenate([np.asarray(r, dtype=np.float64) for r in results])
    if latencies.size == 0:
        raise RuntimeError("no request came back during the latency run")
    return {"p50": round(float(np.percentile(latencies, 50)), 2),
            "p99": round(float(np.percentile(latencies, 99)), 2)}  # fmt: skip


def _actor_ratio(
    endpoint: str, num_envs: int, every_k: int, blocks: int, block_steps: int, image_size: int
) -> dict[str, float]:
    from striata.envs.registry import make_env, task_entry

    env = make_env(TASK, num_envs=num_envs, seed=0, image_size=image_size)
    scene_camera = task_entry(TASK).progress_scene().cameras[CAMERA]
    live = RewardClient(endpoint, actor_id=0, deadline_ms=5_000)
    dead = RewardClient(_unserved_endpoint(), actor_id=1, deadline_ms=5_000)
    rng = np.random.default_rng(0)
    steps = {"on": 0, "off": 0}
    seconds = {"on": 0.0, "off": 0.0}
    try:
        live.wait_connected(30)
        env.reset()
        episode = np.zeros(num_envs, dtype=np.int64)
        t = np.zeros(num_envs, dtype=np.int64)
        for block in range(2 * blocks):
            mode = "on" if block % 2 == 0 else "off"
            client = live if mode == "on" else dead
            start = time.perf_counter()
            for step in range(block_steps):
                _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, size=(num_envs, env.action_dim)))
                done = terminated | truncated
                episode += done
                t = np.where(done, 0, t + 1)
                if step % every_k == 0:
                    images = env.render(scene_camera, image_size, image_size, shadows=False)
                    for i in range(num_envs):
                        client.submit(int(episode[i]), int(t[i]), TASK_TEXT, {CAMERA: images[i]})
                client.poll()
            seconds[mode] += time.perf_counter() - start
            steps[mode] += block_steps * num_envs
    finally:
        live.close()
        dead.close()
        env.close()
    return {mode: round(steps[mode] / seconds[mode], 1) for mode in ("on", "off")}


def _unserved_endpoint() -> str:
    """A localhost port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"
