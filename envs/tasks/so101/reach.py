"""``so101_reach``: the SO-101 brings its tip (the grasp point between the jaws) to a random target.

Success: tip within ``success_distance`` (2 cm) of the target; the episode then terminates.
Rewards: ``dense`` is -tanh(k d) with k = ``distance_scale`` (a penalty that vanishes at the target),
``sparse`` is success as 1/0.
Observation: ``REACH_OBS_TERMS`` (see ``config.py``), plus camera frames when configured; the target is
drawn as a green sphere (a mocap body without collisions).
"""

from __future__ import annotations

import numpy as np

from striata.envs.tasks.so101.config import REACH_OBS_TERMS, So101ReachConfig
from striata.envs.tasks.so101.env import So101Env


class So101ReachEnv(So101Env):
    observation_terms = REACH_OBS_TERMS
    cfg: So101ReachConfig

    def __init__(self, cfg: So101ReachConfig, num_envs: int, seed: int | None = None) -> None:
        super().__init__(cfg, num_envs, seed, target=True)
        self.target = np.zeros((num_envs, 3))
        self.mocap_pos = self.batch.bind("mocap_pos")

    def distance(self) -> np.ndarray:
        return np.linalg.norm(self.target - self.tip_pos, axis=1)

    def _reset_envs(self, ids: np.ndarray) -> None:
        self._reset_robot(ids)
        box = self.cfg.targets
        self.target[ids] = self.rng.uniform(box.low, box.high, (len(ids), 3))
        self.mocap_pos[ids, 0] = self.target[ids]

    def _state(self) -> np.ndarray:
        tip = self.tip_pos
        return np.concatenate(
            (self.joint_pos, self.joint_vel, self.joint_target, tip, self.target, self.target - tip), axis=1
        )

    def _success(self) -> np.ndarray:
        return self.distance() < self.cfg.success_distance

    def _dense_reward(self, success: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # A penalty that vanishes at the target: success ends the episode, so a positive reward per
        # step would pay more for hovering near the target than for reaching it.
        reach = -np.tanh(self.cfg.distance_scale * self.distance())
        return reach, {"reach": reach}
