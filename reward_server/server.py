"""The reward service: a ZMQ ROUTER socket loop in front of a model thread that scores micro-batches.

The socket loop decodes and validates requests, answers cache hits, health and metrics itself,
refuses at once when the queue is full (``overloaded``), and forwards replies the model thread
hands back over an inproc socket. The model thread takes batches from ``MicroBatcher``; it is the
only place the backend runs, so the socket loop never waits on a model. Anything malformed a peer
sends is answered with ``bad_request`` and the loop goes on.

Run it standalone with ``python -m reward_server.server --config-json '{...}'`` (what
``start_reward_server`` does) or ``striata serve-reward --config X.yaml``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
from typing import Any

import zmq

from reward_server.backend import RewardBackend, ScoreOutput
from reward_server.batching import MicroBatcher, Pending
from reward_server.cache import CacheKey, ScoreCache
from reward_server.config import RewardServerConfig
from reward_server.metrics import ServerMetrics
from reward_server.protocol import (
    PROTOCOL_VERSION,
    Limits,
    ProtocolError,
    ScoreRequest,
    decode_score_request,
    pack,
    score_reply,
    unpack_header,
)

log = logging.getLogger(__name__)

POLL_MS = 50
MAX_MESSAGES_PER_TURN = 256  # keeps replies flowing while a flood of requests arrives
RESULTS_ENDPOINT = "inproc://reward-results-{}"


class RewardServer:
    """One backend served on one ROUTER socket. ``bind()``, then ``serve()`` (blocks) or ``start()``."""

    def __init__(self, config: RewardServerConfig, backend: RewardBackend | None = None) -> None:
        if backend is None:
            from reward_server.backends import make_backend

            backend = make_backend(config.backend)
        self.config = config
        self.backend = backend
        self.limits = Limits(
            max_images=config.max_images, max_side=config.max_side, max_image_bytes=config.max_image_bytes
        )
        self.batcher = MicroBatcher(
            config.max_queue, min(config.max_batch, max(1, backend.max_batch)), config.max_wait_ms / 1000
        )
        self.cache = ScoreCache(config.cache_size)
        self._cache_lock = threading.Lock()
        self.metrics = ServerMetrics()
        self._context = zmq.Context()
        self._router: zmq.Socket | None = None
        self._results_endpoint = RESULTS_ENDPOINT.format(id(self))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = time.monotonic()
        self.endpoint = ""

    # ----------------------------------------------------------------- lifecycle
    def bind(self) -> str:
        """Bind the ROUTER socket; port 0 picks a free port. Returns the endpoint clients connect to."""
        router = self._context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.SNDHWM, 10_000)
        router.setsockopt(zmq.RCVHWM, 10_000)
        port = "*" if self.config.port == 0 else str(self.config.port)
        router.bind(f"tcp://{self.config.host}:{port}")
        self._router = router
        bound = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "*") else self.config.host
        self.endpoint = f"tcp://{host}:{bound.rsplit(':', 1)[1]}"
        return self.endpoint

    def serve(self) -> None:
        """Run the socket loop and the model thread until ``stop()``."""
        if self._router is None:
            self.bind()
        results = self._context.socket(zmq.PAIR)
        results.setsockopt(zmq.LINGER, 0)
        results.bind(self._results_endpoint)
        worker = threading.Thread(target=self._model_loop, name="reward-model", daemon=True)
        worker.start()
        self._threads.append(worker)
        try:
            self._socket_loop(results)
        finally:
            self._stop.set()
            worker.join(timeout=10)
            results.close(0)
            assert self._router is not None
            self._router.close(0)

    def start(self) -> str:
        """Serve in a background thread (tests, the Ray actor); returns the endpoint."""
        endpoint = self.bind()
        thread = threading.Thread(target=self.serve, name="reward-server", daemon=True)
        thread.start()
        self._threads.append(thread)
        return endpoint

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=timeout_s)
        self._context.destroy(linger=0)

    # ----------------------------------------------------------------- socket loop
    def _socket_loop(self, results: zmq.Socket) -> None:
        router = self._router
        assert router is not None
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(results, zmq.POLLIN)
        while not self._stop.is_set():
            events = dict(poller.poll(POLL_MS))
            if results in events:
                self._forward_results(results, router)
            if router in events:
                for _ in range(MAX_MESSAGES_PER_TURN):
                    try:
                        parts = router.recv_multipart(zmq.NOBLOCK, copy=True)
                    except zmq.Again:
                        break
                    self._handle(router, parts)

    def _forward_results(self, results: zmq.Socket, router: zmq.Socket) -> None:
        for _ in range(MAX_MESSAGES_PER_TURN):
            try:
                identity, reply = results.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._send(router, identity, reply)

    @staticmethod
    def _send(router: zmq.Socket, identity: bytes, reply: bytes) -> None:
        # A peer that went away or stopped reading loses its reply; its client reports the label as late.
        with contextlib.suppress(zmq.ZMQError):
            router.send_multipart([identity, reply], zmq.NOBLOCK)

    def _handle(self, router: zmq.Socket, parts: list[bytes]) -> None:
        received = time.monotonic()
        identity, frames = parts[0], parts[1:]
        self.metrics.record_request()
        header: dict[str, Any] = {}
        try:
            if not frames:
                raise ProtocolError("message: no header frame")
            header = unpack_header(frames[0])
            kind = header.get("type")
            if kind == "health":
                self._send(router, identity, self._health())
                return
            if kind == "metrics":
                self._send(router, identity, pack({"type": "metrics", **self.snapshot()}))
                return
            if kind != "score":
                raise ProtocolError(f"type: unknown {kind!r}; allowed: score, health, metrics")
            request = decode_score_request(header, frames[1:], self.limits)
        except ProtocolError as exc:
            self._reply(router, identity, None, ScoreOutput("bad_request", detail=str(exc)), received,
                        request_id=header.get("request_id"))  # fmt: skip
            return
        cached = self._cache_get(self._cache_key(request))
        if cached is not None:
            self._reply(router, identity, request, cached, received, cache_hit=True)
            return
        deadline = received + request.deadline_ms / 1000
        if not self.batcher.put(Pending(identity, request, received, deadline)):
            self._reply(router, identity, request, ScoreOutput("overloaded", detail="queue full"), received)

    def _reply(
        self,
        router: zmq.Socket,
        identity: bytes,
        request: ScoreRequest | None,
        output: ScoreOutput,
        received: float,
        cache_hit: bool = False,
        request_id: Any = None,
    ) -> None:
        total = (time.monotonic() - received) * 1000
        reply = score_reply(
            request,
            output,
            model_id=self.backend.model_id,
            revision=self.backend.revision,
            cache_hit=cache_hit,
            latency_ms={"queue": 0.0, "model": 0.0, "total": total},
            request_id=request_id,
        )
        self.metrics.record_reply(output.status, total)
        self._send(router, identity, reply)

    def _health(self) -> bytes:
        return pack(
            {
                "type": "health",
                "status": "ok",
                "model_id": self.backend.model_id,
                "revision": self.backend.revision,
                "queue_depth": len(self.batcher),
                "uptime_s": time.monotonic() - self._started,
            }
        )

    def snapshot(self) -> dict[str, Any]:
        """Metrics as the ``metrics`` request returns them."""
        with self._cache_lock:
            cache = {"cache_hit_rate": self.cache.hit_rate, "cache_entries": len(self.cache),
                     "cache_hits": self.cache.hits}  # fmt: skip
        return {
            "model_id": self.backend.model_id,
            "revision": self.backend.revision,
            "queue_depth": len(self.batcher),
            "max_batch": self.batcher.max_batch,
            **cache,
            **self.metrics.snapshot(),
        }

    # ----------------------------------------------------------------- cache
    def _cache_key(self, request: ScoreRequest) -> CacheKey:
        return (
            self.backend.model_id,
            self.backend.revision,
            request.mode,
            request.task,
            request.frame_digest,
        )

    def _cache_get(self, key: CacheKey) -> ScoreOutput | None:
        with self._cache_lock:
            return self.cache.get(key)

    def _cache_put(self, key: CacheKey, output: ScoreOutput) -> None:
        with self._cache_lock:
            self.cache.put(key, output)

    # ----------------------------------------------------------------- model thread
    def _model_loop(self) -> None:
        results = self._context.socket(zmq.PAIR)
        results.setsockopt(zmq.LINGER, 0)
        results.connect(self._results_endpoint)
        try:
            while not self._stop.is_set():
                batch, expired = self.batcher.next_batch(timeout_s=POLL_MS / 1000)
                for item in expired:
                    waited_ms = (time.monotonic() - item.received) * 1000
                    timeout = ScoreOutput("timeout", detail="deadline passed in the queue")
                    self._model_reply(results, item, timeout, queue_ms=waited_ms, model_ms=0.0)
                if batch:
                    self._score_batch(results, batch)
        finally:
            results.close(0)

    def _score_batch(self, results: zmq.Socket, batch: list[Pending]) -> None:
        start = time.monotonic()
        try:
            outputs = list(self.backend.score([item.request.score_input() for item in batch]))
            if len(outputs) != len(batch):
                raise RuntimeError(f"backend returned {len(outputs)} outputs for {len(batch)} inputs")
        except Exception as exc:  # a backend bug must cost one batch, never the server
            log.exception("backend failed on a batch of %d", len(batch))
            outputs = [ScoreOutput("model_error", detail=f"{type(exc).__name__}: {exc}") for _ in batch]
        model_ms = (time.monotonic() - start) * 1000
        self.metrics.record_batch(len(batch))
        for item, output in zip(batch, outputs, strict=True):
            output = _checked(output)
            self._cache_put(self._cache_key(item.request), output)
            self._model_reply(
                results, item, output, queue_ms=(start - item.received) * 1000, model_ms=model_ms
            )

    def _model_reply(
        self, results: zmq.Socket, item: Pending, output: ScoreOutput, *, queue_ms: float, model_ms: float
    ) -> None:
        total = (time.monotonic() - item.received) * 1000
        reply = score_reply(
            item.request,
            output,
            model_id=self.backend.model_id,
            revision=self.backend.revision,
            cache_hit=False,
            latency_ms={"queue": queue_ms, "model": model_ms, "total": total},
        )
        self.metrics.record_reply(output.status, total)
        results.send_multipart([item.identity, reply])


def _checked(output: Any) -> ScoreOutput:
    """A backend's ``ok`` with a non-finite or out-of-range progress is a model error, not a score."""
    if not isinstance(output, ScoreOutput):
        return ScoreOutput("model_error", detail=f"backend returned {type(output).__name__}")
    if output.status == "ok" and math.isfinite(output.progress) and not 0.0 <= output.progress <= 1.0:
        return ScoreOutput("model_error", detail=f"progress {output.progress} outside [0, 1]")
    return output


def main(argv: list[str] | None = None) -> None:
    """Entry point of the server subprocess: prints the bound endpoint as one JSON line, then serves."""
    parser = argparse.ArgumentParser(description="striata reward server")
    parser.add_argument("--config-json", required=True, help="RewardServerConfig as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s reward-server %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per VLM call drowns everything else
    config = RewardServerConfig.model_validate(json.loads(args.config_json))
    if config.backend.kind != "openai":
        _set_torch_threads(config.torch_threads)
    server = RewardServer(config)
    endpoint = server.bind()
    print(json.dumps({"endpoint": endpoint, "protocol": PROTOCOL_VERSION}), flush=True)
    # Nobody reads stdout after this line: anything a library prints later must not fill that pipe.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with contextlib.suppress(KeyboardInterrupt):
        server.serve()
    sys.exit(0)


def _set_torch_threads(threads: int) -> None:
    """In-process models share the machine with the actors: cap torch's CPU threads."""
    import torch

    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
