"""The reward service: a ZMQ socket loop, decode threads and a model thread that scores micro-batches.

The socket loop is the only thread that touches the server socket. It reads it only through the reader
``striata.common.transport.open_router`` gives (ZMTP parsed frame by frame, so frames, bytes and per-client
rates are bounded while a message arrives; a time budget per read), answers ``health`` and ``metrics``
itself, checks each score request's header and image descriptors (cheap: no pixel is decoded there), answers
what is malformed with ``bad_request`` (which costs that client ``bad_request_cost`` requests of its rate:
a client streaming garbage cannot hold up the others' requests), refuses at once when ``max_queue``
requests wait (``overloaded``), and hands the rest to the decode threads. These decode images fairly
across clients (``striata.reward_server.decoding``), answer cache hits, and queue the rest for the model
thread, the only place the backend runs. Replies from the other threads reach the socket loop through an
outbox and an inproc doorbell; the socket loop checks every reply against its request's deadline as it sends
it, so an ``ok`` is never late.

Run it standalone with ``python -m striata.reward_server.server --config-json '{...}'`` (what
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
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import zmq

from striata.common.transport import Inbound, Router, open_router
from striata.reward_server.backend import RewardBackend, ScoreOutput, needed_cameras, served_modes
from striata.reward_server.batching import Backlog, MicroBatcher, Pending
from striata.reward_server.cache import CacheKey, ScoreCache
from striata.reward_server.config import RewardServerConfig
from striata.reward_server.decoding import DecodeJob, FairQueue
from striata.reward_server.metrics import ServerMetrics
from striata.reward_server.protocol import (
    ENCODINGS,
    PROTOCOL_VERSION,
    WIRE,
    HealthRequest,
    MetricsRequest,
    ProtocolError,
    ScoreHeader,
    ScoreRequest,
    decode_image,
    pack,
    parse_score_request,
    past_deadline,
    reply_header,
)

log = logging.getLogger(__name__)

POLL_MS = 50
# How long one read of the socket may take before the loop sends the replies that are ready.
RECEIVE_BUDGET_S = 0.005
# Drops of messages libzmq held whole in memory before the server saw a frame of them.
DOORBELL_ENDPOINT = "inproc://reward-doorbell-{}"


@dataclass
class _Outgoing:
    """A reply waiting for the socket loop; ``deadline`` None for a request that was never admitted."""

    identity: bytes
    reply: dict[str, Any]
    received: float
    deadline: float | None
    latency_ms: dict[str, float] = field(default_factory=dict)


class RewardServer:
    """One backend served on one ROUTER socket. ``bind()``, then ``serve()`` (blocks) or ``start()``."""

    def __init__(self, config: RewardServerConfig, backend: RewardBackend | None = None) -> None:
        if backend is None:
            from striata.reward_server.backends import make_backend

            backend = make_backend(config.backend)
        self.config = config
        self.backend = backend
        self.limits = config.image_limits()
        self.transport_limits = config.transport_limits()
        self.modes = served_modes(backend)
        self.cameras = needed_cameras(backend)
        self.backlog = Backlog(config.max_queue)
        self.decode_queue = FairQueue()
        self.batcher = MicroBatcher(
            min(config.max_batch, max(1, backend.max_batch)), config.max_wait_ms / 1000
        )
        self.cache = ScoreCache(config.cache_size)
        self._cache_lock = threading.Lock()
        self.metrics = ServerMetrics()
        self._context = zmq.Context()
        self._reader: Router | None = None
        self._dropped: dict[str, int] = {}  # the reader's counts, copied by the socket loop for other threads
        self._outbox: deque[_Outgoing] = deque()
        self._doorbell_endpoint = DOORBELL_ENDPOINT.format(id(self))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = time.monotonic()
        self.endpoint = ""

    # ----------------------------------------------------------------- lifecycle
    def bind(self) -> str:
        """Bind the ROUTER socket; port 0 picks a free port. Returns the endpoint clients connect to."""
        port = "*" if self.config.port == 0 else str(self.config.port)
        endpoint = f"tcp://{self.config.host}:{port}"
        self._reader = open_router(self._context, self.transport_limits, endpoint)
        router = self._reader.sock
        router.setsockopt(zmq.SNDHWM, 10_000)
        router.bind(endpoint)
        bound = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "*") else self.config.host
        self.endpoint = f"tcp://{host}:{bound.rsplit(':', 1)[1]}"
        return self.endpoint

    def serve(self) -> None:
        """Run the socket loop, the decode threads and the model thread until ``stop()``."""
        if self._reader is None:
            self.bind()
        doorbell = self._context.socket(zmq.PULL)
        doorbell.setsockopt(zmq.LINGER, 0)
        doorbell.bind(self._doorbell_endpoint)
        workers = [threading.Thread(target=self._model_loop, name="reward-model", daemon=True)]
        workers += [
            threading.Thread(target=self._decode_loop, name=f"reward-decode-{i}", daemon=True)
            for i in range(self.config.decode_threads)
        ]
        for worker in workers:
            worker.start()
        self._threads.extend(workers)
        try:
            self._socket_loop(doorbell)
        finally:
            self._stop.set()
            for worker in workers:
                worker.join(timeout=10)
            doorbell.close(0)
            assert self._reader is not None
            self._reader.sock.close(0)

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
    def _socket_loop(self, doorbell: zmq.Socket) -> None:
        reader = self._reader
        assert reader is not None
        poller = zmq.Poller()
        poller.register(reader.sock, zmq.POLLIN)
        poller.register(doorbell, zmq.POLLIN)
        while not self._stop.is_set():
            events = dict(poller.poll(POLL_MS))
            if doorbell in events:
                with contextlib.suppress(zmq.Again):
                    while True:
                        doorbell.recv(zmq.NOBLOCK)
            self._send_outbox(reader)
            if reader.sock in events:
                for message in reader.receive(until=time.monotonic() + RECEIVE_BUDGET_S):
                    self._handle(reader, message)
                if reader.dropped != self._dropped:
                    self._after_drops(reader)

    def _after_drops(self, reader: Router) -> None:
        """Publish the new drop counts (the reader returns a dropped message's memory itself)."""
        self._dropped = dict(reader.dropped)

    def _send_outbox(self, router: Router) -> None:
        while self._outbox:
            self._send_reply(router, self._outbox.popleft())

    def _send_reply(self, router: Router, out: _Outgoing) -> None:
        now = time.monotonic()
        reply = out.reply
        if out.deadline is not None and now > out.deadline:
            reply = past_deadline(reply, (now - out.deadline) * 1000)
        total = (now - out.received) * 1000
        self.metrics.record_reply(reply["status"], total)
        self._send(router, out.identity, pack({**reply, "latency_ms": {**out.latency_ms, "total": total}}))

    @staticmethod
    def _send(router: Router, identity: bytes, reply: bytes) -> None:
        # A peer that went away or stopped reading loses its reply; its client reports the label as late.
        router.send(identity, [reply])

    def _handle(self, router: Router, message: Inbound) -> None:
        received = time.monotonic()
        identity, frames = message.identity, message.frames
        self.metrics.record_request()
        header: dict[str, Any] = {}
        request: ScoreRequest | None = None
        try:
            header = WIRE.unpack(frames[0])
            message = WIRE.message(header, context=self.limits)
            if isinstance(message, HealthRequest):
                self._send(router, identity, self._health())
                return
            if isinstance(message, MetricsRequest):
                self._send(router, identity, pack({"type": "metrics", **self.snapshot()}))
                return
            assert isinstance(message, ScoreHeader)  # the one other type WIRE reads
            request = parse_score_request(message, frames[1:], self.limits)
            self._check_served(request)
        except ProtocolError as exc:
            router.penalize(identity)
            reply = self._reply(
                request, ScoreOutput("bad_request", detail=str(exc)), request_id=header.get("request_id")
            )
            self._send_reply(router, _Outgoing(identity, reply, received, None))
            return
        deadline = received + request.deadline_ms / 1000
        if not self.backlog.admit():
            output = ScoreOutput("overloaded", detail=f"{self.backlog.max_queue} requests already wait")
            self._send_reply(router, _Outgoing(identity, self._reply(request, output), received, deadline))
            return
        self.decode_queue.put(DecodeJob(Pending(identity, request, received, deadline)))

    def _check_served(self, request: ScoreRequest) -> None:
        """What the backend cannot take is refused here, before any decoding, naming what it takes."""
        if request.mode not in self.modes:
            raise ProtocolError(
                "mode", f"{request.mode!r} is not served here; this server takes {', '.join(self.modes)}"
            )
        if self.cameras is None:
            return
        sent = sorted({image.camera for image in request.images if image.role == "frame"})
        missing = [camera for camera in self.cameras if camera not in sent]
        if missing:
            raise ProtocolError(
                "images",
                f"no frame from camera {missing[0]!r}; this server takes cameras "
                f"{', '.join(self.cameras)} (got {', '.join(sent)})",
            )

    def _reply(
        self,
        request: ScoreRequest | None,
        output: ScoreOutput,
        cache_hit: bool = False,
        request_id: Any = None,
    ) -> dict[str, Any]:
        return reply_header(
            request,
            output,
            model_id=self.backend.model_id,
            revision=self.backend.revision,
            cache_hit=cache_hit,
            request_id=request_id,
        )

    def _health(self) -> bytes:
        return pack(
            {
                "type": "health",
                "status": "ok",
                "model_id": self.backend.model_id,
                "revision": self.backend.revision,
                "protocol": PROTOCOL_VERSION,
                "cameras": list(self.cameras) if self.cameras is not None else None,
                "modes": list(self.modes),
                "encodings": list(ENCODINGS),
                "limits": {
                    **self.transport_limits.as_dict(),
                    **self.limits.as_dict(),
                    "max_queue": self.backlog.max_queue,
                    "max_batch": self.batcher.max_batch,
                },
                "queue_depth": len(self.backlog),
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
            "queue_depth": len(self.backlog),
            "decode_queue_depth": len(self.decode_queue),
            "max_batch": self.batcher.max_batch,
            "dropped": dict(self._dropped),
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

    # ----------------------------------------------------------------- decode and model threads
    def _doorbell(self) -> zmq.Socket:
        """A thread's own socket to wake the socket loop when it posts replies (sockets are per thread)."""
        bell = self._context.socket(zmq.PUSH)
        bell.setsockopt(zmq.LINGER, 0)
        bell.connect(self._doorbell_endpoint)
        return bell

    def _post(
        self,
        bell: zmq.Socket,
        item: Pending,
        output: ScoreOutput,
        cache_hit: bool = False,
        **latency_ms: float,
    ) -> None:
        """Leave a reply for the socket loop to send, and wake it."""
        reply = self._reply(item.request, output, cache_hit=cache_hit)
        latency = {"decode": item.decode_ms, **latency_ms}
        self._outbox.append(_Outgoing(item.identity, reply, item.received, item.deadline, latency))
        # A full doorbell means the socket loop has wake-ups pending already.
        with contextlib.suppress(zmq.Again):
            bell.send(b"", zmq.NOBLOCK)

    def _decode_loop(self) -> None:
        bell = self._doorbell()
        try:
            while not self._stop.is_set():
                job = self.decode_queue.take(timeout_s=POLL_MS / 1000)
                if job is not None:
                    self._decode(job, bell)
        finally:
            bell.close(0)

    def _decode(self, job: DecodeJob, bell: zmq.Socket) -> None:
        """Decode ``job``'s next images; hand it back after one image when another client waits."""
        item = job.pending
        request = item.request
        start = time.monotonic()
        if start >= item.deadline:
            self.backlog.release()
            self._post(
                bell, item, ScoreOutput("timeout", detail="deadline passed before its images were decoded")
            )
            return
        try:
            while not job.done:
                job.arrays.append(decode_image(request.images[len(job.arrays)], self.limits))
                if not job.done and self.decode_queue.others_waiting(job.identity):
                    item.decode_ms += (time.monotonic() - start) * 1000
                    self.decode_queue.give_back(job)
                    return
        except ProtocolError as exc:
            item.decode_ms += (time.monotonic() - start) * 1000
            self.backlog.release()
            self._post(bell, item, ScoreOutput("bad_request", detail=str(exc)))
            return
        request.set_pixels(job.arrays)
        item.decode_ms += (time.monotonic() - start) * 1000
        cached = self._cache_get(self._cache_key(request))
        if cached is not None:
            self.backlog.release()
            self._post(bell, item, cached, cache_hit=True)
            return
        self.batcher.put(item)

    def _model_loop(self) -> None:
        bell = self._doorbell()
        try:
            while not self._stop.is_set():
                batch, expired = self.batcher.next_batch(timeout_s=POLL_MS / 1000)
                self.backlog.release(len(batch) + len(expired))
                for item in expired:
                    waited_ms = (time.monotonic() - item.received) * 1000 - item.decode_ms
                    timeout = ScoreOutput("timeout", detail="deadline passed in the queue")
                    self._post(bell, item, timeout, queue=waited_ms, model=0.0)
                if batch:
                    self._score_batch(bell, batch)
        finally:
            bell.close(0)

    def _score_batch(self, bell: zmq.Socket, batch: list[Pending]) -> None:
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
            queue_ms = (start - item.received) * 1000 - item.decode_ms
            self._post(bell, item, output, queue=queue_ms, model=model_ms)


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
