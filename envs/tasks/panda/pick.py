"""``panda_pick``: the Panda lifts a 4 cm cube from a random pose on the floor (gym-hil's PandaPickCube).

Success: the cube is ``lift_height`` (5 cm) above where it started; the episode then terminates.
Rewards: ``sparse`` is success as 1/0; ``dense`` adds reaching (-tanh(10 |cube - pinch|)) and
lifting (clip(lift / lift_height, 0, 1) - 1) penalties, which vanish at the goal, to a success
bonus, weighted by ``cfg.rewards`` (both are ``PickTask``'s); ``progress`` is potential-based shaping on
the ground-truth progress plus the success bonus, what a run rewarded by a progress model would get from
a perfect one.
Observation: ``PICK_OBS_TERMS`` (see ``config.py``), plus camera frames when configured.
Progress: ``info["progress"]`` in [0, 1] is ground truth for reward models (see ``progress()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from striata.envs.backend import Obs
from striata.envs.tasks.panda.config import PICK_OBS_TERMS, PandaPickConfig
from striata.envs.tasks.panda.env import PandaEnv
from striata.envs.tasks.panda.scene import BLOCK, BLOCK_HALF_SIZE
from striata.envs.tasks.tabletop.pick import PickTask, pick_progress

GRASP_DISTANCE = 0.025  # m: pinch within this of the cube centre, fingers closing on it
GRASP_OPENING = (0.2, 0.8)  # gripper opening while holding the 4 cm cube (0.42); below: closed on air


class PandaPickEnv(PickTask, PandaEnv):
    observation_terms = PICK_OBS_TERMS
    cube_body = BLOCK
    cube_half_size = BLOCK_HALF_SIZE
    cfg: PandaPickConfig

    def __init__(self, cfg: PandaPickConfig, num_envs: int, seed: int | None = None) -> None:
        super().__init__(cfg, num_envs, seed)
        self._phi = self._step_progress  # phi(s') of the ``progress`` reward: the progress, plus any noise
        self._potential = np.zeros(num_envs)  # phi(s) of the ``progress`` reward; 0 at an episode's start

    def progress(self) -> np.ndarray:
        """Ground-truth task progress [N] in [0, 1] (``pick_progress``): the pinch's distance to the cube,
        and holding it is the pinch at the cube with the fingers closed on it."""
        distance = np.linalg.norm(self.cube_pos - self.ee_pos, axis=1)
        opening = self.gripper_opening[:, 0]
        held = (distance < GRASP_DISTANCE) & (opening > GRASP_OPENING[0]) & (opening < GRASP_OPENING[1])
        return pick_progress(distance, held, self.cube_lift() / self.cfg.lift_height, self._success())

    def step(self, actions: np.ndarray) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(actions)
        self._potential = np.where(terminated | truncated, 0.0, self._phi)
        return obs, reward, terminated, truncated, info

    def _after_physics(self) -> None:
        super()._after_physics()
        self._phi = self._step_progress
        noise = self.cfg.rewards.progress_noise
        if self.cfg.reward == "progress" and noise > 0:
            self._phi = self._step_progress + self.rng.normal(0.0, noise, self.num_envs)

    def _reward(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self.cfg.reward != "progress":
            return super()._reward()
        weights = self.cfg.rewards
        success = self._success().astype(np.float64)
        shaping = weights.progress_lambda * (weights.progress_gamma * self._phi - self._potential)
        return shaping + weights.success * success, {"shaping": shaping, "success": success}

    def _reset_envs(self, ids: np.ndarray) -> None:
        self._potential[ids] = 0.0
        super()._reset_envs(ids)

    def _state(self) -> np.ndarray:
        pinch = self.ee_pos
        cube = self.cube_pos
        return np.concatenate(
            (
                self.joint_pos,
                self.joint_vel,
                self.gripper_opening,
                pinch,
                self.ee_vel,
                cube,
                self.cube_quat,
                cube - pinch,
            ),
            axis=1,
        )
