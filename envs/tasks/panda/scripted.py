"""Scripted Panda policies for ``ee_delta`` control: tests now, demonstrations and reward-model data later.

Both read only the task's state observation (``obs`` or ``obs["state"]``), never the simulator, so they
run against any env that produces the same observation layout, and they act through the same
[dx, dy, dz, gripper] actions a learned policy uses. Each keeps a per-env phase, vectorised over N envs;
call ``reset(done)`` with the env's ``terminated | truncated`` after every step so that auto-reset envs
start over. ``noise`` adds Gaussian noise to the motion part of the action (varied demonstrations).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from striata.envs.backend import Obs
from striata.envs.tasks.panda.config import PICK_OBS_TERMS, REACH_OBS_TERMS, obs_slices
from striata.envs.tasks.panda.env import PandaEnv
from striata.envs.tasks.tabletop.scripted import CLOSE, OPEN, PickPhases, ScriptedPolicy, state_of

__all__ = ["CLOSE", "OPEN", "ScriptedPickPolicy", "ScriptedReachPolicy"]

_PICK = obs_slices(PICK_OBS_TERMS)
_REACH = obs_slices(REACH_OBS_TERMS)


class _EEDeltaPolicy(ScriptedPolicy):
    def __init__(
        self, num_envs: int, ee_step: float = 0.03, noise: float = 0.0, seed: int | None = None
    ) -> None:
        super().__init__(num_envs, noise, seed)
        self.ee_step = ee_step

    @classmethod
    def for_env(cls, env: PandaEnv, noise: float = 0.0, seed: int | None = None, **kwargs: Any) -> Self:
        """A policy sized and scaled for ``env``, which must use ``ee_delta`` control."""
        if env.cfg.control != "ee_delta":
            raise ValueError(f"scripted policies act through ee_delta control; env has {env.cfg.control!r}")
        return cls(env.num_envs, env.cfg.ee_step, noise=noise, seed=seed, **kwargs)

    def _move(self, target: np.ndarray, pinch: np.ndarray) -> np.ndarray:
        """Motion actions [N, 3] that cover the error to ``target`` in one step where it is short enough."""
        return self._noisy((target - pinch) / self.ee_step)


class ScriptedPickPolicy(_EEDeltaPolicy, PickPhases):
    """Above the cube -> descend -> close -> lift; a cube lost after the grasp restarts the sequence."""

    def __init__(
        self,
        num_envs: int,
        ee_step: float = 0.03,
        noise: float = 0.0,
        seed: int | None = None,
        hover: float = 0.08,
        grasp_depth: float = 0.0,
        lift_to: float = 0.2,
        close_steps: int = 5,
        tolerance: float = 0.01,
    ) -> None:
        super().__init__(num_envs, ee_step, noise, seed)
        self.hover = hover
        self.grasp_depth = grasp_depth
        self.lift_to = lift_to
        self.close_steps = close_steps
        self.tolerance = tolerance

    def __call__(self, obs: Obs) -> np.ndarray:
        state = state_of(obs)
        pinch = state[:, _PICK["pinch_pos"]]
        cube = state[:, _PICK["cube_pos"]]
        above = cube + np.array([0.0, 0.0, self.hover])
        grasp = cube - np.array([0.0, 0.0, self.grasp_depth])
        xy_error = np.linalg.norm((above - pinch)[:, :2], axis=1)

        # Advance phases first, so that each env acts on the phase it is in now.
        at = self._tick()
        self._enter(
            np.select(
                [
                    (at == self.APPROACH)
                    & (xy_error < self.tolerance)
                    & (np.abs(above - pinch)[:, 2] < 2 * self.tolerance),
                    (at == self.DESCEND) & (np.linalg.norm(grasp - pinch, axis=1) < self.tolerance),
                    (at == self.GRASP) & (self.phase_steps >= self.close_steps),
                    (at == self.LIFT) & (np.linalg.norm(cube - pinch, axis=1) > 4 * self.tolerance),
                ],
                [self.DESCEND, self.GRASP, self.LIFT, self.APPROACH],
                default=at,
            )
        )

        lift = pinch.copy()
        lift[:, 2] = self.lift_to
        target = self._phase_goal(above, grasp, pinch, lift)
        return np.concatenate((self._move(target, pinch), self._gripper()), axis=1)


class ScriptedReachPolicy(_EEDeltaPolicy):
    """Straight to the target, gripper open."""

    def __call__(self, obs: Obs) -> np.ndarray:
        state = state_of(obs)
        pinch = state[:, _REACH["pinch_pos"]]
        target = state[:, _REACH["target_pos"]]
        gripper = np.full((len(state), 1), OPEN)
        return np.concatenate((self._move(target, pinch), gripper), axis=1)
