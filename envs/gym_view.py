"""Gymnasium single-env view of every batched task, registered as ``striata/<Task>-v0`` (the vector
view of the same id is ``striata.envs.vector_view``).

``gymnasium.make("striata/PandaPick-v0")`` gives a standard ``gym.Env`` backed by a batched
env with one environment, for tools that expect Gymnasium (evaluation scripts, wrappers).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from striata.envs.backend import BatchedEnv, Obs
from striata.envs.registry import TASKS, make_env


class SingleEnvView(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, task: str, render_mode: str | None = None, camera: str | int = -1, **overrides: Any):
        self.task = task
        self.render_mode = render_mode
        self.camera = camera
        self._overrides = overrides
        self.env = view_env(task, 1, None, overrides)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.env.step_dt)}
        self.action_space = action_box(self.env)
        self.observation_space = space_of(env_row(self.env.reset(), 0))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.env.close()
            self.env = view_env(self.task, 1, seed, self._overrides)
        return env_row(self.env.reset(), 0), {}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float64)[None])
        if terminated[0] or truncated[0]:
            # The batched env has already auto-reset; Gymnasium users expect the final observation.
            obs = info["final_obs"]
        terms = {k: float(v[0]) for k, v in info["reward_terms"].items()}
        out_info = {"success": bool(info["success"][0]), "reward_terms": terms}
        return env_row(obs, 0), float(reward[0]), bool(terminated[0]), bool(truncated[0]), out_info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.env.render(self.camera)[0]

    def close(self) -> None:
        self.env.close()


def view_env(task: str, num_envs: int, seed: int | None, overrides: dict[str, Any]) -> BatchedEnv:
    """The batched env behind a Gymnasium view: it hands back every ended episode's last observation
    (Gymnasium's contract), not only the time-outs' that learners bootstrap from."""
    env = make_env(task, num_envs=num_envs, seed=seed, **overrides)
    env.final_obs_on_termination = True
    return env


def action_box(env: BatchedEnv) -> spaces.Box:
    """One env's action space: every task acts in [-1, 1]."""
    return spaces.Box(-1.0, 1.0, shape=(env.action_dim,), dtype=np.float32)


def env_row(obs: Obs, k: int) -> Any:
    """Env ``k``'s observation out of a batch (an array, or a dict of arrays)."""
    if isinstance(obs, dict):
        return {key: value[k] for key, value in obs.items()}
    return obs[k]


def space_of(obs: Any) -> spaces.Space:
    """The space of one env's observation (an array, or a dict of arrays)."""
    if isinstance(obs, dict):
        return spaces.Dict({k: _box(v) for k, v in obs.items()})
    return _box(obs)


def _box(x: np.ndarray) -> spaces.Box:
    if x.dtype == np.uint8:
        return spaces.Box(0, 255, shape=x.shape, dtype=np.uint8)
    return spaces.Box(-np.inf, np.inf, shape=x.shape, dtype=x.dtype)


def register_all() -> None:
    """Every task as ``gym.make(id)`` (one env) and ``gym.make_vec(id, num_envs=N)`` (one batched env)."""
    for name, entry in TASKS.items():
        if entry.gym_id not in gym.registry:
            gym.register(
                entry.gym_id,
                entry_point=SingleEnvView,
                vector_entry_point="striata.envs.vector_view:BatchedVectorEnv",
                kwargs={"task": name},
            )
