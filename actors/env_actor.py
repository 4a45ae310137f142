"""``EnvActor``: a Ray actor that owns a batched env and a CPU copy of the policy.

Each ``rollout`` call steps the env for one chunk (``chunk_length`` steps of all its envs) with the
newest weights it can get from the parameter store, and returns the chunk (numpy, DESIGN.md
contract, built by ``striata.learner.chunk.ChunkBuilder``) with the actor's statistics: env steps/s,
finished episodes (return, length, success, steps a person acted in, takeovers) and the policy
version that acted.

Statistics also carry the mean of every reward term over the chunk (how well a tracking policy
tracks, step by step, independent of how long its episodes are).

The env keeps running between calls: episodes span chunks, and a restarted actor (after a crash)
starts fresh episodes. Nothing here decides what to learn; it only acts and reports.

With a reward model (``ActorSpec.reward``), a ``FrameLabeller`` sends frames to the reward server
after each step without waiting on it; every step of the chunk is ``reward_pending`` (its reward
needs labels), the chunk names its frames, and the labels that came back meanwhile (for this chunk
or earlier ones) travel in ``ActorResult.labels`` for the learner's relabeller.

With ``ActorSpec.hil`` enabled, the actor serves an intervention port (actors/INTERVENTION.md,
``HumanLoop``): the port answers its clients from a thread of its own, whatever the actor is doing,
and before each step the actor reads what they asked for: the actions of envs a person controls are
theirs (``intervention`` set on those steps of the chunk), labelled or reset episodes end at that step
(``human_label`` 1/0 on the step a label ended), and watchers get ``step``, ``frame`` and
``episode_end`` messages. While any env is taken over, steps are paced to ``control_dt /
takeover_speed``; a paused actor holds for at most ``max_pause_s`` per chunk. The port's counts
(clients, messages received, messages its transport dropped) are in the statistics as ``hil_port``.
For PPO, the ``log_prob`` of a step a person acted in is recomputed: the acting policy's log-probability
of the executed (human) action, so the importance ratio stays finite; PPO still gives those steps no
policy gradient (learner/ppo.py masks them), only the critic learns from them.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch

from striata.actors.frame_labels import FrameLabeller, RewardSpec
from striata.actors.intervention import obs_row, port_cameras
from striata.actors.policy import ActingPolicy, PPOPolicy, make_acting_policy
from striata.actors.result import ActorResult, ActorStats
from striata.common.intervention_port import (
    FREE_CAMERA,
    LABEL_NONE,
    LABEL_SUCCESS,
    HilConfig,
    InterventionPort,
    PortInfo,
)
from striata.envs.episodes import EpisodeLog
from striata.envs.registry import make_env, task_entry
from striata.learner.chunk import ChunkBuilder
from striata.learner.labels import Labels

MAX_TRACKED_FRAMES = 100_000  # reward-model frames awaiting a label, for the console's progress plot


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
    hil: HilConfig | None = None


class HumanLoop:
    """The actor's side of its intervention port: what people change before a step, what they see after.

    Keeps, per env, the episode id and step (``t``) the messages name, the return so far, and the
    steps a person acted in and the takeovers (stretches of such steps) of the running episode.
    """

    def __init__(self, cfg: HilConfig, spec: ActorSpec, env: Any) -> None:
        if not hasattr(env, "end_episodes"):
            raise TypeError(f"hil: the {spec.task} env ({type(env).__name__}) cannot end chosen episodes")
        self.cfg = cfg
        self.env = env
        n, a = env.num_envs, env.action_dim
        info = PortInfo(
            actor_id=spec.actor_id, task=spec.task,
            task_text=spec.reward.task_text if spec.reward else task_entry(spec.task).description,
            num_envs=n, action_dim=a, action_low=(-1.0,) * a, action_high=(1.0,) * a,
            control_dt=float(env.step_dt), cameras=port_cameras(env.camera_names),
        )  # fmt: skip
        self.port = InterventionPort(cfg, info, cfg.camera)
        # Step messages carry an ended episode's last observation, for terminated episodes too.
        env.final_obs_on_termination = True
        self.episode = np.arange(n, dtype=np.int64)
        self._next_episode = n
        self.t = np.zeros(n, dtype=np.int64)
        self.episode_return = np.zeros(n)
        self.episode_interventions = np.zeros(n, dtype=np.int64)
        self.episode_takeovers = np.zeros(n, dtype=np.int64)
        self._acting = np.zeros(n, dtype=bool)  # a person acted in the env's previous step
        self.progress = np.full(n, np.nan)
        self._frame_env: dict[int, tuple[int, int]] = {}  # reward-model frame id -> (env, episode)
        self._period = env.step_dt / cfg.takeover_speed
        self._last_step = time.monotonic()
        self._pause_left = cfg.max_pause_s
        self.start_chunk()

    def start_chunk(self) -> None:
        """Reset the per-chunk statistics and the chunk's pause budget."""
        self._pause_left = self.cfg.max_pause_s
        self.finished_interventions: list[int] = []
        self.finished_takeovers: list[int] = []
        self.labels: Counter[str] = Counter()
        self.intervention_steps = 0

    def before_step(self) -> np.ndarray:
        """Wait for this step (takeover pace, pause), end the episodes people asked to end, send the frames
        due; returns this step's ``human_label`` [N] (int8)."""
        port = self.port
        if port.controlled.any():
            # The port's thread takes the person's actions meanwhile: the step uses the latest.
            time.sleep(max(self._last_step + self._period - time.monotonic(), 0.0))
        if port.paused:
            self._pause_left -= port.hold(max(self._pause_left, 0.0))
        labels = np.full(self.env.num_envs, LABEL_NONE, dtype=np.int8)
        for env_id, label in port.take_ends().items():
            self.env.end_episodes([env_id], None if label == LABEL_NONE else label == LABEL_SUCCESS)
            labels[env_id] = label
        if port.watched():
            port.send_frames(self._render, self.t, self.episode)
        self._last_step = time.monotonic()
        return labels

    def _render(self, env_id: int, camera: str) -> np.ndarray:
        cfg = self.cfg
        view = -1 if camera == FREE_CAMERA else camera
        return self.env.render(view, cfg.height, cfg.width, ids=np.array([env_id]), shadows=cfg.shadows)[0]

    def after_step(
        self,
        obs: Any,
        actions: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict[str, Any],
        next_obs: Any,
        intervened: np.ndarray,
        labels: np.ndarray,
        frame_ids: np.ndarray | None,
    ) -> None:
        """Count the step, send ``step`` / ``episode_end`` messages to watchers, start new episodes."""
        self.intervention_steps += int(intervened.sum())
        self.episode_takeovers += intervened & ~self._acting
        self.episode_interventions += intervened
        self._acting = intervened.copy()
        self.episode_return += reward
        if frame_ids is not None:
            self._track_frames(frame_ids)
        elif "progress" in info:
            self.progress = np.asarray(info["progress"], dtype=np.float64).copy()
        done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        final_rows = {int(e): i for i, e in enumerate(info.get("final_ids", ()))}
        for n in sorted(self.port.watched()):
            nxt = obs_row(info["final_obs"], final_rows[n]) if done[n] else obs_row(next_obs, n)
            progress = None if np.isnan(self.progress[n]) else float(self.progress[n])
            self.port.send_to_watchers(n, {
                "type": "step", "env": n, "episode": int(self.episode[n]), "t": int(self.t[n]),
                "action": np.asarray(actions[n], dtype=np.float64).tolist(), "reward": float(reward[n]),
                "return": float(self.episode_return[n]), "terminated": bool(terminated[n]),
                "truncated": bool(truncated[n]), "success": bool(info["success"][n]),
                "intervention": bool(intervened[n]), "label": int(labels[n]), "progress": progress,
                "obs": obs_row(obs, n), "next_obs": nxt,
            })  # fmt: skip
        self.t += 1
        for env_id in np.flatnonzero(done).tolist():
            self._end_episode(env_id, info, int(labels[env_id]))

    def _end_episode(self, env_id: int, info: dict[str, Any], label: int) -> None:
        interventions, takeovers = (
            int(self.episode_interventions[env_id]),
            int(self.episode_takeovers[env_id]),
        )
        self.finished_interventions.append(interventions)
        self.finished_takeovers.append(takeovers)
        if label != LABEL_NONE:
            self.labels["success" if label == LABEL_SUCCESS else "failure"] += 1
        self.port.send_to_watchers(env_id, {
            "type": "episode_end", "env": env_id, "episode": int(self.episode[env_id]),
            "return": float(info["episode_return"][env_id]), "length": int(info["episode_length"][env_id]),
            "success": bool(info["success"][env_id]), "label": label, "interventions": interventions,
            "takeovers": takeovers,
        })  # fmt: skip
        self.episode[env_id] = self._next_episode
        self._next_episode += 1
        self.t[env_id] = 0
        self.episode_return[env_id] = 0.0
        self.episode_interventions[env_id] = self.episode_takeovers[env_id] = 0
        self._acting[env_id] = False
        self.progress[env_id] = np.nan

    def _track_frames(self, frame_ids: np.ndarray) -> None:
        for env_id in np.flatnonzero(frame_ids >= 0).tolist():
            self._frame_env[int(frame_ids[env_id])] = (env_id, int(self.episode[env_id]))
        while len(self._frame_env) > MAX_TRACKED_FRAMES:  # labels that never came back
            del self._frame_env[next(iter(self._frame_env))]

    def note_labels(self, labels: Labels) -> None:
        """The reward model's labels that came back: the latest progress of each env's running episode."""
        for frame_id, ok, progress in zip(labels.frame_ids, labels.ok, labels.progress, strict=True):
            where = self._frame_env.pop(int(frame_id), None)
            if where is not None and ok and self.episode[where[0]] == where[1]:
                self.progress[where[0]] = float(progress)

    def close(self) -> None:
        self.port.close()


