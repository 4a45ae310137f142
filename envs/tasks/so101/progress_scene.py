"""so101_pick's progress scene: the rollouts a reward-model data set of the SO-101 pick is made of.

``So101PickProgressScene`` (registered as the task's ``progress_scene``) gives the data-set builder an
env whose episodes go on after success (held cubes, drops and put-downs after a lift are in the data),
the task's two cameras (``front``, ``wrist``: what a pixel policy and its reward model see), the success
boundary (cube lift within ``BOUNDARY_M`` of the task's success lift) and ``MixedSo101PickPolicy``.

``MixedSo101PickPolicy`` wraps the scripted IK pick per env and changes what it does so that the data
set holds the negatives RoboReward and VLAC train on, as panda_pick's does: misses (grasps beside the
cube), drops and put-downs (progress going back down), stalls (no motion from some step on) and random
flailing; ``learned`` envs run a policy RL trained (with action noise). ``kinds`` names the behaviour of
every env.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from striata.envs.progress_scene import RolloutPolicy
from striata.envs.robots.so101 import N_ARM
from striata.envs.tasks.so101.config import PICK_OBS_TERMS, So101PickConfig, obs_slices
from striata.envs.tasks.so101.env import CAMERAS
from striata.envs.tasks.so101.pick import So101PickEnv
from striata.envs.tasks.so101.scene import CUBE_HALF_SIZE
from striata.envs.tasks.so101.scripted import ScriptedPickPolicy, pointing_down, yaw_of
from striata.envs.tasks.tabletop.scripted import CLOSE, OPEN

KINDS = ("scripted", "drop", "put_down", "miss", "stall", "random", "learned")
BOUNDARY_M = 0.01  # boundary frames: cube lift within this of the task's success lift
PUT_DOWN_CLEARANCE = 0.004  # m: a put-down lets go with the cube this close to resting on the table
_OBS = obs_slices(PICK_OBS_TERMS)


class RolloutSo101PickEnv(So101PickEnv):
    """so101_pick whose episodes go on after success, so the data set sees what happens after a lift."""

    def _terminated(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)


class MixedSo101PickPolicy:
    """One behaviour per env (``kinds[i]``), vectorised over the batched env's N envs."""

    def __init__(
        self,
        env: So101PickEnv,
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
        radius = np.where(self.kinds == "miss", self.rng.uniform(0.025, 0.045, n), 0.0)
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
        actions = self.scripted(seen)
        motion_noise = self.noise[:, None] * self.rng.standard_normal((self.num_envs, N_ARM))
        actions[:, :N_ARM] = np.clip(actions[:, :N_ARM] + motion_noise, -1.0, 1.0)

        self.lift_steps += self.scripted.phase == ScriptedPickPolicy.LIFT
        release = np.isin(self.kinds, ("drop", "put_down")) & (self.lift_steps >= self.release_after)
        self.released |= release
        drop = self.released & (self.kinds == "drop")
        actions[drop, :N_ARM] = 0.0
        actions[drop, N_ARM] = OPEN
        put_down = self.released & (self.kinds == "put_down")
        if put_down.any():
            actions[put_down] = self._put_down(state[put_down])

        stall = (self.kinds == "stall") & (self.step_count >= self.freeze_at)
        self.frozen_gripper = np.where(stall, self.frozen_gripper, actions[:, N_ARM])
        actions[stall] = 0.0
        actions[stall, N_ARM] = self.frozen_gripper[stall]

        rand = self.kinds == "random"
        actions[rand] = self.rng.uniform(-1.0, 1.0, (int(rand.sum()), self.action_dim))

        learned = self.kinds == "learned"
        if learned.any():
            acted = self.learned(state[learned])
            noise = self.noise[learned, None] * self.rng.standard_normal(acted.shape)
            actions[learned] = np.clip(acted + noise, -1.0, 1.0)
        self.step_count += 1
        return actions

    def _put_down(self, state: np.ndarray) -> np.ndarray:
        """Lower the held cube back onto the table, then let go."""
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
        return np.abs(env.cube_lift() - env.cfg.lift_height) < BOUNDARY_M
