"""The server's LRU cache of scores, keyed by model, prompt profile, mode, task text and frame hashes."""

from __future__ import annotations

from collections import OrderedDict

from striata.reward_server.backend import ScoreOutput

CacheKey = tuple[str, str, str, str, str]  # model id, revision (profile), mode, task, frame digest


class ScoreCache:
    """Least-recently-used map of successful scores; a size of 0 turns caching off."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[CacheKey, ScoreOutput] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> ScoreOutput | None:
        if self.size == 0:
            return None
        output = self._entries.get(key)
        if output is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return output

    def put(self, key: CacheKey, output: ScoreOutput) -> None:
        # Only real scores are kept: a timeout or parse error must be retried, not replayed.
        if self.size == 0 or output.status != "ok":
            return
        self._entries[key] = output
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0
