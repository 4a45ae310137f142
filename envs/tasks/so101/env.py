"""``So101Env``: the SO-101 on ``TabletopArmEnv``: its scene (decimated visual meshes), servo targets.

It turns actions into servo targets (``control.py``) and keeps them in the controls, where the state
observation reads them (``joint_target``); frames are drawn without shadows or multisampling unless
``cfg.camera_shadows`` is set. The rest (robot state, rewards, observations) is ``TabletopArmEnv``'s.
"""

from __future__ import annotations

import mujoco
import numpy as np

from striata.envs.backend import Obs
from striata.envs.robots.so101 import SO101, TIP_SITE, WRIST_CAMERA, joint_limits
from striata.envs.tasks.so101.config import PROPRIO_OBS_TERMS, So101TaskConfig
from striata.envs.tasks.so101.control import JointTargetControl
from striata.envs.tasks.so101.scene import FRONT_CAMERA, TIP_VEL_SENSOR, build_scene
from striata.envs.tasks.tabletop.config import ObsTerms
from striata.envs.tasks.tabletop.env import TabletopArmEnv

# Config camera names to the model's cameras.
CAMERAS = {"front": FRONT_CAMERA, "wrist": WRIST_CAMERA}


class So101Env(TabletopArmEnv):
    """N SO-101 envs of one task; the end effector is the tip (the grasp point between the jaws)."""

    robot = SO101
    ee_site = TIP_SITE
    ee_vel_sensor = TIP_VEL_SENSOR
    obs_cameras = CAMERAS
    cfg: So101TaskConfig

    def __init__(
        self,
        cfg: So101TaskConfig,
        num_envs: int,
        seed: int | None,
        *,
        cube: bool = False,
        target: bool = False,
    ) -> None:
        super().__init__(cfg, num_envs, seed, cube=cube, target=target)
        self.joint_range = joint_limits(self.model)
        self.controller = JointTargetControl(
            cfg.joint_step, cfg.gripper_step, cfg.gripper_open, self.joint_range
        )
        self.action_dim = self.controller.action_dim

    def _build_model(self, *, cube: bool, target: bool) -> mujoco.MjModel:
        cfg = self.cfg
        model, self.visual_mesh_report = build_scene(
            cfg.physics_dt,
            cfg.image_size,
            cube=cube,
            target=target,
            visual_meshes=cfg.visual_meshes,
            visual_mesh_faces=cfg.visual_mesh_faces,
        )
        return model

    # ----------------------------------------------------------------- robot state
    @property
    def joint_target(self) -> np.ndarray:
        """[N, 6]: the targets the servos were last sent, what the next action's deltas add to. They live
        in the controls themselves, so a snapshot or a restored state carries them."""
        return self.ctrl[:, : self.n_joints]

    @property
    def camera_shadows(self) -> bool:
        return self.cfg.camera_shadows

    @property
    def observation_layouts(self) -> dict[str, ObsTerms]:
        """The terms of each state vector of the observation: ``state``, and with cameras ``proprio``."""
        layouts = {"state": self.observation_terms}
        if self.cfg.cameras:
            layouts["proprio"] = PROPRIO_OBS_TERMS
        return layouts

    def _observe(self, ids: np.ndarray | None = None) -> Obs:
        obs = super()._observe(ids)
        if isinstance(obs, dict):
            obs["proprio"] = obs["state"][:, : sum(size for _, size in PROPRIO_OBS_TERMS)]
        return obs

    # ----------------------------------------------------------------- task hooks
    def _apply_actions(self, actions: np.ndarray) -> None:
        self.ctrl[:, : self.n_joints] = self.controller(actions, self.joint_target)
