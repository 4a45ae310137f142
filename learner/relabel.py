"""Rewards from reward-model labels: potential-based shaping, a sparse success bonus, and deadlines.

Actors send a frame of the state after step t to the reward server every k steps (and always the
last state of an ended episode); the chunk names it in ``frame_ids[t, n]``. Labels come back later,
with later chunks of the same actor process (the *source*), and are filed in a ``LabelTable``.

Shaping (Ng et al. 1999)::

    r_t = w_env * r_env_t + lambda * (gamma * phi(s_{t+1}) - phi(s_t)) + b * [done_prob(s_{t+1}) > threshold]

Conventions:

- ``phi`` is the label's progress. Between labels it is piecewise constant: the potential of a state
  is the progress of the episode's latest labelled frame at or before it (``potential_frames``), and
  0 before an episode's first label, so every episode starts from the same potential.
- The potential of an episode's terminal state is the label of its last frame (rendered before the
  auto-reset), for terminated and truncated steps alike: a success earns ``gamma * phi(s_T)`` with
  phi(s_T) near 1, a failure what its last frame shows. (Ng's phi(terminal) = 0 would turn every
  success into a penalty of -phi(s_{T-1}).)
- The success bonus ``b`` is paid only at steps whose own frame was labelled (fresh, not held).
- A person's label beats the model (HIL): where the chunk's ``human_label`` is 1 the step counts as a
  success (bonus paid, labelled frame or not), where it is 0 as no success, whatever ``done_prob`` says.
- With ``success_ends_episode`` a success step is terminal for learning, as HIL-SERL's reward
  classifier ends its episodes: no bootstrapping past it, so the bonus is worth the same once, whether
  the env ended there or went on. Without it, a state the model wrongly calls done (the env goes on)
  would pay the bonus at every labelled step for as long as the learner stays in it. Time-outs keep
  their bootstrap (a step cannot be both terminated and truncated).

A step is *labelled* when the labels of both potentials it reads are ``ok``; it is *unlabelled* when
one of them failed (any other status) or has not come back by the deadline. ``Relabeller`` holds
chunks until then: in ``incremental`` mode (SAC) it hands over each step as soon as it is labelled
and drops unlabelled ones (counted); otherwise (PPO) it hands over the whole chunk once every step
is settled or the deadline passed, unlabelled steps left ``reward_pending``, which
``labelled_segments`` cuts out (no gradient from them; the pieces bootstrap across the cuts).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from striata.learner.chunk import Chunk, slice_chunk, validate_chunk
from striata.learner.labels import Labels
from striata.learner.progress_audit import audit_labels

READY, WAITING, FAILED = 0, 1, 2


class Shaping(BaseModel):
    """How a reward model's labels become rewards; the one definition of these settings (an experiment's
    ``reward_model`` section carries them as its own fields)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    shaping_lambda: float = Field(default=1.0, ge=0)
    env_reward_weight: float = Field(
        default=1.0, ge=0, description="0: the model's rewards replace the env's"
    )
    success_reward: float = Field(default=0.0, ge=0, description="bonus when done_prob > threshold; 0 = off")
    success_threshold: float = Field(default=0.5, ge=0, le=1)
    success_ends_episode: bool = Field(
        default=True,
        description="a step the model calls a success is terminal for learning (HIL-SERL): its bonus is paid "
        "once, not at every step of a state the model wrongly calls done (only where success_reward > 0)",
    )


class ShapingConfig(Shaping):
    """The shaping settings with the learner's discount, as the relabeller applies them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gamma: float = Field(gt=0, le=1)

    @classmethod
    def of(cls, settings: Shaping, gamma: float) -> ShapingConfig:
        return cls(gamma=gamma, **{name: getattr(settings, name) for name in Shaping.model_fields})


def potential_frames(chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) [T, N]: the frame whose label is phi(s_t), and the one for phi(s_{t+1}); -1 = 0."""
    frame_ids = chunk["frame_ids"]
    ended = chunk["terminated"] | chunk["truncated"]
    t, n = frame_ids.shape
    held = np.asarray(chunk.get("start_frame_ids", np.full(n, -1)), dtype=np.int64).copy()
    before = np.empty((t, n), dtype=np.int64)
    after = np.empty((t, n), dtype=np.int64)
    for step in range(t):
        before[step] = held
        held = np.where(frame_ids[step] >= 0, frame_ids[step], held)
        after[step] = held
        held = np.where(ended[step], -1, held)
    return before, after


