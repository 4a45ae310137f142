"""What a task offers a reward-model data set: its rollout env, cameras and rollout behaviours.

A progress model (``striata.reward_server.progress_model``) learns from camera frames of rollouts
labelled with the env's ground-truth ``info["progress"]`` and ``info["success"]``. Which env to roll
out, which cameras frame the task, which behaviours give the positives and the negatives, and which
states sit at the success boundary are facts of the task: it implements ``ProgressScene`` and
registers it (``striata.envs.registry.TaskEntry.progress_scene``), and the data-set builder reaches it
by the task's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

import numpy as np

from striata.envs.backend import BatchedEnv

Env = TypeVar("Env", bound=BatchedEnv)
RolloutPolicy = Callable[[np.ndarray], np.ndarray]
"""Observations [N, D] of the scene's env in, actions [N, A] out; called once per step."""


class ProgressScene(Protocol[Env]):
    """A task's rollouts for a reward-model data set."""

    @property
    def cameras(self) -> Mapping[str, str]:
        """Camera names a data-set config uses -> the scene's MuJoCo cameras."""
        ...

    @property
    def kinds(self) -> tuple[str, ...]:
        """Names of the rollout behaviours, in the order data sets index them."""
        ...

    def make_env(self, episode_steps: int, num_envs: int, seed: int) -> Env:
        """An env whose episodes last ``episode_steps`` control steps and go on after success."""
        ...

    def make_policy(
        self,
        env: Env,
        kinds: list[str],
        noise: tuple[float, float],
        rng: np.random.Generator,
        learned: RolloutPolicy | None,
    ) -> RolloutPolicy:
        """One behaviour per env (``kinds[i]``, from ``self.kinds``), motion noise drawn per episode
        from the ``noise`` range with ``rng``; ``learned`` acts for the kinds that run a trained policy."""
        ...

    def near_success(self, env: Env) -> np.ndarray:
        """bool [N]: the envs whose state lies just around the task's success boundary."""
        ...
