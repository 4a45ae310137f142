"""What the learner does with each chunk, per algorithm, behind one small interface.

``PPOTrainer`` gathers chunks until it holds ``steps_per_update`` transitions, then runs one PPO
update. ``SACTrainer`` files every transition into the replay buffer (interventions also into the
demo buffer) and runs ``updates_per_env_step`` SAC updates per transition once ``learning_starts``
transitions are in. Both expose the weights actors need, act deterministically for evaluation,
and checkpoint everything (buffers included) through ``striata.learner.checkpoint``.

With ``sac.cameras``, ``SACTrainer`` keeps the state vector and those cameras' uint8 frames of every
transition (other cameras in the env's observation stay out of the replay), and refuses at
start-up a camera the env does not render and a replay capacity whose frames exceed
``sac.replay_memory_gb`` (``LearnerSetupError``, one line naming both).

Steps still ``reward_pending`` when a chunk arrives were not labelled by the reward model in time
(``striata.learner.relabel``): SAC leaves them out of the replay buffer, PPO cuts them out of its rollout
(``labelled_segments``), so neither learns from a reward it does not have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from striata.envs.action_prior import ActionPrior
from striata.envs.episodes import EpisodeLog
from striata.envs.symmetry import Symmetry
from striata.learner.checkpoint import load_checkpoint, save_checkpoint
from striata.learner.chunk import Chunk, flatten_transitions
from striata.learner.config import LearnerSetupError, PPOConfig, SACConfig
from striata.learner.encoders import CameraShapes
from striata.learner.ppo import PPO
from striata.learner.relabel import labelled_segments
from striata.learner.replay import DemoBuffer, ReplayBuffer, add_transitions
from striata.learner.sac import SAC


class Trainer(Protocol):
    version: int

    def consume(self, chunk: Chunk) -> dict[str, float]: ...

    def policy_weights(self) -> dict[str, np.ndarray]: ...

    def act_deterministic(self, obs: Any) -> np.ndarray: ...

    def replay_size(self) -> int: ...

    def demo_size(self) -> int: ...

    def save(self, path: Path, extra: dict[str, Any]) -> None: ...

    def load(self, path: Path) -> dict[str, Any]: ...


def observation_dims(obs: Any) -> dict[str, int]:
    """Width of each observation group of a batched env's observation ('' for a plain array)."""
    if isinstance(obs, dict):
        return {key: int(np.prod(value.shape[1:])) for key, value in obs.items() if value.dtype != np.uint8}
    return {"": int(np.prod(obs.shape[1:]))}


def _input_dim(dims: dict[str, int], key: str, setting: str) -> int:
    dim = dims.get(key, dims.get(""))
    if dim is None:
        raise KeyError(f"{setting} {key!r} is not among the observation keys {sorted(dims)}")
    return dim


def ppo_input_dims(cfg: PPOConfig, obs: Any) -> tuple[int, int]:
    """(actor, critic) input widths for observations like ``obs``; the critic falls back to the actor's."""
    dims = observation_dims(obs)
    actor_dim = _input_dim(dims, cfg.actor_obs_key, "ppo.actor_obs_key")
    return actor_dim, dims.get(cfg.critic_obs_key, actor_dim)


def sac_input_dim(cfg: SACConfig, obs: Any) -> int:
    """Width of SAC's state vector for observations like ``obs`` (camera features come on top)."""
    return _input_dim(observation_dims(obs), cfg.obs_key, "sac.obs_key")


