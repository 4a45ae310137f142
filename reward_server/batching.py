"""The request backlog bound, the queue to the model and dynamic micro-batching (max batch, max wait,
per-request deadlines)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from striata.reward_server.protocol import ScoreRequest


@dataclass
class Pending:
    """A request on its way to the model, with the peer to answer and its absolute deadline."""

    identity: bytes
    request: ScoreRequest
    received: float  # time.monotonic() when the socket thread read it
    deadline: float
    decode_ms: float = 0.0


class Backlog:
    """Counts requests admitted and not yet taken by the model (being decoded or queued for it).

    The socket thread admits, the decode and model threads release: one bound, ``max_queue``, covers both
    stages, so a request is refused ``overloaded`` when it arrives, never later.
    """

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self._count = 0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        """False when ``max_queue`` requests are already waiting."""
        with self._lock:
            if self._count >= self.max_queue:
                return False
            self._count += 1
            return True

    def release(self, count: int = 1) -> None:
        with self._lock:
            self._count -= count

    def __len__(self) -> int:
        return self._count


class MicroBatcher:
    """Thread-safe FIFO: the decode threads put, the model thread takes batches (bounded by ``Backlog``)."""

    def __init__(self, max_batch: int, max_wait_s: float) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._items: deque[Pending] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Pending) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def next_batch(self, timeout_s: float) -> tuple[list[Pending], list[Pending]]:
        """(batch, expired): up to ``max_batch`` live requests and those whose deadline passed in the queue.

        Waits at most ``timeout_s`` for a first request, then until the batch is full or the oldest
        request has waited ``max_wait_s``, whichever comes first.
        """
        batch: list[Pending] = []
        expired: list[Pending] = []
        give_up = time.monotonic() + timeout_s
        with self._cond:
            while True:
                now = time.monotonic()
                while self._items and len(batch) < self.max_batch:
                    item = self._items.popleft()
                    (expired if item.deadline <= now else batch).append(item)
                if len(batch) >= self.max_batch:
                    break
                wait_until = batch[0].received + self.max_wait_s if batch else give_up
                if not batch and expired:
                    break
                remaining = wait_until - now
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        return batch, expired
