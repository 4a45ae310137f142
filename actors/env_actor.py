"""``EnvActor``: a Ray actor that owns a batched env and a CPU copy of the policy.

Each ``rollout`` call steps the env for one chunk (``chunk_length`` steps of all its envs) with the
newest weights it can get from the parameter store, and returns the chunk (numpy, DESIGN.md
contract, built by ``learner.chunk.ChunkBuilder``) with the actor's statistics: env steps/s,
finished episodes (return, length, success) and the policy version that acted.

Statistics also carry the mean of every reward term over the chunk (how well a tracking policy
tracks, step by step, independent of how long its episodes are).

The env keeps running between calls: episodes span chunks, and a restarted actor (after a crash)
starts fresh episodes. Nothing here decides what to learn; it only acts and reports.

With a reward model (``ActorSpec.reward``), a ``FrameLabeller`` sends frames to the reward server
after each step without waiting on it; every step of the chunk is ``reward_pending`` (its reward
needs labels), the chunk names its frames, and the labels that came back meanwhile (for this chunk
or earlier ones) travel in ``result["labels"]`` for the learner's relabeller.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch

from actors.frame_labels import FrameLabeller, RewardSpec
from actors.policy import ActingPolicy, make_acting_policy
from envs.episodes import EpisodeLog
from envs.registry import make_env
from learner.chunk import ChunkBuilder


@dataclass(frozen=True)
class ActorSpec:
    """Everything an actor needs to build itself; plain data, so Ray can ship it to any node."""

    actor_id: int
    task: str
    task_config: dict[str, Any]
    num_envs: int
    chunk_length: int
    algo: str
    algo_config: dict[str, Any]
    seed: int
    physics_threads: int = 1
    reward: RewardSpec | None = None


class EnvActor:
    def __init__(self, spec: ActorSpec, store: Any) -> None:
        # Actors share the machine with each other and the learner: one BLAS thread each.
        torch.set_num_threads(1)
        self.spec = spec
        self.store = store
        config = {**spec.task_config, "num_threads": spec.physics_threads}
        # A restarted actor gets a new seed, so it does not replay the episodes of the one it replaces.
        self.started_at = time.time()
        seed = spec.seed * 1000 + spec.actor_id + int(self.started_at * 1000) % 1_000_000
        self.env = make_env(spec.task, num_envs=spec.num_envs, seed=seed, **config)
        self.obs = self.env.reset()
        self.policy: ActingPolicy = make_acting_policy(
            spec.algo, spec.algo_config, self.obs, self.env.action_dim, seed % (1 << 31)
        )
        self.version = -1
        self.labeller = FrameLabeller(spec.reward, spec.actor_id, self.env) if spec.reward else None

    def identity(self) -> dict[str, Any]:
        return {
            "actor_id": self.spec.actor_id,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "started_at": self.started_at,
        }

    def _sync_weights(self) -> None:
        version, weights = ray.get(self.store.newer_than.remote(self.version))
        if weights:
            self.policy.load(ray.get(weights[0]))
            self.version = version

    def rollout(self) -> dict[str, Any]:
        self._sync_weights()
        builder = ChunkBuilder(self.env.num_envs)
        episodes = EpisodeLog()
        term_sums: dict[str, float] = {}
        start = time.perf_counter()
        obs = self.obs
        labeller = self.labeller
        start_frames = labeller.chunk_start() if labeller else None
        pending = np.full(self.env.num_envs, labeller is not None)
        for _ in range(self.spec.chunk_length):
            out = self.policy.act(obs, explore=True)
            next_obs, reward, terminated, truncated, info = self.env.step(out["actions"])
            frame_ids = labeller.after_step(terminated, truncated, info) if labeller else None
            builder.add(
                obs, out["actions"], reward, terminated, truncated, info,
                policy_version=self.version, log_prob=out.get("log_prob"), value=out.get("value"),
                reward_pending=pending, frame_ids=frame_ids,
            )  # fmt: skip
            episodes.record(terminated, truncated, info)
            for name, value in info["reward_terms"].items():
                term_sums[name] = term_sums.get(name, 0.0) + float(np.mean(value))
            obs = next_obs
        self.obs = obs
        elapsed = time.perf_counter() - start
        result: dict[str, Any] = {"chunk": builder.build(obs, start_frame_ids=start_frames)}
        if labeller:
            result["labels"], result["label_stats"] = labeller.take_labels()
        return {
            **result,
            "stats": {
                "actor_id": self.spec.actor_id,
                "pid": os.getpid(),
                "env_steps": self.spec.chunk_length * self.env.num_envs,
                "env_steps_per_s": self.spec.chunk_length * self.env.num_envs / elapsed,
                "policy_version": self.version,
                "episode_returns": episodes.returns,
                "episode_lengths": episodes.lengths,
                "episode_successes": episodes.successes,
                "reward_terms": {name: total / self.spec.chunk_length for name, total in term_sums.items()},
            },
        }
