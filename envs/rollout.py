"""Stepping a batched env with a simple policy and summarising its episodes (`striata rollout`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from envs.registry import make_env
from envs.tasks.base import TaskConfig

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
    if policy not in POLICIES:
        raise PolicyChoiceError(f"policy: unknown {policy!r}; allowed: {', '.join(POLICIES)}")
    env = make_env(task, num_envs=num_envs, seed=seed, config=config)
    rng = np.random.default_rng(seed)
    act = _policy(policy, env, rng)
    obs = env.reset()
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[bool] = []
    start = time.perf_counter()
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(act(obs))
        if hasattr(act, "reset"):
            act.reset(terminated | truncated)
        done = np.flatnonzero(terminated | truncated)
        returns += info["episode_return"][done].tolist()
        lengths += info["episode_length"][done].tolist()
        successes += info["success"][done].tolist()
        if on_step is not None:
            on_step()
    elapsed = time.perf_counter() - start
    env.close()
    return {
        "task": task,
        "policy": policy,
        "num_envs": num_envs,
        "env_steps": steps * num_envs,
        "env_steps_per_s": round(steps * num_envs / elapsed, 1),
        "episodes": len(returns),
        "mean_return": round(float(np.mean(returns)), 4) if returns else None,
        "mean_length": round(float(np.mean(lengths)), 1) if lengths else None,
        "success_rate": round(float(np.mean(successes)), 3) if successes else None,
    }


def _policy(name: str, env, rng: np.random.Generator) -> Callable[[Any], np.ndarray]:
    shape = (env.num_envs, env.action_dim)
    if name == "zero":
        return lambda obs: np.zeros(shape)
    if name == "random":
        return lambda obs: rng.uniform(-1, 1, size=shape)
    from envs.tasks.panda.pick import PandaPickEnv
    from envs.tasks.panda.reach import PandaReachEnv
    from envs.tasks.panda.scripted import ScriptedPickPolicy, ScriptedReachPolicy

    if isinstance(env, PandaPickEnv):
        return ScriptedPickPolicy.for_env(env, seed=int(rng.integers(1 << 31)))
    if isinstance(env, PandaReachEnv):
        return ScriptedReachPolicy.for_env(env, seed=int(rng.integers(1 << 31)))
    raise PolicyChoiceError(f"policy: no scripted policy for task {type(env).__name__}; use random or zero")
