"""panda_pick's progress scene: the rollouts a reward-model data set of the pick is made of.

``PickProgressScene`` (registered as the task's ``progress_scene``) gives the data-set builder an env
whose episodes go on after success (so held cubes, drops and put-downs after a lift are in the data),
the cameras framing the pick (the env's own, plus the ``workspace`` and ``side`` views of the pick
area), the success boundary (cube lift within ``BOUNDARY_M`` of the task's success lift) and
``MixedPickPolicy``.

``MixedPickPolicy`` wraps ``ScriptedPickPolicy`` per env and changes what it does so that the data set
holds the negatives RoboReward and VLAC train on: misses (grasps beside the cube), drops and put-downs
(progress going back down), stalls (no motion from some step on) and random flailing. ``learned`` envs
run a policy that RL trained (with action noise): the states a learner visits, which no script
reaches, so a reward model shaping training has seen them. ``kinds`` names the behaviour of every env.
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

KINDS = ("scripted", "drop", "put_down", "miss", "stall", "random", "learned")
BOUNDARY_M = 0.01  # boundary frames: cube lift within this of the task's success lift
_OBS = obs_slices(PICK_OBS_TERMS)
# Data-set camera names to the scene's cameras: the env's own, plus the two framed on the pick area.
SCENE_CAMERAS: Mapping[str, str] = MappingProxyType(
    {**CAMERAS, "workspace": WORKSPACE_CAMERA, "side": SIDE_CAMERA}
)


class RolloutPickEnv(PandaPickEnv):
    """panda_pick whose episodes go on after success, so the data set sees what happens after a lift."""

    def _terminated(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)


class MixedPickPolicy:
    """One behaviour per env (``kinds[i]``), vectorised over the batched env's N envs."""

    def __init__(
        self,
        env: PandaPickEnv,
        kinds: list[str],
        noise: tuple[float, float],
        rng: np.random.Generator,
        learned: RolloutPolicy | None = None,
    ) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown or len(kinds) != env.num_envs:
            raise ValueError(f"kinds: need {env.num_envs} of {KINDS}, got {kinds}")
        if "learned" in kinds and learned is None:
            raise ValueError("kinds: 'learned' envs need a learned policy")
        self.learned = learned
        self.kinds = np.array(kinds)
        self.rng = rng
        self.num_envs = env.num_envs
        self.action_dim = env.action_dim
        self.noise_range = noise
        self.scripted = ScriptedPickPolicy.for_env(env, seed=int(rng.integers(1 << 31)))
        self.reset()

    def reset(self) -> None:
        """New episode in every env: fresh noise, miss offsets, release and freeze steps."""
        n = self.num_envs
        self.scripted.reset()
        self.noise = self.rng.uniform(*self.noise_range, n)
        angle = self.rng.uniform(0, 2 * np.pi, n)
        radius = np.where(self.kinds == "miss", self.rng.uniform(0.035, 0.06, n), 0.0)
        self.offset = np.stack((radius * np.cos(angle), radius * np.sin(angle), np.zeros(n)), axis=1)
        self.lift_steps = np.zeros(n, dtype=np.int64)
        self.release_after = self.rng.integers(2, 7, n)  # lift steps before a drop / put-down
        self.released = np.zeros(n, dtype=bool)
        self.freeze_at = self.rng.integers(3, 30, n)
        self.step_count = 0
        self.frozen_gripper = np.full(n, OPEN)

    def __call__(self, state: np.ndarray) -> np.ndarray:
        seen = state.copy()
        seen[:, _OBS["cube_pos"]] += self.offset  # a miss aims beside the cube
        motion_noise = self.noise[:, None] * self.rng.standard_normal((self.num_envs, 3))
        actions = self.scripted(seen)
        actions[:, :3] = np.clip(actions[:, :3] + motion_noise, -1.0, 1.0)

        lifting = self.scripted.phase == ScriptedPickPolicy.LIFT
        self.lift_steps += lifting
        release = np.isin(self.kinds, ("drop", "put_down")) & (self.lift_steps >= self.release_after)
        self.released |= release
        drop = self.released & (self.kinds == "drop")
        actions[drop] = (0.0, 0.0, 0.0, OPEN)
        put_down = self.released & (self.kinds == "put_down")
        height = state[:, _OBS["cube_pos"]][:, 2]
        lowered = height < 0.03
        actions[put_down] = np.where(lowered[put_down, None], (0.0, 0.0, 0.0, OPEN), (0.0, 0.0, -0.7, CLOSE))

        stall = (self.kinds == "stall") & (self.step_count >= self.freeze_at)
        self.frozen_gripper = np.where(stall, self.frozen_gripper, actions[:, 3])
        actions[stall] = 0.0
        actions[stall, 3] = self.frozen_gripper[stall]

        rand = self.kinds == "random"
        actions[rand] = self.rng.uniform(-1.0, 1.0, (int(rand.sum()), self.action_dim))

        learned = self.kinds == "learned"
        if learned.any():
            acted = self.learned(state[learned])
            noise = self.noise[learned, None] * self.rng.standard_normal(acted.shape)
            actions[learned] = np.clip(acted + noise, -1.0, 1.0)
        self.step_count += 1
        return actions


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
    ) -> MixedPickPolicy:
        return MixedPickPolicy(env, kinds, noise, rng, learned)

    def near_success(self, env: RolloutPickEnv) -> np.ndarray:
        return np.abs(env.cube_lift() - env.cfg.lift_height) < BOUNDARY_M
