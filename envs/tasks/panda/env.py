"""``PandaEnv``: the Panda on ``TabletopArmEnv``: its scene, controller and gripper.

It maps actions through the configured controller (``control.py``), opens the gripper on reset, and
reads the gripper's opening; the rest (robot state, rewards, observations) is ``TabletopArmEnv``'s.
"""

from __future__ import annotations

import mujoco
import numpy as np

from striata.envs.robots.panda import (
    GRIPPER_DRIVER_JOINTS,
    GRIPPER_DRIVER_RANGE,
    PANDA,
    PINCH_SITE,
    WRIST_CAMERA,
)
from striata.envs.tasks.panda.config import PandaTaskConfig
from striata.envs.tasks.panda.control import (
    N_ARM,
    ArmState,
    Controller,
    EEDeltaControl,
    EndEffectorIK,
    JointPositionControl,
    downward_rotation,
)
from striata.envs.tasks.panda.scene import FRONT_CAMERA, PINCH_VEL_SENSOR, build_scene
from striata.envs.tasks.tabletop.env import TabletopArmEnv

# Config camera names to the model's cameras.
CAMERAS = {"front": FRONT_CAMERA, "wrist": WRIST_CAMERA}


class PandaEnv(TabletopArmEnv):
    """N Panda envs of one task; the end effector is the pinch site."""

    robot = PANDA
    ee_site = PINCH_SITE
    ee_vel_sensor = PINCH_VEL_SENSOR
    obs_cameras = CAMERAS
    cfg: PandaTaskConfig

    def __init__(
        self,
        cfg: PandaTaskConfig,
        num_envs: int,
        seed: int | None,
        *,
        cube: bool = False,
        target: bool = False,
    ) -> None:
        super().__init__(cfg, num_envs, seed, cube=cube, target=target)
        model = self.model
        self.joint_range = model.jnt_range[:N_ARM].copy()
        self._driver_qpos = model.joint(GRIPPER_DRIVER_JOINTS[0]).qposadr[0]
        self.xaxis = self.batch.bind("xaxis")
        self.xanchor = self.batch.bind("xanchor")
        self.controller = self._make_controller(model)
        self.action_dim = self.controller.action_dim

    def _build_model(self, *, cube: bool, target: bool) -> mujoco.MjModel:
        return build_scene(self.cfg.physics_dt, self.cfg.image_size, cube=cube, target=target)

    def _make_controller(self, model: mujoco.MjModel) -> Controller:
        cfg = self.cfg
        if cfg.control == "joint_position":
            return JointPositionControl(cfg.joint_step, self.joint_range)
        data = mujoco.MjData(model)
        data.qpos[:N_ARM] = self.home
        mujoco.mj_kinematics(model, data)
        ik = EndEffectorIK(
            target_rot=downward_rotation(data.site_xmat[self._ee].reshape(3, 3)),
            home=self.home,
            joint_range=self.joint_range,
            damping=cfg.ik.damping,
            orientation_weight=cfg.ik.orientation_weight,
            nullspace_gain=cfg.ik.nullspace_gain,
            max_joint_step=cfg.ik.max_joint_step,
        )
        workspace = cfg.workspace
        return EEDeltaControl(ik, cfg.ee_step, np.array(workspace.low), np.array(workspace.high))

    # ----------------------------------------------------------------- robot state
    @property
    def gripper_opening(self) -> np.ndarray:
        """[N, 1]: 1 fully open .. 0 fully closed (from the driver joint)."""
        low, high = GRIPPER_DRIVER_RANGE
        return 1.0 - (self.qpos[:, self._driver_qpos : self._driver_qpos + 1] - low) / (high - low)

    def arm_state(self) -> ArmState:
        return ArmState(
            q=self.joint_pos,
            site_pos=self.ee_pos,
            site_rot=self.ee_rot,
            axes=self.xaxis[:, :N_ARM],
            anchors=self.xanchor[:, :N_ARM],
        )

    # ----------------------------------------------------------------- task hooks
    def _reset_robot(self, ids: np.ndarray) -> None:
        """Arm at home, holding it, gripper open."""
        super()._reset_robot(ids)
        self.ctrl[ids, N_ARM] = 0.0

    def _apply_actions(self, actions: np.ndarray) -> None:
        self.ctrl[:] = self.controller(np.clip(actions, -1.0, 1.0), self.arm_state())
