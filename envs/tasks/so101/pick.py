"""``so101_pick``: the SO-101 lifts a 2.5 cm cube from a random place on the table in front of it.

Success: the cube is ``lift_height`` (5 cm) above where it started; the episode then terminates.
Rewards: ``sparse`` is success as 1/0; ``dense`` adds reaching (-tanh(10 |cube - tip|)) and lifting
(clip(lift / lift_height, 0, 1) - 1) penalties, which vanish at the goal, to a success bonus, weighted by
``cfg.rewards`` (as ``panda_pick``). The task's logic is ``PickTask``'s.
Observation: ``PICK_OBS_TERMS`` (see ``config.py``), plus camera frames when configured.
Progress: ``info["progress"]`` in [0, 1] is ground truth for reward models (``PickTask``'s scale; the
SO-101 holds the cube with its tip at the cube and the jaw closed on it, 0.27-0.30 rad measured).
"""

from __future__ import annotations

import numpy as np

from striata.envs.tasks.so101.config import PICK_OBS_TERMS, So101PickConfig
from striata.envs.tasks.so101.env import So101Env
from striata.envs.tasks.so101.scene import CUBE, CUBE_HALF_SIZE
from striata.envs.tasks.tabletop.pick import PickTask, pick_progress

GRASP_DISTANCE = 0.02  # m: tip within this of the cube centre (about 0.007 while holding it)
GRASP_ANGLE = (0.1, 0.5)  # rad of the gripper joint closed on the 2.5 cm cube; below: closed on air


class So101PickEnv(PickTask, So101Env):
    observation_terms = PICK_OBS_TERMS
    cube_body = CUBE
    cube_half_size = CUBE_HALF_SIZE
    cfg: So101PickConfig

    def progress(self) -> np.ndarray:
        """Ground-truth task progress [N] in [0, 1] (``pick_progress``)."""
        distance = np.linalg.norm(self.cube_pos - self.ee_pos, axis=1)
        angle = self.joint_pos[:, -1]
        held = (distance < GRASP_DISTANCE) & (angle > GRASP_ANGLE[0]) & (angle < GRASP_ANGLE[1])
        return pick_progress(distance, held, self.cube_lift() / self.cfg.lift_height, self._success())

    def _state(self) -> np.ndarray:
        tip = self.ee_pos
        cube = self.cube_pos
        return np.concatenate(
            (self.joint_pos, self.joint_vel, self.joint_target, tip, cube, self.cube_quat, cube - tip), axis=1
        )
