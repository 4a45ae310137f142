"""What the arms' pick progress scenes share: a rollout env that goes on after success, and the mixed
behaviours of a reward-model data set around a robot's scripted pick.

``MixedPickPolicy`` wraps the robot's scripted pick per env and changes what it does so that the data set
holds the negatives RoboReward and VLAC train on: misses (grasps beside the cube), drops and put-downs
(progress going back down), stalls (no motion from some step on) and random flailing. ``learned`` envs
run a policy RL trained (with action noise): the states a learner visits, which no script reaches, so a
reward model shaping training has seen them. ``kinds`` names the behaviour of every env. Actions are the
arm's, then the gripper's command last (-1 open, +1 closed), as both arms' tasks lay them out; each
robot says how a put-down moves its arm (``_put_down``) and how far beside the cube a miss aims.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, Self

import numpy as np

from striata.envs.progress_scene import RolloutPolicy
from striata.envs.tasks.tabletop.pick import PickTask
from striata.envs.tasks.tabletop.scripted import OPEN, PickPhases

KINDS = ("scripted", "drop", "put_down", "miss", "stall", "random", "learned")
BOUNDARY_M = 0.01  # boundary frames: cube lift within this of the task's success lift


class ScriptedPick(Protocol):
    """A robot's scripted pick (``PickPhases``), built for an env."""

    phase: np.ndarray

    @classmethod
    def for_env(cls, env: Any, noise: float = 0.0, seed: int | None = None) -> Self: ...

    def reset(self) -> None: ...

    def __call__(self, state: np.ndarray) -> np.ndarray: ...


def near_success(env: PickTask) -> np.ndarray:
    """bool [N]: the envs whose cube lift is within ``BOUNDARY_M`` of the task's success lift."""
    return np.abs(env.cube_lift() - env.cfg.lift_height) < BOUNDARY_M


class MixedPickPolicy(ABC):
    """One behaviour per env (``kinds[i]``), vectorised over the batched env's N envs."""

    scripted_policy: type[ScriptedPick]  # the robot's scripted pick
    cube_pos: slice  # columns of the cube's position in the robot's state observation
    miss_radius: tuple[float, float]  # m: how far beside the cube a miss aims

    def __init__(
        self,
        env: PickTask,
        kinds: list[str],
        noise: tuple[float, float],
        rng: np.random.Generator,
        learned: RolloutPolicy | None = None,
    ) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown or len(kinds) != env.num_envs:
            raise ValueError(f"kinds: need {env.num_envs} of {KINDS}, got {kinds}")
        if "learned" in kinds and learned is None:
            raise ValueError("kinds: 'learned' envs need a learned policy")
        self.learned = learned
        self.kinds = np.array(kinds)
        self.rng = rng
        self.num_envs = env.num_envs
        self.action_dim = env.action_dim
        self.arm = env.action_dim - 1
        self.noise_range = noise
        self.scripted = self.scripted_policy.for_env(env, seed=int(rng.integers(1 << 31)))
        self.reset()

    def reset(self) -> None:
        """New episode in every env: fresh noise, miss offsets, release and freeze steps."""
        n = self.num_envs
        self.scripted.reset()
        self.noise = self.rng.uniform(*self.noise_range, n)
        angle = self.rng.uniform(0, 2 * np.pi, n)
        radius = np.where(self.kinds == "miss", self.rng.uniform(*self.miss_radius, n), 0.0)
        self.offset = np.stack((radius * np.cos(angle), radius * np.sin(angle), np.zeros(n)), axis=1)
        self.lift_steps = np.zeros(n, dtype=np.int64)
        self.release_after = self.rng.integers(2, 7, n)  # lift steps before a drop / put-down
        self.released = np.zeros(n, dtype=bool)
        self.freeze_at = self.rng.integers(3, 30, n)
        self.step_count = 0
        self.frozen_gripper = np.full(n, OPEN)

    def __call__(self, state: np.ndarray) -> np.ndarray:
        seen = state.copy()
        seen[:, self.cube_pos] += self.offset  # a miss aims beside the cube
        motion_noise = self.noise[:, None] * self.rng.standard_normal((self.num_envs, self.arm))
        actions = self.scripted(seen)
        actions[:, : self.arm] = np.clip(actions[:, : self.arm] + motion_noise, -1.0, 1.0)

        self.lift_steps += self.scripted.phase == PickPhases.LIFT
        release = np.isin(self.kinds, ("drop", "put_down")) & (self.lift_steps >= self.release_after)
        self.released |= release
        drop = self.released & (self.kinds == "drop")
        actions[drop, : self.arm] = 0.0
        actions[drop, self.arm] = OPEN
        put_down = self.released & (self.kinds == "put_down")
        if put_down.any():
            actions[put_down] = self._put_down(state[put_down])

        stall = (self.kinds == "stall") & (self.step_count >= self.freeze_at)
        self.frozen_gripper = np.where(stall, self.frozen_gripper, actions[:, self.arm])
        actions[stall] = 0.0
        actions[stall, self.arm] = self.frozen_gripper[stall]

        rand = self.kinds == "random"
        actions[rand] = self.rng.uniform(-1.0, 1.0, (int(rand.sum()), self.action_dim))

        learned = self.kinds == "learned"
        if learned.any():
            acted = self.learned(state[learned])
            noise = self.noise[learned, None] * self.rng.standard_normal(acted.shape)
            actions[learned] = np.clip(acted + noise, -1.0, 1.0)
        self.step_count += 1
        return actions

    @abstractmethod
    def _put_down(self, state: np.ndarray) -> np.ndarray:
        """Actions of the envs putting their cube back down (their state rows): lower it, then let go."""
