"""``so101_pick``: the SO-101 lifts a 2.5 cm cube from a random place on the table in front of it.

Success: the cube is ``lift_height`` (5 cm) above where it started; the episode then terminates.
Rewards: ``sparse`` is success as 1/0; ``dense`` adds reaching (-tanh(10 |cube - tip|)) and lifting
(clip(lift / lift_height, 0, 1) - 1) penalties, which vanish at the goal, to a success bonus, weighted by
``cfg.rewards`` (as ``panda_pick``).
Observation: ``PICK_OBS_TERMS`` (see ``config.py``), plus camera frames when configured.
"""

from __future__ import annotations

import numpy as np

from striata.envs.rotations import quat_from_euler_xyz
from striata.envs.tasks.so101.config import PICK_OBS_TERMS, So101PickConfig
from striata.envs.tasks.so101.env import So101Env
from striata.envs.tasks.so101.scene import CUBE, CUBE_HALF_SIZE


class So101PickEnv(So101Env):
    observation_terms = PICK_OBS_TERMS
    cfg: So101PickConfig

    def __init__(self, cfg: So101PickConfig, num_envs: int, seed: int | None = None) -> None:
        super().__init__(cfg, num_envs, seed, cube=True)
        adr = self.model.joint(CUBE).qposadr[0]
        self._cube_pos = slice(adr, adr + 3)
        self._cube_quat = slice(adr + 3, adr + 7)
        self.cube_start = np.zeros((num_envs, 3))

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
                np.full(n, CUBE_HALF_SIZE),
            ),
            axis=1,
        )
        yaw = self.rng.uniform(-cfg.cube_yaw, cfg.cube_yaw, n)
        zeros = np.zeros(n)
        self.qpos[ids, self._cube_pos] = pos
        self.qpos[ids, self._cube_quat] = quat_from_euler_xyz(zeros, zeros, yaw)
        self.cube_start[ids] = pos

    def _state(self) -> np.ndarray:
        tip = self.tip_pos
        cube = self.cube_pos
        return np.concatenate(
            (self.joint_pos, self.joint_vel, self.joint_target, tip, cube, self.cube_quat, cube - tip), axis=1
        )

    def _success(self) -> np.ndarray:
        return self.cube_lift() >= self.cfg.lift_height

    def _dense_reward(self, success: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # Penalties that reach 0 at the goal (see PickRewardConfig): finishing beats hovering.
        reach = -np.tanh(10.0 * np.linalg.norm(self.cube_pos - self.tip_pos, axis=1))
        lift = np.clip(self.cube_lift() / self.cfg.lift_height, 0.0, 1.0) - 1.0
        weights = self.cfg.rewards
        reward = weights.reach * reach + weights.lift * lift + weights.success * success
        return reward, {"reach": reach, "lift": lift}
