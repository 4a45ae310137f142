"""What an actor hands the learner's side for each chunk (``EnvActor.rollout``): one typed contract.

``ActorResult`` carries the trajectory chunk (``striata.learner.chunk``), the actor's statistics for it,
and, where a reward model labels frames, the labels settled since the last chunk
(``striata.learner.labels.Labels``) and the labeller's counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from striata.learner.chunk import Chunk
from striata.learner.labels import Labels


@dataclass
class LabelStats:
    """The frame labeller's counters since the last chunk."""

    statuses: dict[str, int]
    frames_sent: int
    render_s: float
    in_flight: int
    round_trip_ms: float


@dataclass
class ActorStats:
    """One chunk's statistics: throughput, the episodes that ended in it, what people did."""

    actor_id: int
    pid: int
    env_steps: int
    env_steps_per_s: float
    policy_version: int
    episode_returns: list[float]
    episode_lengths: list[int]
    episode_successes: list[float]
    reward_terms: dict[str, float]
    episode_interventions: list[int] = field(default_factory=list)
    episode_takeovers: list[int] = field(default_factory=list)
    intervention_steps: int = 0
    human_labels: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    hil_endpoint: str | None = None
    hil_port: dict[str, Any] | None = None


@dataclass
class ActorResult:
    chunk: Chunk
    stats: ActorStats
    labels: Labels | None = None
    label_stats: LabelStats | None = None
