"""``PickTask``: an arm lifts a cube from a random pose on the surface in front of it.

Success: the cube is ``cfg.lift_height`` above where it started; the episode then terminates.
Rewards: ``sparse`` is success as 1/0; ``dense`` adds reaching (-tanh(10 |cube - end effector|)) and
lifting (clip(lift / lift_height, 0, 1) - 1) penalties, which vanish at the goal, to a success bonus,
weighted by ``cfg.rewards`` (``PickRewardConfig``). Each robot's pick env combines this with its
``TabletopArmEnv``, names the scene's cube and lays out the state observation.

Progress (``pick_progress``), the ground truth reward models learn from, is the same scale for every
arm: reaching fills [0, 0.5] as the end effector closes on the cube (from 20 cm), holding the cube is
0.6, lifting it while held fills [0.6, 1], success is 1. A dropped or released cube falls back to its
reaching value, so put-downs and drops read as regressions. What "holding" means is the robot's.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from striata.envs.backend import Obs
from striata.envs.rotations import quat_from_euler_xyz
from striata.envs.tasks.tabletop.config import ArmTaskConfig
from striata.envs.tasks.tabletop.env import TabletopArmEnv

# Progress stages: reaching fills [0, REACHED], a grasp jumps to GRASPED, lifting fills [GRASPED, 1].
REACHED = 0.5
GRASPED = 0.6
REACH_SCALE = 0.2  # m: end-effector-to-cube distance at which reaching progress starts


def pick_progress(
    distance: np.ndarray, holding: np.ndarray, lift_fraction: np.ndarray, success: np.ndarray
) -> np.ndarray:
    """Ground-truth progress [N] in [0, 1] of a pick (see the module docstring)."""
    reach = REACHED * (1.0 - np.clip(distance / REACH_SCALE, 0.0, 1.0))
    lifted = GRASPED + (1.0 - GRASPED) * np.clip(lift_fraction, 0.0, 1.0)
    return np.where(success, 1.0, np.where(holding, lifted, reach))


class PickTask(TabletopArmEnv):
    """The pick's cube, success, dense reward and ground-truth progress (``info["progress"]``);
    ``class XPickEnv(PickTask, XEnv)`` adds the robot and its ``progress()``.

    Its config is the robot's task config plus ``cube_x``, ``cube_y`` and ``cube_yaw`` (the spawn
    ranges), ``lift_height`` (m) and ``rewards`` (``PickRewardConfig``).
    """

    cube_body: str  # the cube's body and free joint in the scene
    cube_half_size: float  # m; the cube spawns resting on the surface at z = 0

    def __init__(self, cfg: ArmTaskConfig, num_envs: int, seed: int | None = None) -> None:
        super().__init__(cfg, num_envs, seed, cube=True)
        adr = self.model.joint(self.cube_body).qposadr[0]
        self._cube_pos = slice(adr, adr + 3)
        self._cube_quat = slice(adr + 3, adr + 7)
        self.cube_start = np.zeros((num_envs, 3))
        self._step_progress = np.zeros(num_envs)

    @abstractmethod
    def progress(self) -> np.ndarray:
        """Ground-truth task progress [N] in [0, 1] (``pick_progress``, with the robot's holding rule)."""

    def step(self, actions: np.ndarray) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(actions)
        info["progress"] = self._step_progress
        return obs, reward, terminated, truncated, info

    def _after_physics(self) -> None:
        # Taken before auto-reset, so an ended episode reports the progress of its last state.
        self._step_progress = self.progress()

    @property
    def cube_pos(self) -> np.ndarray:
        return self.qpos[:, self._cube_pos]

    @property
    def cube_quat(self) -> np.ndarray:
        return self.qpos[:, self._cube_quat]

    def cube_lift(self) -> np.ndarray:
        return self.cube_pos[:, 2] - self.cube_start[:, 2]

    def _reset_envs(self, ids: np.ndarray) -> None:
        self._reset_robot(ids)
        cfg = self.cfg
        n = len(ids)
        pos = np.stack(
            (
                self.rng.uniform(*cfg.cube_x, n),
                self.rng.uniform(*cfg.cube_y, n),
                np.full(n, self.cube_half_size),
            ),
            axis=1,
        )
        yaw = self.rng.uniform(-cfg.cube_yaw, cfg.cube_yaw, n)
        zeros = np.zeros(n)
        self.qpos[ids, self._cube_pos] = pos
        self.qpos[ids, self._cube_quat] = quat_from_euler_xyz(zeros, zeros, yaw)
        self.cube_start[ids] = pos

    def _success(self) -> np.ndarray:
        return self.cube_lift() >= self.cfg.lift_height

    def _dense_reward(self, success: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # Penalties that reach 0 at the goal (see PickRewardConfig): finishing beats hovering.
        reach = -np.tanh(10.0 * np.linalg.norm(self.cube_pos - self.ee_pos, axis=1))
        lift = np.clip(self.cube_lift() / self.cfg.lift_height, 0.0, 1.0) - 1.0
        weights = self.cfg.rewards
        reward = weights.reach * reach + weights.lift * lift + weights.success * success
        return reward, {"reach": reach, "lift": lift}
