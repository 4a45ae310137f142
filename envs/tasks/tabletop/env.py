"""``TabletopArmEnv``: what every tabletop arm task shares on top of ``BatchedEnv``.

It builds the robot's scene (``_build_model``), binds the end effector's state (the site the tasks
measure: the Panda's pinch site, the SO-101's tip), resets the arm to its home pose, ends episodes on
success, turns success and the task's shaped terms into the ``sparse`` or ``dense`` reward, and assembles
observations: the task's state vector, plus camera frames when ``cfg.cameras`` names any (then the
observation is a dict with ``"state"``). Each robot's env adds its controller and what its state has
beyond this; the tasks (``reach``, ``pick``) add their objects, success and shaping.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

import mujoco
import numpy as np

from striata.envs.backend import BatchedEnv, Obs
from striata.envs.robots.actuators import RobotConfig
from striata.envs.tasks.tabletop.config import ArmTaskConfig, ObsTerms


class TabletopArmEnv(BatchedEnv):
    """N envs of one arm and one task. A robot's subclass sets the class attributes and builds the model;
    the task's adds its objects, observations, success and shaped reward."""

    robot: RobotConfig  # the arm's joints come first in qpos, qvel and ctrl, in this order
    ee_site: str
    ee_vel_sensor: str  # the site's linear velocity in the world frame (``compile_scene`` adds it)
    obs_cameras: Mapping[str, str]  # config camera names to the model's cameras (observation frames)
    observation_terms: ObsTerms
    cfg: ArmTaskConfig

    def __init__(
        self,
        cfg: ArmTaskConfig,
        num_envs: int,
        seed: int | None,
        *,
        cube: bool = False,
        target: bool = False,
    ) -> None:
        self.cfg = cfg
        model = self._build_model(cube=cube, target=target)
        super().__init__(model, num_envs, cfg.decimation, cfg.max_episode_steps, cfg.num_threads, seed)
        self.n_joints = len(self.robot.joint_names)
        self.home = self.robot.default_pos
        self._ee = model.site(self.ee_site).id
        adr = model.sensor(self.ee_vel_sensor).adr[0]
        self._ee_vel = slice(adr, adr + 3)
        self.site_xpos = self.batch.bind("site_xpos")
        self.site_xmat = self.batch.bind("site_xmat")
        self.sensordata = self.batch.bind("sensordata")
        self.observation_dim = sum(size for _, size in self.observation_terms)

    @abstractmethod
    def _build_model(self, *, cube: bool, target: bool) -> mujoco.MjModel:
        """The robot's scene from ``self.cfg``; ``cube`` adds the free cube, ``target`` the mocap target."""

    # ----------------------------------------------------------------- robot state
    @property
    def joint_pos(self) -> np.ndarray:
        return self.qpos[:, : self.n_joints]

    @property
    def joint_vel(self) -> np.ndarray:
        return self.qvel[:, : self.n_joints]

    @property
    def ee_pos(self) -> np.ndarray:
        """[N, 3]: the end-effector site's position (world)."""
        return self.site_xpos[:, self._ee]

    @property
    def ee_rot(self) -> np.ndarray:
        """[N, 3, 3]: the end-effector site's orientation (columns: its axes in the world)."""
        return self.site_xmat[:, self._ee].reshape(-1, 3, 3)

    @property
    def ee_vel(self) -> np.ndarray:
        """[N, 3]: the end-effector site's linear velocity (world)."""
        return self.sensordata[:, self._ee_vel]

    @property
    def camera_shadows(self) -> bool:
        """Whether camera observations are drawn with shadows, reflections and multisampling."""
        return True

    # ----------------------------------------------------------------- task hooks
    def _reset_robot(self, ids: np.ndarray) -> None:
        """Arm at home, holding it (the base reset zeroed velocities)."""
        self.qpos[ids, : self.n_joints] = self.home
        self.ctrl[ids, : self.n_joints] = self.home

    def _terminated(self) -> np.ndarray:
        """The arm tasks end an episode on success (as gym-hil does)."""
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
            obs[name] = self.render(self.obs_cameras[name], size, size, ids=ids, shadows=self.camera_shadows)
        return obs
