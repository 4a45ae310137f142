"""``so101_reach``: the SO-101 brings its tip (the grasp point between the jaws) to a random target.

Success: tip within ``success_distance`` (2 cm) of the target; the episode then terminates.
Rewards: ``dense`` is -tanh(k d) with k = ``distance_scale`` (a penalty that vanishes at the target),
``sparse`` is success as 1/0.
Observation: ``REACH_OBS_TERMS`` (see ``config.py``), plus camera frames when configured; the target is
drawn as a green sphere (a mocap body without collisions). The task's logic is ``ReachTask``'s.
"""

from __future__ import annotations

import numpy as np

from striata.envs.tasks.so101.config import REACH_OBS_TERMS, So101ReachConfig
from striata.envs.tasks.so101.env import So101Env
from striata.envs.tasks.tabletop.reach import ReachTask


class So101ReachEnv(ReachTask, So101Env):
    observation_terms = REACH_OBS_TERMS
    cfg: So101ReachConfig

    @property
    def distance_scale(self) -> float:
        return self.cfg.distance_scale

    def _state(self) -> np.ndarray:
        tip = self.ee_pos
        return np.concatenate(
            (self.joint_pos, self.joint_vel, self.joint_target, tip, self.target, self.target - tip), axis=1
        )
