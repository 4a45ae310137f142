"""The weights board: the learner posts each new policy version once; actors take the latest.

The learner ``ray.put``s a version's weights once and posts the reference here. An actor asks for
what is newer than the version it holds and gets only the latest reference, so versions it never
saw are skipped rather than queued. It also counts each actor's starts (``start``), so that an actor's
seeds follow from (run seed, actor id, restart count) alone and a run's rollouts can be reproduced.
"""

from __future__ import annotations

from typing import Any

import ray


class ParameterStore:
    def __init__(self) -> None:
        self.version = -1
        self._weights: list[Any] = []
        self._starts: dict[int, int] = {}

    def start(self, actor_id: int) -> int:
        """How many times actor ``actor_id`` started before this start (0 first, then its restarts)."""
        count = self._starts.get(actor_id, 0)
        self._starts[actor_id] = count + 1
        return count

    def publish(self, version: int, weights: list[Any]) -> None:
        """``weights`` is ``[ObjectRef]``: wrapped in a list so Ray passes the reference, not the data."""
        if version > self.version:
            self.version = version
            self._weights = weights

    def newer_than(self, version: int) -> tuple[int, list[Any]]:
        """(latest version, [ref]) when newer than ``version``, else (latest version, [])."""
        if self.version > version:
            return self.version, self._weights
        return self.version, []


def create_parameter_store() -> Any:
    # num_cpus=0: a tiny bookkeeping actor that must never wait for a CPU slot.
    return ray.remote(num_cpus=0)(ParameterStore).remote()
