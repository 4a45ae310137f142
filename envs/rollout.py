"""Stepping a batched env with a simple policy and summarising its episodes (`striata rollout`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from striata.envs.backend import Obs
from striata.envs.episodes import EpisodeLog
from striata.envs.registry import make_env
from striata.envs.tasks.base import TaskConfig

POLICIES = ("random", "zero", "scripted")


class PolicyChoiceError(ValueError):
    """A policy name that does not exist, or has no version for the task."""


class NoDemonstrationsError(RuntimeError):
    """A scripted policy whose episodes all failed: nothing to demonstrate."""


def rollout_stats(
    task: str,
    num_envs: int,
    steps: int,
    policy: str = "random",
    seed: int = 0,
    config: TaskConfig | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    env = make_env(task, num_envs=num_envs, seed=seed, config=config)
    act = make_policy(policy, env, np.random.default_rng(seed))
    start = time.perf_counter()
    episodes = run_episodes(env, act, steps, None if on_step is None else lambda *_: on_step())
    elapsed = time.perf_counter() - start
    env.close()
    means = episodes.means()
    return {
        "task": task,
        "policy": policy,
        "num_envs": num_envs,
        "env_steps": steps * num_envs,
        "env_steps_per_s": round(steps * num_envs / elapsed, 1),
        "episodes": len(episodes),
        "mean_return": _rounded(means["return"], 4),
        "mean_length": _rounded(means["length"], 1),
        "success_rate": _rounded(means["success"], 3),
    }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def run_episodes(
    env: Any,
    act: Callable[[np.ndarray], np.ndarray],
    steps: int,
    after_step: Callable[[np.ndarray, np.ndarray, dict[str, Any]], None] | None = None,
) -> EpisodeLog:
    """Step ``env`` from a reset for ``steps`` batched steps with ``act``; the episodes that ended.

    ``after_step(terminated, truncated, info)`` sees every step's result; a policy with a ``reset(mask)``
    starts again in the envs whose episode ended.
    """
    obs = env.reset()
    episodes = EpisodeLog()
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(act(obs))
        if hasattr(act, "reset"):
            act.reset(terminated | truncated)
        episodes.record(terminated, truncated, info)
        if after_step is not None:
            after_step(terminated, truncated, info)
    return episodes


def make_policy(
    name: str, env: Any, rng: np.random.Generator, noise: float = 0.0
) -> Callable[[np.ndarray], np.ndarray]:
    """One of ``POLICIES`` for ``env``'s batch: observations [N, obs_dim] in, actions [N, action_dim] out;
    ``noise``: Gaussian noise on a scripted policy's actions (varied demonstrations)."""
    if name not in POLICIES:
        raise PolicyChoiceError(f"policy: unknown {name!r}; allowed: {', '.join(POLICIES)}")
    shape = (env.num_envs, env.action_dim)
    if name == "zero":
        return lambda obs: np.zeros(shape)
    if name == "random":
        return lambda obs: rng.uniform(-1, 1, size=shape)
    from striata.envs.tasks.panda import scripted as panda
    from striata.envs.tasks.panda.pick import PandaPickEnv
    from striata.envs.tasks.panda.reach import PandaReachEnv
    from striata.envs.tasks.so101 import scripted as so101
    from striata.envs.tasks.so101.pick import So101PickEnv
    from striata.envs.tasks.so101.reach import So101ReachEnv

    scripted = {
        PandaPickEnv: panda.ScriptedPickPolicy,
        PandaReachEnv: panda.ScriptedReachPolicy,
        So101PickEnv: so101.ScriptedPickPolicy,
        So101ReachEnv: so101.ScriptedReachPolicy,
    }
    for env_type, policy in scripted.items():
        if isinstance(env, env_type):
            return policy.for_env(env, noise=noise, seed=int(rng.integers(1 << 31)))
    raise PolicyChoiceError(f"policy: no scripted policy for task {type(env).__name__}; use random or zero")


def scripted_demonstrations(
    task: str,
    episodes: int,
    num_envs: int = 8,
    noise: float = 0.1,
    seed: int = 0,
    config: TaskConfig | None = None,
) -> dict[str, Any]:
    """The transitions of the successful ones among ``episodes`` episodes of ``task``'s scripted policy,
    for ``ReplayBuffer.add``: demonstrations for RLPD (``striata demos``). ``noise`` varies them."""
    env = make_env(task, num_envs=num_envs, seed=seed, config=config)
    try:
        policy = make_policy("scripted", env, np.random.default_rng(seed), noise=noise)
        return collect_demonstrations(env, policy, episodes)
    finally:
        env.close()


def collect_demonstrations(
    env: Any,
    policy: Callable[[Obs], np.ndarray],
    episodes: int,
    max_steps: int = 100_000,
) -> dict[str, Any]:
    """Roll ``policy`` from a reset until ``episodes`` episodes ended; the transitions of the successful
    ones, oldest first, as the learner's replay fields (obs, actions, rewards, next_obs, terminated,
    intervention), ready for ``striata.learner.replay.ReplayBuffer.add`` and ``striata train --demos``.

    ``info["final_obs"]`` is the true last observation of an ended episode (the env auto-resets), so the
    env is asked for it on termination too.
    """
    env.final_obs_on_termination = True
    obs = env.reset()
    if hasattr(policy, "reset"):
        policy.reset()
    pending: list[list[dict[str, Any]]] = [[] for _ in range(env.num_envs)]
    kept: list[dict[str, Any]] = []
    ended = 0
    for _ in range(max_steps):
        actions = policy(obs)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
        last = dict(zip(info.get("final_ids", []), range(len(info.get("final_ids", []))), strict=True))
        for i in range(env.num_envs):
            true_next = _row(info["final_obs"], last[i]) if i in last else _row(next_obs, i)
            pending[i].append(
                {
                    "obs": _row(obs, i),
                    "actions": actions[i].astype(np.float32),
                    "rewards": np.float32(reward[i]),
                    "next_obs": true_next,
                    "terminated": bool(terminated[i]),
                }
            )
            if done[i]:
                if info["success"][i] and ended < episodes:
                    kept.extend(pending[i])
                pending[i] = []
                ended += 1
        if hasattr(policy, "reset"):
            policy.reset(done)
        obs = next_obs
        if ended >= episodes:
            break
    if not kept:
        raise NoDemonstrationsError(f"none of {ended} episodes succeeded; nothing to demonstrate")
    return _stack(kept)


def _row(obs: Obs, i: int) -> Any:
    return {key: value[i] for key, value in obs.items()} if isinstance(obs, dict) else obs[i]


def _stack(steps: list[dict[str, Any]]) -> dict[str, Any]:
    def stacked(values: list[np.ndarray]) -> np.ndarray:
        array = np.stack(values)
        # Observations as the learner keeps them: float32 state, uint8 frames.
        return array.astype(np.float32) if array.dtype == np.float64 else array

    def column(field: str) -> Any:
        values = [s[field] for s in steps]
        if isinstance(values[0], dict):
            return {key: stacked([v[key] for v in values]) for key in values[0]}
        return stacked(values)

    out = {field: column(field) for field in ("obs", "actions", "rewards", "next_obs", "terminated")}
    out["actions"] = out["actions"].astype(np.float32).reshape(len(steps), -1)
    out["rewards"] = out["rewards"].astype(np.float32)
    out["terminated"] = out["terminated"].astype(bool)
    # Demonstrations count as interventions: RLPD samples them from the demo buffer.
    out["intervention"] = np.ones(len(steps), dtype=bool)
    return out
