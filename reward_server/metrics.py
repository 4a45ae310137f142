"""Server metrics: request counts by status, batch sizes and latency percentiles over a recent window."""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

import numpy as np

WINDOW = 2048


class ServerMetrics:
    """Shared by the socket loop and the model thread, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency_ms: deque[float] = deque(maxlen=WINDOW)
        self._batch_sizes: deque[int] = deque(maxlen=WINDOW)
        self.statuses: Counter[str] = Counter()
        self.requests = 0
        self.batches = 0

    def record_request(self) -> None:
        with self._lock:
            self.requests += 1

    def record_reply(self, status: str, latency_ms: float) -> None:
        with self._lock:
            self.statuses[status] += 1
            self._latency_ms.append(latency_ms)

    def record_batch(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self._batch_sizes.append(size)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            latency = np.asarray(self._latency_ms, dtype=np.float64)
            batches = np.asarray(self._batch_sizes, dtype=np.float64)
            return {
                "requests": self.requests,
                "replies_by_status": dict(self.statuses),
                "batches": self.batches,
                "batch_size_mean": float(batches.mean()) if batches.size else 0.0,
                "batch_size_max": int(batches.max()) if batches.size else 0,
                "latency_ms": {
                    "p50": float(np.percentile(latency, 50)) if latency.size else None,
                    "p99": float(np.percentile(latency, 99)) if latency.size else None,
                },
            }
