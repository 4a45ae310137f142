"""Gymnasium single-env view of every batched task, registered as ``striata/<Task>-v0`` (the vector
view of the same id is ``envs.vector_view``).

``gymnasium.make("striata/PandaPick-v0")`` gives a standard ``gym.Env`` backed by a batched
env with one environment, for tools that expect Gymnasium (evaluation scripts, wrappers).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.backend import Obs
from envs.registry import TASKS, make_env


class SingleEnvView(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, task: str, render_mode: str | None = None, camera: str | int = -1, **overrides: Any):
        self.task = task
        self.render_mode = render_mode
        self.camera = camera
        self._overrides = overrides
        self.env = self._make(seed=None)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.env.step_dt)}
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.env.action_dim,), dtype=np.float32)
        self.observation_space = space_of(_first(self.env.reset()))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.env.close()
            self.env = self._make(seed)
        return _first(self.env.reset()), {}

    def _make(self, seed: int | None):
        env = make_env(self.task, num_envs=1, seed=seed, **self._overrides)
        env.final_obs_on_termination = True  # Gymnasium hands back every episode's last observation
        return env

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float64)[None])
        if terminated[0] or truncated[0]:
            # The batched env has already auto-reset; Gymnasium users expect the final observation.
            obs = info["final_obs"]
        terms = {k: float(v[0]) for k, v in info["reward_terms"].items()}
        out_info = {"success": bool(info["success"][0]), "reward_terms": terms}
        return _first(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), out_info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.env.render(self.camera)[0]

    def close(self) -> None:
        self.env.close()


def _first(obs: Obs) -> Any:
    if isinstance(obs, dict):
        return {k: v[0] for k, v in obs.items()}
    return obs[0]


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
                vector_entry_point="envs.vector_view:BatchedVectorEnv",
                kwargs={"task": name},
            )
