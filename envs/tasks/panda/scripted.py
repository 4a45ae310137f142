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

_PICK = obs_slices(PICK_OBS_TERMS)
_REACH = obs_slices(REACH_OBS_TERMS)

OPEN, CLOSE = -1.0, 1.0


def _state(obs: Obs) -> np.ndarray:
    return obs["state"] if isinstance(obs, dict) else obs


class _ScriptedPolicy:
    def __init__(
        self, num_envs: int, ee_step: float = 0.03, noise: float = 0.0, seed: int | None = None
    ) -> None:
        self.num_envs = num_envs
        self.ee_step = ee_step
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    @classmethod
    def for_env(cls, env: PandaEnv, noise: float = 0.0, seed: int | None = None, **kwargs: Any) -> Self:
        """A policy sized and scaled for ``env``, which must use ``ee_delta`` control."""
        if env.cfg.control != "ee_delta":
            raise ValueError(f"scripted policies act through ee_delta control; env has {env.cfg.control!r}")
        return cls(env.num_envs, env.cfg.ee_step, noise=noise, seed=seed, **kwargs)

    def _move(self, target: np.ndarray, pinch: np.ndarray) -> np.ndarray:
        """Motion actions [N, 3] that cover the error to ``target`` in one step where it is short enough."""
        motion = (target - pinch) / self.ee_step
        if self.noise > 0:
            motion = motion + self.rng.normal(0.0, self.noise, motion.shape)
        return np.clip(motion, -1.0, 1.0)


class ScriptedPickPolicy(_ScriptedPolicy):
    """Above the cube -> descend -> close -> lift; a cube lost after the grasp restarts the sequence."""

    APPROACH, DESCEND, GRASP, LIFT = range(4)

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
        self.phase = np.zeros(num_envs, dtype=np.int64)
        self.phase_steps = np.zeros(num_envs, dtype=np.int64)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start over in the envs of ``mask`` (all when None)."""
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        self.phase[mask] = self.APPROACH
        self.phase_steps[mask] = 0

    def __call__(self, obs: Obs) -> np.ndarray:
        state = _state(obs)
        pinch = state[:, _PICK["pinch_pos"]]
        cube = state[:, _PICK["cube_pos"]]
        above = cube + np.array([0.0, 0.0, self.hover])
        grasp = cube - np.array([0.0, 0.0, self.grasp_depth])
        xy_error = np.linalg.norm((above - pinch)[:, :2], axis=1)

        # Advance phases first, so that each env acts on the phase it is in now.
        previous = self.phase.copy()
        self.phase_steps += 1
        at = self.phase
        self.phase = np.select(
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
        self.phase_steps[self.phase != previous] = 0

        lift = pinch.copy()
        lift[:, 2] = self.lift_to
        phase = self.phase[:, None]
        target = np.select(
            [phase == self.APPROACH, phase == self.DESCEND, phase == self.GRASP],
            [above, grasp, pinch],
            default=lift,
        )
        gripper = np.where(phase >= self.GRASP, CLOSE, OPEN)
        return np.concatenate((self._move(target, pinch), gripper), axis=1)


class ScriptedReachPolicy(_ScriptedPolicy):
    """Straight to the target, gripper open."""

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless: nothing to start over (kept for the common policy interface)."""

    def __call__(self, obs: Obs) -> np.ndarray:
        state = _state(obs)
        pinch = state[:, _REACH["pinch_pos"]]
        target = state[:, _REACH["target_pos"]]
        gripper = np.full((len(state), 1), OPEN)
        return np.concatenate((self._move(target, pinch), gripper), axis=1)
