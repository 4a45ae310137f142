"""``panda_reach``: the Panda brings its pinch site to a random target in a box (a quick learning check).

Success: pinch within ``success_distance`` (3 cm) of the target; the episode then terminates.
Rewards: ``dense`` is -tanh(10 d) (a penalty that vanishes at the target), ``sparse`` is success as 1/0.
Observation: ``REACH_OBS_TERMS`` (see ``config.py``), plus camera frames when configured; the target
is drawn as a green sphere (a mocap body without collisions). The task's logic is ``ReachTask``'s.
"""

from __future__ import annotations

import numpy as np

from striata.envs.tasks.panda.config import REACH_OBS_TERMS, PandaReachConfig
from striata.envs.tasks.panda.env import PandaEnv
from striata.envs.tasks.tabletop.reach import ReachTask


class PandaReachEnv(ReachTask, PandaEnv):
    observation_terms = REACH_OBS_TERMS
    cfg: PandaReachConfig

    def _state(self) -> np.ndarray:
        pinch = self.ee_pos
        return np.concatenate(
            (self.joint_pos, self.joint_vel, pinch, self.target, self.target - pinch), axis=1
        )
