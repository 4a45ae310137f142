"""The bounded request queue and dynamic micro-batching (max batch, max wait, per-request deadlines)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from reward_server.protocol import ScoreRequest


@dataclass
class Pending:
    """A decoded request waiting for the model, with the peer to answer and its absolute deadline."""

    identity: bytes
    request: ScoreRequest
    received: float  # time.monotonic() at arrival
    deadline: float


class MicroBatcher:
    """Thread-safe FIFO: the socket loop puts, the model thread takes batches."""

    def __init__(self, max_queue: int, max_batch: int, max_wait_s: float) -> None:
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._items: deque[Pending] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Pending) -> bool:
        """False when the queue is full: the caller answers ``overloaded`` at once."""
        with self._cond:
            if len(self._items) >= self.max_queue:
                return False
            self._items.append(item)
            self._cond.notify()
            return True

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