def actor_seed(run_seed: int, actor_id: int, restart_count: int) -> int:
    """The seed of an actor's envs and policy sampling: distinct per actor and per restart, < 2^31."""
    return int(np.random.SeedSequence([run_seed, actor_id, restart_count]).generate_state(1)[0] >> 1)


class EnvActor:
    def __init__(self, spec: ActorSpec, store: Any) -> None:
        # Actors share the machine with each other and the learner: one BLAS thread each.
        torch.set_num_threads(1)
        self.spec = spec
        self.store = store
        config = {**spec.task_config, "num_threads": spec.physics_threads}
        # A restarted actor gets a new seed, so it does not replay the episodes of the one it replaces,
        # and every seed follows from (run seed, actor id, restart count): a run can be reproduced.
        self.started_at = time.time()
        # Without a store (an actor used outside a run) there are no restarts to count.
        self.restart_count = 0 if store is None else ray.get(store.start.remote(spec.actor_id))
        seed = actor_seed(spec.seed, spec.actor_id, self.restart_count)
        self.env = make_env(spec.task, num_envs=spec.num_envs, seed=seed, **config)
        self.obs = self.env.reset()
        self.policy: ActingPolicy = make_acting_policy(
            spec.algo, spec.algo_config, self.obs, self.env.action_dim, seed
        )
        self.version = -1
        self.labeller = FrameLabeller(spec.reward, spec.actor_id, self.env) if spec.reward else None
        self.hil = HumanLoop(spec.hil, spec, self.env) if spec.hil is not None and spec.hil.enabled else None

    def identity(self) -> dict[str, Any]:
        return {
            "actor_id": self.spec.actor_id,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "started_at": self.started_at,
            "restart_count": self.restart_count,
            "hil_endpoint": self.hil.port.endpoint if self.hil else None,
        }

    def _sync_weights(self) -> None:
        version, weights = ray.get(self.store.newer_than.remote(self.version))
        if weights:
            self.policy.load(ray.get(weights[0]))
            self.version = version

    def rollout(self) -> ActorResult:
        """One chunk with the newest weights of the parameter store."""
        self._sync_weights()
        return self.step_chunk()

    def step_chunk(self) -> ActorResult:
        """One chunk with the weights this actor holds: the chunk, the labels, the statistics."""
        builder = ChunkBuilder(self.env.num_envs)
        episodes = EpisodeLog()
        term_sums: dict[str, float] = {}
        start = time.perf_counter()
        obs = self.obs
        labeller, hil = self.labeller, self.hil
        start_frames = labeller.chunk_start() if labeller else None
        pending = np.full(self.env.num_envs, labeller is not None)
        if hil:
            hil.start_chunk()
        for _ in range(self.spec.chunk_length):
            labels = hil.before_step() if hil else None
            out = self.policy.act(obs, explore=True)
            actions, log_prob, intervened = out["actions"], out.get("log_prob"), None
            if hil:
                actions, intervened = hil.port.actions(actions)
                if log_prob is not None and intervened.any() and isinstance(self.policy, PPOPolicy):
                    log_prob = np.where(intervened, self.policy.log_prob(obs, actions), log_prob)
            next_obs, reward, terminated, truncated, info = self.env.step(actions)
            frame_ids = labeller.after_step(terminated, truncated, info) if labeller else None
            builder.add(
                obs, actions, reward, terminated, truncated, info,
                policy_version=self.version, log_prob=log_prob, value=out.get("value"),
                intervention=intervened, reward_pending=pending, frame_ids=frame_ids, human_label=labels,
            )  # fmt: skip
            episodes.record(terminated, truncated, info)
            if hil:
                hil.after_step(
                    obs, actions, reward, terminated, truncated, info, next_obs, intervened, labels, frame_ids
                )
            for name, value in info["reward_terms"].items():
                term_sums[name] = term_sums.get(name, 0.0) + float(np.mean(value))
            obs = next_obs
        self.obs = obs
        elapsed = time.perf_counter() - start
        result = ActorResult(
            chunk=builder.build(obs, start_frame_ids=start_frames),
            stats=self._stats(episodes, term_sums, elapsed),
        )
        if labeller:
            result.labels, result.label_stats = labeller.take_labels()
            if hil:
                hil.note_labels(result.labels)
        return result

    def _stats(self, episodes: EpisodeLog, term_sums: dict[str, float], elapsed: float) -> ActorStats:
        hil = self.hil
        steps = self.spec.chunk_length * self.env.num_envs
        stats = ActorStats(
            actor_id=self.spec.actor_id,
            pid=os.getpid(),
            env_steps=steps,
            env_steps_per_s=steps / elapsed,
            policy_version=self.version,
            episode_returns=episodes.returns,
            episode_lengths=episodes.lengths,
            episode_successes=episodes.successes,
            reward_terms={name: total / self.spec.chunk_length for name, total in term_sums.items()},
            episode_interventions=[0] * len(episodes),
            episode_takeovers=[0] * len(episodes),
        )
        if hil:
            stats.episode_interventions = hil.finished_interventions
            stats.episode_takeovers = hil.finished_takeovers
            stats.intervention_steps = hil.intervention_steps
            stats.human_labels = {"success": hil.labels["success"], "failure": hil.labels["failure"]}
            stats.hil_endpoint = hil.port.endpoint
            stats.hil_port = hil.port.stats()
        return stats

    def close(self) -> None:
        """Close the sockets (the reward client, the intervention port)."""
        if self.labeller:
            self.labeller.close()
        if self.hil:
            self.hil.close()
