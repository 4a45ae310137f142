"""Requests waiting for their images to be decoded, served fairly across clients.

Each client (ZMQ routing id) has its own FIFO. A decode thread takes the oldest request of the next
client in round-robin order and decodes it one image at a time; after each image, if another client
is waiting, it hands the request back to the end of the round. A client that sends many or heavy
images therefore delays another client by at most one image decode per thread, never by its backlog.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from striata.reward_server.batching import Pending


@dataclass
class DecodeJob:
    """A request and the images of it decoded so far (in ``request.images`` order)."""

    pending: Pending
    arrays: list[np.ndarray] = field(default_factory=list)

    @property
    def identity(self) -> bytes:
        return self.pending.identity

    @property
    def done(self) -> bool:
        return len(self.arrays) == len(self.pending.request.images)


class FairQueue:
    """Thread-safe: the socket thread puts, decode threads take and give back."""

    def __init__(self) -> None:
        self._clients: OrderedDict[bytes, deque[DecodeJob]] = OrderedDict()  # round-robin order
        self._count = 0
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return self._count

    def put(self, job: DecodeJob) -> None:
        with self._cond:
            self._clients.setdefault(job.identity, deque()).append(job)
            self._count += 1
            self._cond.notify()

    def take(self, timeout_s: float) -> DecodeJob | None:
        """The next client's oldest job, or None when nothing came within ``timeout_s``."""
        give_up = time.monotonic() + timeout_s
        with self._cond:
            while not self._clients:
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            identity, jobs = next(iter(self._clients.items()))
            job = jobs.popleft()
            if jobs:
                self._clients.move_to_end(identity)
            else:
                del self._clients[identity]
            self._count -= 1
            return job

    def others_waiting(self, identity: bytes) -> bool:
        """Whether a client other than ``identity`` has a job waiting."""
        with self._cond:
            return len(self._clients) > 1 or (len(self._clients) == 1 and identity not in self._clients)

    def give_back(self, job: DecodeJob) -> None:
        """Return a half-decoded job: first of its client's jobs, its client last in the round."""
        with self._cond:
            jobs = self._clients.pop(job.identity, deque())
            jobs.appendleft(job)
            self._clients[job.identity] = jobs
            self._count += 1
            self._cond.notify()
