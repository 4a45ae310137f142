"""``ActorPool``: the learner's side of the actors — creation, in-flight calls, deadlines, restarts.

Every actor keeps ``in_flight`` ``rollout`` calls queued. Two keep it stepping while the learner
works, so its chunks act with weights two or three updates old. One is synchronous on-policy
learning: an actor whose chunk came back waits for the weights that chunk produced, so PPO's ratio
starts at 1 (policy lag 0); on a machine where actors and learner share the cores the pipelining
buys little. Ray
restarts a dead actor (``max_restarts=-1``); its in-flight calls fail and their partial chunks are
dropped (never counted), new calls go to the same handle and run once the replacement is up. Each
result names the process that made it, so a replacement is seen by its new pid, and the endpoint of
its intervention port (a replacement binds a new one): ``hil_ports`` lists the current ones.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from striata.actors.env_actor import ActorSpec, EnvActor
from striata.actors.result import ActorResult


class ActorTimeoutError(RuntimeError):
    """No actor delivered a chunk within the deadline."""


@dataclass
class ActorRecord:
    spec: ActorSpec
    handle: Any
    pid: int | None = None
    node_id: str | None = None
    hil_endpoint: str | None = None
    restarts: int = 0
    dropped_chunks: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    _failed_at: float | None = None


class ActorPool:
    def __init__(
        self,
        specs: list[ActorSpec],
        store: Any,
        num_cpus: float = 1.0,
        resources: dict[str, float] | None = None,
        in_flight: int = 2,
    ) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be >= 1, got {in_flight}")
        remote_cls = ray.remote(EnvActor).options(
            num_cpus=num_cpus, resources=resources or {}, max_restarts=-1, max_task_retries=0
        )
        self.records = [ActorRecord(spec, remote_cls.remote(spec, store)) for spec in specs]
        self.in_flight = in_flight
        self._in_flight: dict[Any, int] = {}

    def start(self, timeout_s: float = 120.0) -> None:
        """Wait until every actor is built (envs compiled), then queue the first calls."""
        identities = ray.get([r.handle.identity.remote() for r in self.records], timeout=timeout_s)
        for record, identity in zip(self.records, identities, strict=True):
            record.pid, record.node_id = identity["pid"], identity["node_id"]
            record.hil_endpoint = identity.get("hil_endpoint")
        self.refill(weights_changed=True)

    def refill(self, weights_changed: bool) -> None:
        """Queue rollout calls up to ``in_flight`` per actor, once the learner has used the last results.

        With one call per actor, an actor waits until ``weights_changed`` (its next chunk then acts
        with the new weights) or until no actor is busy (an update that needs several rounds of
        chunks still gets them).
        """
        if self.in_flight == 1 and not weights_changed and self._in_flight:
            return
        queued = Counter(self._in_flight.values())
        for index in range(len(self.records)):
            for _ in range(self.in_flight - queued[index]):
                self._submit(index)

    def _submit(self, index: int) -> None:
        self._in_flight[self.records[index].handle.rollout.remote()] = index

    def next_results(self, timeout_s: float) -> list[ActorResult]:
        """Chunks that are ready (at least one unless the deadline passes, then ActorTimeoutError).

        A failed call is queued again at once; the actors whose chunks came back get new calls from
        ``refill``.
        """
        ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=timeout_s)
        if not ready:
            late = sorted({self.records[i].spec.actor_id for i in self._in_flight.values()})
            raise ActorTimeoutError(f"no chunk from actors {late} within {timeout_s:.0f} s")
        ready, _ = ray.wait(list(self._in_flight), num_returns=len(self._in_flight), timeout=0)
        results = []
        for ref in ready:
            index = self._in_flight.pop(ref)
            record = self.records[index]
            try:
                result = ray.get(ref, timeout=0)
            except (RayActorError, RayTaskError, GetTimeoutError):
                # The actor died mid-chunk: its partial chunk never arrives and is not counted.
                record.dropped_chunks += 1
                if record._failed_at is None:
                    record._failed_at = time.monotonic()
                self._submit(index)
                continue
            pid = result.stats.pid
            if record.pid is not None and pid != record.pid:
                record.restarts += 1
                if record._failed_at is not None:
                    record.restart_seconds.append(time.monotonic() - record._failed_at)
            record.pid, record._failed_at = pid, None
            record.hil_endpoint = result.stats.hil_endpoint
            results.append(result)
        return results

    def hil_ports(self) -> list[dict[str, Any]]:
        """The actors' intervention ports as ``hil.json`` lists them (actors without one left out)."""
        return [
            {
                "actor_id": r.spec.actor_id,
                "endpoint": r.hil_endpoint,
                "num_envs": r.spec.num_envs,
                "pid": r.pid,
            }
            for r in self.records
            if r.hil_endpoint is not None
        ]

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "actor_id": r.spec.actor_id,
                "pid": r.pid,
                "node_id": r.node_id,
                "restarts": r.restarts,
                "dropped_chunks": r.dropped_chunks,
                "restart_seconds": [round(s, 2) for s in r.restart_seconds],
            }
            for r in self.records
        ]

    def shutdown(self) -> None:
        for record in self.records:
            ray.kill(record.handle, no_restart=True)
        self._in_flight.clear()
