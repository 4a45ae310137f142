"""``PandaEnv``: what the Panda tasks share on top of ``BatchedEnv``.

It builds the scene, binds the robot's state, maps actions through the configured controller
(``control.py``), resets the arm to its home pose and assembles observations: the task's state vector,
plus camera frames when ``cfg.cameras`` names any (then the observation is a dict with ``"state"``).
"""

from __future__ import annotations

from abc import abstractmethod

import mujoco
import numpy as np

from striata.envs.backend import BatchedEnv, Obs
from striata.envs.robots.panda import (
    GRIPPER_DRIVER_JOINTS,
    GRIPPER_DRIVER_RANGE,
    PANDA,
    PINCH_SITE,
    WRIST_CAMERA,
)
from striata.envs.tasks.panda.config import ObsTerms, PandaTaskConfig
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

# Config camera names to the model's cameras.
CAMERAS = {"front": FRONT_CAMERA, "wrist": WRIST_CAMERA}


class PandaEnv(BatchedEnv):
    """N Panda envs of one task; subclasses add the task's objects, observations, rewards and resets."""

    observation_terms: ObsTerms

    def __init__(
        self,
        cfg: PandaTaskConfig,
        num_envs: int,
        seed: int | None,
        *,
        block: bool = False,
        target: bool = False,
    ) -> None:
        self.cfg = cfg
        model = build_scene(cfg.physics_dt, cfg.image_size, block=block, target=target)
        super().__init__(model, num_envs, cfg.decimation, cfg.max_episode_steps, cfg.num_threads, seed)
        self.home = PANDA.default_pos
        self.joint_range = model.jnt_range[:N_ARM].copy()
        self._pinch = model.site(PINCH_SITE).id
        self._driver_qpos = model.joint(GRIPPER_DRIVER_JOINTS[0]).qposadr[0]
        adr = model.sensor(PINCH_VEL_SENSOR).adr[0]
        self._pinch_vel = slice(adr, adr + 3)
        self.site_xpos = self.batch.bind("site_xpos")
        self.site_xmat = self.batch.bind("site_xmat")
        self.xaxis = self.batch.bind("xaxis")
        self.xanchor = self.batch.bind("xanchor")
        self.sensordata = self.batch.bind("sensordata")
        self.controller = self._make_controller(model)
        self.action_dim = self.controller.action_dim
        self.observation_dim = sum(size for _, size in self.observation_terms)

    def _make_controller(self, model: mujoco.MjModel) -> Controller:
        cfg = self.cfg
        if cfg.control == "joint_position":
            return JointPositionControl(cfg.joint_step, self.joint_range)
        data = mujoco.MjData(model)
        data.qpos[:N_ARM] = self.home
        mujoco.mj_kinematics(model, data)
        ik = EndEffectorIK(
            target_rot=downward_rotation(data.site_xmat[self._pinch].reshape(3, 3)),
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
    def joint_pos(self) -> np.ndarray:
        return self.qpos[:, :N_ARM]

    @property
    def joint_vel(self) -> np.ndarray:
        return self.qvel[:, :N_ARM]

    @property
    def pinch_pos(self) -> np.ndarray:
        return self.site_xpos[:, self._pinch]

    @property
    def pinch_vel(self) -> np.ndarray:
        return self.sensordata[:, self._pinch_vel]

    @property
    def gripper_opening(self) -> np.ndarray:
        """[N, 1]: 1 fully open .. 0 fully closed (from the driver joint)."""
        low, high = GRIPPER_DRIVER_RANGE
        return 1.0 - (self.qpos[:, self._driver_qpos : self._driver_qpos + 1] - low) / (high - low)

    def arm_state(self) -> ArmState:
        return ArmState(
            q=self.joint_pos,
            site_pos=self.pinch_pos,
            site_rot=self.site_xmat[:, self._pinch].reshape(-1, 3, 3),
            axes=self.xaxis[:, :N_ARM],
            anchors=self.xanchor[:, :N_ARM],
        )

    # ----------------------------------------------------------------- task hooks
    def _reset_robot(self, ids: np.ndarray) -> None:
        """Arm at home, holding it, gripper open (the base reset zeroed velocities)."""
        self.qpos[ids, :N_ARM] = self.home
        self.ctrl[ids, :N_ARM] = self.home
        self.ctrl[ids, N_ARM] = 0.0

    def _apply_actions(self, actions: np.ndarray) -> None:
        self.ctrl[:] = self.controller(np.clip(actions, -1.0, 1.0), self.arm_state())

    def _terminated(self) -> np.ndarray:
        """Both Panda tasks end an episode on success (as gym-hil does)."""
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
            obs[name] = self.render(CAMERAS[name], size, size, ids=ids)
        return obs
