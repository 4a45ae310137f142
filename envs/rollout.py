"""Stepping a batched env with a simple policy and summarising its episodes (`striata rollout`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from striata.envs.episodes import EpisodeLog
from striata.envs.registry import make_env
from striata.envs.tasks.base import TaskConfig

POLICIES = ("random", "zero", "scripted")


class PolicyChoiceError(ValueError):
    """A policy name that does not exist, or has no version for the task."""


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


def make_policy(name: str, env: Any, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """One of ``POLICIES`` for ``env``'s batch: observations [N, obs_dim] in, actions [N, action_dim] out."""
    if name not in POLICIES:
        raise PolicyChoiceError(f"policy: unknown {name!r}; allowed: {', '.join(POLICIES)}")
    shape = (env.num_envs, env.action_dim)
    if name == "zero":
        return lambda obs: np.zeros(shape)
    if name == "random":
        return lambda obs: rng.uniform(-1, 1, size=shape)
    from striata.envs.tasks.panda.pick import PandaPickEnv
    from striata.envs.tasks.panda.reach import PandaReachEnv
    from striata.envs.tasks.panda.scripted import ScriptedPickPolicy, ScriptedReachPolicy

    if isinstance(env, PandaPickEnv):
        return ScriptedPickPolicy.for_env(env, seed=int(rng.integers(1 << 31)))
    if isinstance(env, PandaReachEnv):
        return ScriptedReachPolicy.for_env(env, seed=int(rng.integers(1 << 31)))
    raise PolicyChoiceError(f"policy: no scripted policy for task {type(env).__name__}; use random or zero")
