"""``So101Env``: what the SO-101 tasks share on top of ``BatchedEnv``.

It builds the scene, binds the robot's state, turns actions into servo targets (``control.py``), resets
the arm to its home pose and assembles observations: the task's state vector, plus camera frames when
``cfg.cameras`` names any (then the observation is a dict with ``"state"``). Frames are drawn without
shadows or multisampling unless ``cfg.camera_shadows`` is set.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from striata.envs.backend import BatchedEnv, Obs
from striata.envs.robots.so101 import N_ARM, SO101, TIP_SITE, WRIST_CAMERA, joint_limits
from striata.envs.tasks.so101.config import ObsTerms, So101TaskConfig
from striata.envs.tasks.so101.control import JointTargetControl
from striata.envs.tasks.so101.scene import FRONT_CAMERA, TIP_VEL_SENSOR, build_scene

N_JOINTS = N_ARM + 1
# Config camera names to the model's cameras.
CAMERAS = {"front": FRONT_CAMERA, "wrist": WRIST_CAMERA}


class So101Env(BatchedEnv):
    """N SO-101 envs of one task; subclasses add the task's objects, observations, rewards and resets."""

    observation_terms: ObsTerms

    def __init__(
        self,
        cfg: So101TaskConfig,
        num_envs: int,
        seed: int | None,
        *,
        cube: bool = False,
        target: bool = False,
    ) -> None:
        self.cfg = cfg
        model, self.visual_mesh_report = build_scene(
            cfg.physics_dt,
            cfg.image_size,
            cube=cube,
            target=target,
            visual_meshes=cfg.visual_meshes,
            visual_mesh_faces=cfg.visual_mesh_faces,
        )
        super().__init__(model, num_envs, cfg.decimation, cfg.max_episode_steps, cfg.num_threads, seed)
        self.home = SO101.default_pos
        self.joint_range = joint_limits(model)
        self.controller = JointTargetControl(
            cfg.joint_step, cfg.gripper_step, cfg.gripper_open, self.joint_range
        )
        self._tip = model.site(TIP_SITE).id
        adr = model.sensor(TIP_VEL_SENSOR).adr[0]
        self._tip_vel = slice(adr, adr + 3)
        self.site_xpos = self.batch.bind("site_xpos")
        self.site_xmat = self.batch.bind("site_xmat")
        self.sensordata = self.batch.bind("sensordata")
        self.action_dim = self.controller.action_dim
        self.observation_dim = sum(size for _, size in self.observation_terms)

    # ----------------------------------------------------------------- robot state
    @property
    def joint_pos(self) -> np.ndarray:
        return self.qpos[:, :N_JOINTS]

    @property
    def joint_vel(self) -> np.ndarray:
        return self.qvel[:, :N_JOINTS]

    @property
    def joint_target(self) -> np.ndarray:
        """[N, 6]: the targets the servos were last sent, what the next action's deltas add to. They live
        in the controls themselves, so a snapshot or a restored state carries them."""
        return self.ctrl[:, :N_JOINTS]

    @property
    def tip_pos(self) -> np.ndarray:
        return self.site_xpos[:, self._tip]

    @property
    def tip_rot(self) -> np.ndarray:
        """[N, 3, 3]: the gripper's orientation (columns: closing direction, side, -approach)."""
        return self.site_xmat[:, self._tip].reshape(-1, 3, 3)

    @property
    def tip_vel(self) -> np.ndarray:
        return self.sensordata[:, self._tip_vel]

    # ----------------------------------------------------------------- task hooks
    def _reset_robot(self, ids: np.ndarray) -> None:
        """Arm at home, holding it, gripper open (the base reset zeroed velocities)."""
        self.qpos[ids, :N_JOINTS] = self.home
        self.ctrl[ids, :N_JOINTS] = self.home

    def _apply_actions(self, actions: np.ndarray) -> None:
        self.ctrl[:, :N_JOINTS] = self.controller(actions, self.joint_target)

    def _terminated(self) -> np.ndarray:
        """Both SO-101 tasks end an episode on success (as the Panda tasks do)."""
        return self._success()

    def _reward(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        success = self._success().astype(np.float64)
        if self.cfg.reward == "sparse":
            return success, {"success": success}
        reward, terms = self._dense_reward(success)
        return reward, {**terms, "success": success}

    @abstractmethod
    def _dense_reward(self, success: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The shaped reward [N] and its terms; ``success`` is 0/1 per env."""

    @abstractmethod
    def _state(self) -> np.ndarray:
        """The task's flat state observation [N, observation_dim], in ``observation_terms`` order."""

    def _observe(self, ids: np.ndarray | None = None) -> Obs:
        state = self._state()
        if ids is not None:
            state = state[ids]
        if not self.cfg.cameras:
            return state
        obs: dict[str, np.ndarray] = {"state": state}
        size = self.cfg.image_size
        for name in self.cfg.cameras:
            obs[name] = self.render(CAMERAS[name], size, size, ids=ids, shadows=self.cfg.camera_shadows)
        return obs