def shaped_rewards(
    env_rewards: np.ndarray,
    phi_before: np.ndarray,
    phi_after: np.ndarray,
    success: np.ndarray,
    cfg: ShapingConfig,
) -> np.ndarray:
    """``w_env r_env + lambda (gamma phi' - phi) + b success`` elementwise (float32)."""
    shaping = cfg.shaping_lambda * (cfg.gamma * phi_after - phi_before)
    bonus = cfg.success_reward * np.asarray(success, dtype=np.float64)
    return (cfg.env_reward_weight * env_rewards + shaping + bonus).astype(np.float32)


class LabelTable:
    """Labels by (source, frame id); the oldest ones of a source are forgotten past ``capacity``."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.capacity = capacity
        self._tables: dict[Any, OrderedDict[int, tuple[bool, float, float]]] = {}

    def add(self, source: Any, labels: Labels) -> None:
        table = self._tables.setdefault(source, OrderedDict())
        rows = zip(labels.frame_ids, labels.ok, labels.progress, labels.done_prob, strict=True)
        for frame, ok, progress, done in rows:
            table[int(frame)] = (bool(ok), float(progress), float(done))
        while len(table) > self.capacity:
            table.popitem(last=False)

    def forget(self, source: Any) -> None:
        self._tables.pop(source, None)

    def lookup(self, source: Any, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(known, ok, progress, done_prob) of frames ``ids``; id -1 reads as a known ok label of 0, 0."""
        table = self._tables.get(source, {})
        known = ids < 0
        ok = ids < 0
        progress = np.zeros(ids.shape)
        done = np.zeros(ids.shape)
        for frame in np.unique(ids[ids >= 0]):
            label = table.get(int(frame))
            if label is None:
                continue
            where = ids == frame
            known[where] = True
            ok[where] = label[0]
            progress[where] = label[1]
            done[where] = label[2]
        return known, ok, progress, done


