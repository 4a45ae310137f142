"""``panda_pick``: the Panda lifts a 4 cm cube from a random pose on the floor (gym-hil's PandaPickCube).

Success: the cube is ``lift_height`` (5 cm) above where it started; the episode then terminates.
Rewards: ``sparse`` is success as 1/0; ``dense`` adds reaching (-tanh(10 |cube - pinch|)) and
lifting (clip(lift / lift_height, 0, 1) - 1) penalties, which vanish at the goal, to a success
bonus, weighted by ``cfg.rewards``.
Observation: ``PICK_OBS_TERMS`` (see ``config.py``), plus camera frames when configured.
"""

from __future__ import annotations

import numpy as np

from envs.rotations import quat_from_euler_xyz
from envs.tasks.panda.config import PICK_OBS_TERMS, PandaPickConfig
from envs.tasks.panda.env import PandaEnv
from envs.tasks.panda.scene import BLOCK, BLOCK_HALF_SIZE


class PandaPickEnv(PandaEnv):
    observation_terms = PICK_OBS_TERMS
    cfg: PandaPickConfig

    def __init__(self, cfg: PandaPickConfig, num_envs: int, seed: int | None = None) -> None:
        super().__init__(cfg, num_envs, seed, block=True)
        adr = self.model.joint(BLOCK).qposadr[0]
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
                np.full(n, BLOCK_HALF_SIZE),
            ),
            axis=1,
        )
        yaw = self.rng.uniform(-cfg.cube_yaw, cfg.cube_yaw, n)
        zeros = np.zeros(n)
        self.qpos[ids, self._cube_pos] = pos
        self.qpos[ids, self._cube_quat] = quat_from_euler_xyz(zeros, zeros, yaw)
        self.cube_start[ids] = pos

    def _state(self) -> np.ndarray:
        pinch = self.pinch_pos
        cube = self.cube_pos
        return np.concatenate(
            (
                self.joint_pos,
                self.joint_vel,
                self.gripper_opening,
                pinch,
                self.pinch_vel,
                cube,
                self.cube_quat,
                cube - pinch,
            ),
            axis=1,
        )

    def _success(self) -> np.ndarray:
        return self.cube_lift() >= self.cfg.lift_height

    def _dense_reward(self, success: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # Penalties that reach 0 at the goal (see PickRewardConfig): finishing beats hovering.
        reach = -np.tanh(10.0 * np.linalg.norm(self.cube_pos - self.pinch_pos, axis=1))
        lift = np.clip(self.cube_lift() / self.cfg.lift_height, 0.0, 1.0) - 1.0
        weights = self.cfg.rewards
        reward = weights.reach * reach + weights.lift * lift + weights.success * success
        return reward, {"reach": reach, "lift": lift}