def sac_cameras(cfg: SACConfig, obs: Any) -> CameraShapes:
    """(H, W, C) of each camera in ``cfg.cameras``, checked against observations like ``obs``."""
    keys = sorted(obs) if isinstance(obs, dict) else []
    shapes: dict[str, tuple[int, int, int]] = {}
    for name in cfg.cameras:
        if name not in keys:
            has = f"its observation keys are {keys}" if keys else "its observation is one array, no cameras"
            raise LearnerSetupError(
                f"sac.cameras: {name!r} is not in the env's observation; {has} "
                "(the panda_* and so101_* tasks render the cameras of task_config.cameras)"
            )
        frames = obs[name]
        if frames.dtype != np.uint8 or frames.ndim != 4:
            raise LearnerSetupError(
                f"sac.cameras: {name!r} holds {frames.dtype} {frames.shape[1:]} rows; "
                "an encoder reads uint8 frames [H, W, C]"
            )
        height, width, channels = (int(size) for size in frames.shape[1:])
        shapes[name] = (height, width, channels)
    return shapes


def transition_bytes(cfg: SACConfig, obs: Any, action_dim: int) -> int:
    """Bytes one replay transition of observations like ``obs`` costs: ``obs`` and ``next_obs`` (state as
    float32, frames as uint8), actions (float32), reward (float32), terminated and intervention (bool)."""
    state = 4 * sac_input_dim(cfg, obs)
    frames = sum(int(np.prod(shape)) for shape in sac_cameras(cfg, obs).values())
    return 2 * (state + frames) + 4 * action_dim + 4 + 1 + 1


class PPOTrainer:
    def __init__(
        self,
        cfg: PPOConfig,
        obs: Any,
        action_dim: int,
        steps_per_update: int,
        symmetry: Symmetry | None = None,
        action_prior: ActionPrior | None = None,
    ) -> None:
        if cfg.action_prior is not None and action_prior is None:
            raise ValueError(f"ppo.action_prior {cfg.action_prior!r}: the learner needs the task's prior")
        self.algo = PPO(
            cfg, *ppo_input_dims(cfg, obs), action_dim, symmetry=symmetry, action_prior=action_prior
        )
        self.steps_per_update = steps_per_update
        self._pending: list[Chunk] = []
        self._pending_steps = 0
        self._masked_steps = 0

    @property
    def version(self) -> int:
        return self.algo.version

    def consume(self, chunk: Chunk) -> dict[str, float]:
        # Unlabelled steps count towards the rollout's size, so a slow reward model does not stretch it.
        self._pending_steps += chunk["rewards"].size
        self._masked_steps += int(chunk["reward_pending"].sum())
        self._pending.extend(labelled_segments(chunk))
        if self._pending_steps < self.steps_per_update:
            return {}
        metrics: dict[str, float] = {}
        if sum(c["rewards"].size for c in self._pending) >= max(2, self.algo.cfg.num_mini_batches):
            metrics = self.algo.update(self._pending)
            metrics["masked_fraction"] = self._masked_steps / self._pending_steps
        self._pending, self._pending_steps, self._masked_steps = [], 0, 0
        return metrics

    def policy_weights(self) -> dict[str, np.ndarray]:
        return self.algo.policy_state()

    def act_deterministic(self, obs: Any) -> np.ndarray:
        return self.algo.act(obs, deterministic=True)[0]

    def replay_size(self) -> int:
        return 0

    def demo_size(self) -> int:
        return 0

    def save(self, path: Path, extra: dict[str, Any]) -> None:
        save_checkpoint(path, self.algo, extra=extra)

    def load(self, path: Path) -> dict[str, Any]:
        return load_checkpoint(path, self.algo).extra


