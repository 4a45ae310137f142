"""``ReachTask``: an arm brings its end effector to a random target in a box (a quick learning check).

Success: the end effector within ``cfg.success_distance`` of the target; the episode then terminates.
Rewards: ``dense`` is -tanh(k d) with k = ``distance_scale`` (a penalty that vanishes at the target),
``sparse`` is success as 1/0. The target is drawn as a green sphere (a mocap body without collisions).
Each robot's reach env combines this with its ``TabletopArmEnv`` and lays out the state observation.
"""

from __future__ import annotations

import numpy as np

from striata.envs.tasks.tabletop.config import ArmTaskConfig
from striata.envs.tasks.tabletop.env import TabletopArmEnv


class ReachTask(TabletopArmEnv):
    """The reach's target, success and dense reward; ``class XReachEnv(ReachTask, XEnv)`` adds the robot.

    Its config is the robot's task config plus ``targets`` (a ``Box``) and ``success_distance`` (m).
    """

    def __init__(self, cfg: ArmTaskConfig, num_envs: int, seed: int | None = None) -> None:
        super().__init__(cfg, num_envs, seed, target=True)
        self.target = np.zeros((num_envs, 3))
        self.mocap_pos = self.batch.bind("mocap_pos")

    @property
    def distance_scale(self) -> float:
        """k of the dense reward -tanh(k d) (1/m)."""
        return 10.0

    def distance(self) -> np.ndarray:
        return np.linalg.norm(self.target - self.ee_pos, axis=1)

    def _reset_envs(self, ids: np.ndarray) -> None:
        self._reset_robot(ids)
        box = self.cfg.targets
        self.target[ids] = self.rng.uniform(box.low, box.high, (len(ids), 3))
        self.mocap_pos[ids, 0] = self.target[ids]

    def _success(self) -> np.ndarray:
        return self.distance() < self.cfg.success_distance

    def _dense_reward(self, success: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # A penalty that vanishes at the target: success ends the episode, so a positive reward per
        # step would pay more for hovering near the target than for reaching it.
        reach = -np.tanh(self.distance_scale * self.distance())
        return reach, {"reach": reach}
