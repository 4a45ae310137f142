"""panda_pick's progress scene: the rollouts a reward-model data set of the pick is made of.

``PickProgressScene`` (registered as the task's ``progress_scene``) gives the data-set builder an env
whose episodes go on after success (so held cubes, drops and put-downs after a lift are in the data),
the cameras framing the pick (the env's own, plus the ``workspace`` and ``side`` views of the pick
area), the success boundary (``striata.envs.tasks.tabletop.progress_scene.near_success``) and
``PandaMixedPickPolicy``: the arms' mixed behaviours (scripted picks, drops, put-downs, misses, stalls,
random flailing, learned policies; ``tabletop.progress_scene.MixedPickPolicy``) around the Panda's
scripted pick, whose put-down lowers the end effector.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from striata.envs.progress_scene import RolloutPolicy
from striata.envs.tasks.panda.config import PICK_OBS_TERMS, PandaPickConfig, obs_slices
from striata.envs.tasks.panda.env import CAMERAS
from striata.envs.tasks.panda.pick import PandaPickEnv
from striata.envs.tasks.panda.scene import SIDE_CAMERA, WORKSPACE_CAMERA
from striata.envs.tasks.panda.scripted import CLOSE, OPEN, ScriptedPickPolicy
from striata.envs.tasks.tabletop.progress_scene import KINDS, MixedPickPolicy, near_success

_OBS = obs_slices(PICK_OBS_TERMS)
# Data-set camera names to the scene's cameras: the env's own, plus the two framed on the pick area.
SCENE_CAMERAS: Mapping[str, str] = MappingProxyType(
    {**CAMERAS, "workspace": WORKSPACE_CAMERA, "side": SIDE_CAMERA}
)


class RolloutPickEnv(PandaPickEnv):
    """panda_pick whose episodes go on after success, so the data set sees what happens after a lift."""

    def _terminated(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)


class PandaMixedPickPolicy(MixedPickPolicy):
    """``MixedPickPolicy`` around the Panda's scripted pick (end-effector moves)."""

    scripted_policy = ScriptedPickPolicy
    cube_pos = _OBS["cube_pos"]
    miss_radius = (0.035, 0.06)

    def _put_down(self, state: np.ndarray) -> np.ndarray:
        lowered = state[:, _OBS["cube_pos"]][:, 2] < 0.03
        return np.where(lowered[:, None], (0.0, 0.0, 0.0, OPEN), (0.0, 0.0, -0.7, CLOSE))


class PickProgressScene:
    """panda_pick as a ``striata.envs.progress_scene.ProgressScene`` (the task registry builds one)."""

    cameras: Mapping[str, str] = SCENE_CAMERAS
    kinds: tuple[str, ...] = KINDS

    def make_env(self, episode_steps: int, num_envs: int, seed: int) -> RolloutPickEnv:
        # One step more than the episode, at 10 Hz control, so no rollout step is a time-out reset.
        cfg = PandaPickConfig(episode_length_s=(episode_steps + 1) * 0.1, num_threads=1)
        return RolloutPickEnv(cfg, num_envs, seed=seed)

    def make_policy(
        self,
        env: RolloutPickEnv,
        kinds: list[str],
        noise: tuple[float, float],
        rng: np.random.Generator,
        learned: RolloutPolicy | None,
    ) -> PandaMixedPickPolicy:
        return PandaMixedPickPolicy(env, kinds, noise, rng, learned)

    def near_success(self, env: RolloutPickEnv) -> np.ndarray:
        return near_success(env)