class SACTrainer:
    def __init__(
        self,
        cfg: SACConfig,
        obs: Any,
        action_dim: int,
        replay_capacity: int,
        learning_starts: int,
        updates_per_env_step: float,
        demos: DemoBuffer | None = None,
    ) -> None:
        cameras = sac_cameras(cfg, obs)
        per_transition = transition_bytes(cfg, obs, action_dim)
        if replay_capacity * per_transition > cfg.replay_memory_gb * 1e9:
            raise LearnerSetupError(
                f"learner.replay_capacity {replay_capacity} transitions x {per_transition} bytes "
                f"= {replay_capacity * per_transition / 1e9:.2f} GB exceeds sac.replay_memory_gb "
                f"{cfg.replay_memory_gb:g} GB; at most {int(cfg.replay_memory_gb * 1e9 // per_transition)} "
                "transitions fit (or raise the budget)"
            )
        if cameras and demos is not None and len(demos):
            stored = demos.sample(1, np.random.default_rng(0))["obs"]
            lacking = [name for name in cameras if not isinstance(stored, dict) or name not in stored]
            if lacking:
                raise LearnerSetupError(
                    f"demonstrations hold no frames of sac.cameras {lacking}; pixel SAC needs them in "
                    "every transition"
                )
        self.algo = SAC(cfg, sac_input_dim(cfg, obs), action_dim, cameras=cameras)
        self.bytes_per_transition = per_transition
        self.online = ReplayBuffer(replay_capacity)
        # Without recorded demonstrations, a demo buffer still collects human interventions (HIL-SERL).
        self.demo = demos if demos is not None else DemoBuffer(replay_capacity)
        self.learning_starts = learning_starts
        self.updates_per_env_step = updates_per_env_step
        self._owed = 0.0

    @property
    def version(self) -> int:
        return self.algo.version

    def _only_learner_obs(self, transitions: dict[str, Any]) -> dict[str, Any]:
        """Keep what the networks read of dict observations: the state vector alone, or with cameras a dict
        of it and those cameras' frames; the env's other cameras stay out of the replay."""
        cfg = self.algo.cfg
        for name in ("obs", "next_obs"):
            obs = transitions[name]
            if isinstance(obs, dict):
                transitions[name] = (
                    {k: obs[k] for k in (cfg.obs_key, *cfg.cameras)} if cfg.cameras else obs[cfg.obs_key]
                )
        return transitions

    def consume(self, chunk: Chunk) -> dict[str, float]:
        transitions = self._only_learner_obs(flatten_transitions(chunk))
        add_transitions(self.online, self.demo, transitions)
        if len(self.online) < self.learning_starts:
            return {}
        self._owed += len(transitions["rewards"]) * self.updates_per_env_step
        metrics: dict[str, float] = {}
        while self._owed >= 1.0:
            metrics = self.algo.update(self.online, self.demo if len(self.demo) else None)
            self._owed -= 1.0
        return metrics

    def policy_weights(self) -> dict[str, np.ndarray]:
        return self.algo.policy_state()

    def act_deterministic(self, obs: Any) -> np.ndarray:
        return self.algo.act(obs, deterministic=True)

    def replay_size(self) -> int:
        return len(self.online)

    def demo_size(self) -> int:
        return len(self.demo)

    def save(self, path: Path, extra: dict[str, Any]) -> None:
        save_checkpoint(
            path, self.algo, buffers={"online": self.online, "demo": self.demo},
            extra={**extra, "owed_updates": self._owed},
        )  # fmt: skip

    def load(self, path: Path) -> dict[str, Any]:
        loaded = load_checkpoint(path, self.algo)
        self.online = loaded.buffers["online"]
        self.demo = loaded.buffers["demo"]
        self._owed = float(loaded.extra.get("owed_updates", 0.0))
        return loaded.extra


def evaluate(trainer: Trainer, env: Any, num_episodes: int) -> dict[str, float]:
    """Run the deterministic policy on ``env`` (reset first) until ``num_episodes`` episodes end."""
    obs = env.reset()
    episodes = EpisodeLog()
    max_steps = (num_episodes // env.num_envs + 2) * env.max_episode_steps
    for _ in range(max_steps):
        obs, _, terminated, truncated, info = env.step(trainer.act_deterministic(obs))
        episodes.record(terminated, truncated, info)
        if len(episodes) >= num_episodes:
            break
    means = {key: value or 0.0 for key, value in episodes.means().items()}
    return {"episodes": len(episodes), **means}
