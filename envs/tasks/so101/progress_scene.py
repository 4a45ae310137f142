"""so101_pick's progress scene: the rollouts a reward-model data set of the SO-101 pick is made of.

``So101PickProgressScene`` (registered as the task's ``progress_scene``) gives the data-set builder an
env whose episodes go on after success (held cubes, drops and put-downs after a lift are in the data),
the task's two cameras (``front``, ``wrist``: what a pixel policy and its reward model see), the success
boundary (``tabletop.progress_scene.near_success``) and ``MixedSo101PickPolicy``.

``MixedSo101PickPolicy``: the arms' mixed behaviours (``tabletop.progress_scene.MixedPickPolicy``)
around the SO-101's scripted IK pick, whose put-down lowers the tip by IK to the cube's resting height,
stops and opens the jaw. Near the table the opening jaw can catch on it, and then the cube stays held
on the table (progress 0.6) instead of released (about 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from striata.envs.progress_scene import RolloutPolicy
from striata.envs.tasks.so101.config import PICK_OBS_TERMS, So101PickConfig, obs_slices
from striata.envs.tasks.so101.env import CAMERAS
from striata.envs.tasks.so101.pick import So101PickEnv
from striata.envs.tasks.so101.scene import CUBE_HALF_SIZE
from striata.envs.tasks.so101.scripted import ScriptedPickPolicy, pointing_down, yaw_of
from striata.envs.tasks.tabletop.progress_scene import KINDS, MixedPickPolicy, near_success
from striata.envs.tasks.tabletop.scripted import CLOSE, OPEN

_OBS = obs_slices(PICK_OBS_TERMS)


class RolloutSo101PickEnv(So101PickEnv):
    """so101_pick whose episodes go on after success, so the data set sees what happens after a lift."""

    def _terminated(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)


class MixedSo101PickPolicy(MixedPickPolicy):
    """``MixedPickPolicy`` around the SO-101's scripted IK pick (servo-target moves)."""

    scripted_policy = ScriptedPickPolicy
    cube_pos = _OBS["cube_pos"]
    miss_radius = (0.025, 0.045)

    def _put_down(self, state: np.ndarray) -> np.ndarray:
        """Lower the held cube back onto the table, then stop and open the jaw."""
        cube = state[:, _OBS["cube_pos"]]
        goal = state[:, _OBS["tip_pos"]].copy()
        goal[:, 2] = CUBE_HALF_SIZE
        arm = self.scripted.arm_action(
            state[:, _OBS["joint_target"]], goal, pointing_down(yaw_of(state[:, _OBS["cube_quat"]]))
        )
        lowered = cube[:, 2] < 2 * CUBE_HALF_SIZE
        arm[lowered] = 0.0
        gripper = np.where(lowered, OPEN, CLOSE)[:, None]
        return np.concatenate((arm, gripper), axis=1)


class So101PickProgressScene:
    """so101_pick as a ``striata.envs.progress_scene.ProgressScene`` (the task registry builds one)."""

    cameras: Mapping[str, str] = MappingProxyType(dict(CAMERAS))
    kinds: tuple[str, ...] = KINDS

    def make_env(self, episode_steps: int, num_envs: int, seed: int) -> RolloutSo101PickEnv:
        cfg = So101PickConfig(num_threads=1)
        # One step more than the episode, so no rollout step is a time-out reset.
        cfg = cfg.model_copy(update={"episode_length_s": (episode_steps + 1) * cfg.control_dt})
        return RolloutSo101PickEnv(cfg, num_envs, seed=seed)

    def make_policy(
        self,
        env: RolloutSo101PickEnv,
        kinds: list[str],
        noise: tuple[float, float],
        rng: np.random.Generator,
        learned: RolloutPolicy | None,
    ) -> MixedSo101PickPolicy:
        return MixedSo101PickPolicy(env, kinds, noise, rng, learned)

    def near_success(self, env: RolloutSo101PickEnv) -> np.ndarray:
        return near_success(env)