def resolve(
    chunk: Chunk, env_rewards: np.ndarray, table: LabelTable, source: Any, cfg: ShapingConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rewards, state, success) [T, N]: shaped rewards where the labels allow, READY / WAITING /
    FAILED, and the steps that count as a success (model or person)."""
    before, after = potential_frames(chunk)
    known_b, ok_b, phi_b, _ = table.lookup(source, before)
    known_a, ok_a, phi_a, done_a = table.lookup(source, after)
    failed = (known_b & ~ok_b) | (known_a & ~ok_a)
    state = np.where(failed, FAILED, np.where(known_b & known_a, READY, WAITING)).astype(np.int8)
    success = (chunk["frame_ids"] >= 0) & (done_a > cfg.success_threshold)
    human = np.asarray(chunk.get("human_label", np.full(success.shape, -1, np.int8)))
    success = np.where(human >= 0, human == 1, success)
    rewards = shaped_rewards(env_rewards, phi_b, phi_a, success, cfg)
    # Where labels are missing, the weighted env reward keeps the array finite (those steps stay pending).
    rewards = np.where(state == READY, rewards, cfg.env_reward_weight * env_rewards).astype(np.float32)
    return rewards, state, success & (state == READY)


@dataclass
class _Held:
    source: Any
    chunk: Chunk
    env_rewards: np.ndarray
    settled: np.ndarray
    expires: float


@dataclass
class RelabelCounts:
    labelled: int = 0
    failed: int = 0  # a label came back with a status other than ok
    expired: int = 0  # no label by the deadline
    wait_s_sum: float = 0.0
    chunks_out: int = 0

    @property
    def unlabelled(self) -> int:
        return self.failed + self.expired


class Relabeller:
    """Holds chunks until their labels are in (or the deadline passes) and writes the shaped rewards."""

    def __init__(
        self,
        cfg: ShapingConfig,
        timeout_s: float,
        incremental: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.timeout_s = timeout_s
        self.incremental = incremental
        self.clock = clock
        self.labels = LabelTable()
        self.counts = RelabelCounts()
        self._held: list[_Held] = []
        self._success_ends = cfg.success_ends_episode and cfg.success_reward > 0

    @property
    def waiting_steps(self) -> int:
        """Steps held back for their labels (SAC's side table)."""
        return int(sum((~h.settled).sum() for h in self._held))

    def add_labels(self, source: Any, labels: Labels) -> None:
        self.labels.add(source, labels)

    def add_chunk(self, source: Any, chunk: Chunk) -> None:
        validate_chunk(chunk)
        settled = ~chunk["reward_pending"]
        held = _Held(source, chunk, chunk["rewards"].copy(), settled, self.clock() + self.timeout_s)
        self._held.append(held)

    def ready(self) -> list[Chunk]:
        """Chunks for the learner now (see the module docstring for what each mode hands over)."""
        now = self.clock()
        out: list[Chunk] = []
        keep: list[_Held] = []
        for held in self._held:
            rewards, state, success = resolve(
                held.chunk, held.env_rewards, self.labels, held.source, self.cfg
            )
            ends = success & ~held.chunk["truncated"] if self._success_ends else None
            open_steps = ~held.settled
            expired = now >= held.expires
            if self.incremental:
                newly = open_steps & (state == READY)
                self._count(held, newly, open_steps & (state == FAILED), now)
                held.settled |= newly | (state == FAILED)
                if newly.any():
                    out.append(_with_rewards(held.chunk, rewards, ~newly, ends))
                if expired:
                    self.counts.expired += int((~held.settled).sum())
                    held.settled[:] = True
            elif expired or not (open_steps & (state == WAITING)).any():
                labelled = open_steps & (state == READY)
                self._count(held, labelled, open_steps & (state == FAILED), now)
                if expired:
                    self.counts.expired += int((open_steps & (state == WAITING)).sum())
                pending = open_steps & (state != READY)
                out.append(
                    _with_rewards(held.chunk, np.where(open_steps, rewards, held.env_rewards), pending, ends)
                )
                held.settled[:] = True
            if not held.settled.all():
                keep.append(held)
        self._held = keep
        self.counts.chunks_out += len(out)
        return out

    def _count(self, held: _Held, labelled: np.ndarray, failed: np.ndarray, now: float) -> None:
        self.counts.labelled += int(labelled.sum())
        self.counts.failed += int(failed.sum())
        waited = now - (held.expires - self.timeout_s)
        self.counts.wait_s_sum += waited * int(labelled.sum())


def _with_rewards(
    chunk: Chunk, rewards: np.ndarray, pending: np.ndarray, ends: np.ndarray | None = None
) -> Chunk:
    """A shallow copy of ``chunk`` with its own rewards and pending flags (observations are shared),
    and ``ends`` (success steps) made terminal when given."""
    out = dict(chunk)
    out["rewards"] = rewards.astype(np.float32)
    out["reward_pending"] = pending.copy()
    if ends is not None:
        out["terminated"] = chunk["terminated"] | ends
    return out


def labelled_segments(chunk: Chunk) -> list[Chunk]:
    """The chunk without its ``reward_pending`` steps: runs of labelled steps, grouped across envs.

    Each env's steps are split at its pending steps; runs with the same (start, stop) become one
    chunk (``slice_chunk``), which bootstraps from the observation after its last step.
    """
    pending = chunk["reward_pending"]
    t, n = pending.shape
    if not pending.any():
        return [chunk]
    runs: dict[tuple[int, int], list[int]] = {}
    for env in range(n):
        start = None
        for step in range(t + 1):
            labelled = step < t and not pending[step, env]
            if labelled and start is None:
                start = step
            elif not labelled and start is not None:
                runs.setdefault((start, step), []).append(env)
                start = None
    return [slice_chunk(chunk, a, b, np.array(envs)) for (a, b), envs in sorted(runs.items())]


@dataclass
class AuditWindow:
    """The latest labelled frames with the simulator's truth, for agreement figures (reward_model/*)."""

    size: int = 2000
    threshold: float = 0.5
    _window: Labels = field(default_factory=Labels.empty)

    def add(self, labels: Labels) -> None:
        """Keep the ``ok`` rows whose success the simulator knows, the latest ``size`` of them."""
        known = labels.select(labels.ok & np.isfinite(labels.true_success))
        self._window = Labels.concat([self._window, known]).select(slice(-self.size, None))

    def __len__(self) -> int:
        return len(self._window)

    def figures(self) -> dict[str, float]:
        """Spearman of predicted vs true progress, success precision/recall/F1; NaN where undefined."""
        if not len(self._window):
            return {}
        figures = audit_labels(self._window, self.threshold)
        return {key: value for key, value in figures.items() if not math.isnan(value)}
