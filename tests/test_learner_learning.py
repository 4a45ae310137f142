"""PPO and SAC/RLPD learn a small task within seconds, fed through the chunk contract as actors would.

The task is a batched 2-D point mass that follows the env contract (auto-reset, time-outs apart from
terminations, ``info["final_obs"]`` for truncated envs): obs (position, goal - position), action =
velocity in [-1, 1]^2, reward = -distance to the goal, 20-step episodes, terminated when it leaves
the [-2, 2]^2 box. A random policy scores about -1.0 a step; going straight to the goal about -0.2.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from striata.learner.chunk import ChunkBuilder, flatten_transitions
from striata.learner.config import NetworkConfig, PPOConfig, SACConfig
from striata.learner.ppo import PPO
from striata.learner.replay import DemoBuffer, ReplayBuffer, add_transitions
from striata.learner.sac import SAC

torch.set_num_threads(1)


class PointMass:
    action_dim = 2
    observation_dim = 4

    def __init__(self, num_envs: int, seed: int = 0, max_steps: int = 20) -> None:
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.rng = np.random.default_rng(seed)
        self.pos = np.zeros((num_envs, 2))
        self.goal = np.zeros((num_envs, 2))
        self.t = np.zeros(num_envs, dtype=np.int64)

    def _obs(self, ids: np.ndarray | slice = slice(None)) -> np.ndarray:
        return np.concatenate([self.pos[ids], self.goal[ids] - self.pos[ids]], axis=1).astype(np.float32)

    def _reset(self, ids: np.ndarray) -> None:
        self.pos[ids] = self.rng.uniform(-1, 1, (len(ids), 2))
        self.goal[ids] = self.rng.uniform(-1, 1, (len(ids), 2))
        self.t[ids] = 0

    def reset(self) -> np.ndarray:
        self._reset(np.arange(self.num_envs))
        return self._obs()

    def expert(self) -> np.ndarray:
        return np.clip((self.goal - self.pos) / 0.2, -1, 1)

    def step(self, actions: np.ndarray) -> tuple:
        self.pos += 0.2 * np.clip(actions, -1, 1)
        self.t += 1
        reward = -np.linalg.norm(self.goal - self.pos, axis=1)
        terminated = np.abs(self.pos).max(axis=1) > 2.0
        truncated = (self.t >= self.max_steps) & ~terminated
        info: dict = {}
        if truncated.any():
            info["final_ids"] = np.flatnonzero(truncated)
            info["final_obs"] = self._obs(info["final_ids"])
        done = terminated | truncated
        if done.any():
            self._reset(np.flatnonzero(done))
        return self._obs(), reward, terminated, truncated, info


def evaluate(act, episodes_envs: int = 64) -> float:
    """Mean reward per step of a deterministic policy over one 20-step episode of 64 fresh envs."""
    env = PointMass(episodes_envs, seed=1234)
    obs, total = env.reset(), 0.0
    for _ in range(env.max_steps):
        obs, reward, *_ = env.step(act(obs))
        total += reward.mean()
    return total / env.max_steps


def test_ppo_learns_point_mass_reaching() -> None:
    net = NetworkConfig(hidden=[64, 64], activation="elu")
    cfg = PPOConfig(
        actor=net, critic=net, learning_rate=3e-3, entropy_coef=0.0, init_noise_std=0.5, device="cpu"
    )
    learner = PPO(cfg, 4, None, 2)
    actor = PPO(cfg.model_copy(update={"seed": 1}), 4, None, 2)  # the actor's CPU copy, as on a Ray actor
    env = PointMass(64, seed=0)
    builder = ChunkBuilder(env.num_envs)
    obs = env.reset()
    before = evaluate(lambda o: learner.act(o, deterministic=True)[0])
    start = time.perf_counter()
    for _ in range(40):
        actor.load_policy_state(learner.policy_state())
        for _ in range(20):
            actions, log_prob, value = actor.act(obs)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            builder.add(
                obs, actions, reward, terminated, truncated, info,
                policy_version=actor.version, log_prob=log_prob, value=value,
            )  # fmt: skip
            obs = next_obs
        metrics = learner.update([builder.build(obs)])
    elapsed = time.perf_counter() - start
    after = evaluate(lambda o: learner.act(o, deterministic=True)[0])
    print(f"PPO point mass: {before:.3f} -> {after:.3f} reward/step in {elapsed:.1f} s (51k env steps)")
    assert after > -0.4 and after - before > 0.4
    assert metrics["policy_lag_max"] == 0.0 and metrics["learning_rate"] <= cfg.max_learning_rate


def test_sac_rlpd_learns_point_mass_reaching_with_demos_and_interventions() -> None:
    cfg = SACConfig(
        actor=NetworkConfig(hidden=[64, 64]),
        critic=NetworkConfig(hidden=[64, 64], layer_norm=True),
        gamma=0.9, batch_size=128, actor_lr=1e-3, critic_lr=1e-3, temperature_lr=1e-3, device="cpu",
    )  # fmt: skip
    sac = SAC(cfg, 4, 2)
    env = PointMass(8, seed=0)
    # Recorded demonstrations: two scripted episodes per env, in the replay file format.
    demo_env, recorded, builder = PointMass(8, seed=7), ReplayBuffer(320), ChunkBuilder(8)
    obs = demo_env.reset()
    for _ in range(40):
        actions = demo_env.expert()
        next_obs, reward, terminated, truncated, info = demo_env.step(actions)
        builder.add(obs, actions, reward, terminated, truncated, info, policy_version=0)
        obs = next_obs
    recorded.add(flatten_transitions(builder.build(obs)))
    demo = DemoBuffer(10_000)
    demo.add(recorded.transitions())
    online = ReplayBuffer(10_000)

    before = evaluate(lambda o: sac.act(o, deterministic=True))
    obs = env.reset()
    start = time.perf_counter()
    copied = 0
    for step in range(300):
        actions = sac.act(obs)
        # A human takes over env 0 for the first 40 steps: its actions are flagged as interventions.
        intervention = np.zeros(env.num_envs, bool)
        if step < 40:
            intervention[0] = True
            actions[0] = env.expert()[0]
        next_obs, reward, terminated, truncated, info = env.step(actions)
        builder.add(
            obs,
            actions,
            reward,
            terminated,
            truncated,
            info,
            policy_version=sac.version,
            intervention=intervention,
        )
        obs = next_obs
        copied += add_transitions(online, demo, flatten_transitions(builder.build(obs)))
        if len(online) >= cfg.batch_size:
            sac.update(online, demo)
    elapsed = time.perf_counter() - start
    after = evaluate(lambda o: sac.act(o, deterministic=True))
    print(f"SAC/RLPD point mass: {before:.3f} -> {after:.3f} reward/step in {elapsed:.1f} s (2.4k env steps)")
    assert copied == 40 and len(demo) == 320 + 40
    assert after > -0.4 and after - before > 0.4
