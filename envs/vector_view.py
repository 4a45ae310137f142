"""Gymnasium vector view of every batched task: ``gymnasium.make_vec("striata/<Task>-v0", num_envs=N)``.

Users of other libraries (SB3, CleanRL, RLlib) step vectors of envs through ``gymnasium.vector.VectorEnv``.
Wrapping N single-env views in ``SyncVectorEnv`` steps N MuJoCo models one by one in Python; this view
hands the whole batch to one batched env instead, so it runs at the batched backend's speed. The batched
env resets a finished episode within the step, which is Gymnasium's ``SAME_STEP`` autoreset: the
returned observation of a finished env is its new episode's first, and ``info["final_obs"]`` (masked by
``info["_final_obs"]``) holds the last observation of the episode that ended.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from striata.envs.backend import Obs
from striata.envs.gym_view import action_box, env_row, space_of, view_env


class BatchedVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` envs of ``task`` as one Gymnasium vector env, backed by one batched env."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        task: str,
        num_envs: int = 1,
        render_mode: str | None = None,
        camera: str | int = -1,
        **overrides: Any,
    ) -> None:
        self.task = task
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.camera = camera
        self._overrides = overrides
        self.env = view_env(task, num_envs, None, overrides)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.env.step_dt)}
        self.single_action_space = action_box(self.env)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = space_of(env_row(self.env.reset(), 0))
        self.observation_space = batch_space(self.single_observation_space, num_envs)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Obs, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.env.close()
            self.env = view_env(self.task, self.num_envs, seed, self._overrides)
        return self.env.reset(), {}

    def step(self, actions: np.ndarray) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions, dtype=np.float64))
        everyone = np.ones(self.num_envs, dtype=bool)
        out: dict[str, Any] = {"success": info["success"], "_success": everyone}
        out["reward_terms"] = {**info["reward_terms"], **{f"_{k}": everyone for k in info["reward_terms"]}}
        if "final_ids" in info:
            final = np.full(self.num_envs, None, dtype=object)
            for k, env_id in enumerate(info["final_ids"].tolist()):
                final[env_id] = env_row(info["final_obs"], k)
            out["final_obs"] = final
            out["_final_obs"] = np.isin(np.arange(self.num_envs), info["final_ids"])
        return obs, reward, terminated, truncated, out

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.env.render(self.camera)

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()
