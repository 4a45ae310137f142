"""``so101_pick``: the SO-101 lifts a 2.5 cm cube from a random place on the table in front of it.

Success: the cube is ``lift_height`` (5 cm) above where it started; the episode then terminates.
Rewards: ``sparse`` is success as 1/0; ``dense`` adds reaching (-tanh(10 |cube - tip|)) and lifting
(clip(lift / lift_height, 0, 1) - 1) penalties, which vanish at the goal, to a success bonus, weighted by
``cfg.rewards`` (as ``panda_pick``). The task's logic is ``PickTask``'s.
Observation: ``PICK_OBS_TERMS`` (see ``config.py``), plus camera frames when configured.
"""

from __future__ import annotations

import numpy as np

from striata.envs.tasks.so101.config import PICK_OBS_TERMS, So101PickConfig
from striata.envs.tasks.so101.env import So101Env
from striata.envs.tasks.so101.scene import CUBE, CUBE_HALF_SIZE
from striata.envs.tasks.tabletop.pick import PickTask


class So101PickEnv(PickTask, So101Env):
    observation_terms = PICK_OBS_TERMS
    cube_body = CUBE
    cube_half_size = CUBE_HALF_SIZE
    cfg: So101PickConfig

    def _state(self) -> np.ndarray:
        tip = self.ee_pos
        cube = self.cube_pos
        return np.concatenate(
            (self.joint_pos, self.joint_vel, self.joint_target, tip, cube, self.cube_quat, cube - tip), axis=1
        )
