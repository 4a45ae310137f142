"""Scripted SO-101 policies (IK by damped least squares on MuJoCo Jacobians): tests and demonstrations.

Both read only the task's state observation (``obs`` or ``obs["state"]``), never the simulator, and act
through the same servo-target actions a learned policy uses, so what they do is a demonstration in the
task's own action space. Each step, the policy moves the tip's goal at most ``max_move`` toward where the
phase wants it, solves one damped-least-squares step for it on a kinematic copy of the arm at the current
joint targets (``mj_jacSite``), and sends the joint change as an action (bounded by the env's joint step).
The pick also holds the gripper pointing down with its jaws square to the cube.

Each keeps a per-env phase, vectorised over N envs where it can; call ``reset(done)`` with the env's
``terminated | truncated`` after every step so that auto-reset envs start over. ``noise`` adds Gaussian
noise to the arm part of the action (varied demonstrations); ``striata demos`` records them
(``striata.envs.rollout.scripted_demonstrations``).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from striata.envs.backend import Obs
from striata.envs.robots.so101 import N_ARM
from striata.envs.tasks.so101.config import PICK_OBS_TERMS, REACH_OBS_TERMS, obs_slices
from striata.envs.tasks.so101.env import So101Env
from striata.envs.tasks.so101.kinematics import ArmKinematics
from striata.envs.tasks.so101.scene import CUBE_HALF_SIZE
from striata.envs.tasks.tabletop.rotations import orientation_error
from striata.envs.tasks.tabletop.scripted import OPEN, PickPhases, ScriptedPolicy, state_of

_PICK = obs_slices(PICK_OBS_TERMS)
_REACH = obs_slices(REACH_OBS_TERMS)


def yaw_of(quat: np.ndarray) -> np.ndarray:
    """Yaw [N] of orientations (w, x, y, z) [N, 4] about the world's z axis."""
    w, x, y, z = quat.T
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def pointing_down(yaw: np.ndarray) -> np.ndarray:
    """Tip orientations [N, 3, 3] with the approach straight down and the jaws closing along ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    zero, one = np.zeros_like(yaw), np.ones_like(yaw)
    return np.stack(
        (np.stack((c, s, zero), -1), np.stack((-s, c, zero), -1), np.stack((zero, zero, one), -1)), axis=-1
    )


class _IKPolicy(ScriptedPolicy):
    def __init__(
        self,
        num_envs: int,
        joint_step: float = 0.1,
        noise: float = 0.0,
        seed: int | None = None,
        max_move: float = 0.03,
        damping: float = 0.02,
        orientation_weight: float = 0.3,
    ) -> None:
        super().__init__(num_envs, noise, seed)
        self.joint_step = joint_step
        self.max_move = max_move
        self.damping_sq = damping**2
        self.orientation_weight = orientation_weight
        self.kinematics = ArmKinematics()

    @classmethod
    def for_env(cls, env: So101Env, noise: float = 0.0, seed: int | None = None, **kwargs: Any) -> Self:
        """A policy sized and scaled for ``env``."""
        return cls(env.num_envs, env.cfg.joint_step, noise=noise, seed=seed, **kwargs)

    def arm_action(
        self, q_target: np.ndarray, goal: np.ndarray, goal_rot: np.ndarray | None = None
    ) -> np.ndarray:
        """Arm actions [N, 5] that move the tip (at the joint targets) toward ``goal`` and ``goal_rot``."""
        pos, rot, jac = self.kinematics.tip_and_jacobian(q_target)
        move = goal - pos
        length = np.linalg.norm(move, axis=1, keepdims=True)
        move *= np.minimum(1.0, self.max_move / np.maximum(length, 1e-9))
        if goal_rot is None:
            error, jac = move, jac[:, :3]
        else:
            w = self.orientation_weight
            error = np.concatenate((move, w * orientation_error(rot, goal_rot)), axis=1)
            jac = np.concatenate((jac[:, :3], w * jac[:, 3:]), axis=1)
        dq = self._dls(jac, error)
        # A joint at its limit cannot follow its share of the step: solve again without it.
        low, high = self.kinematics.joint_range[:N_ARM].T
        q = q_target[:, :N_ARM]
        blocked = ((q + dq <= low + 1e-6) & (dq < 0)) | ((q + dq >= high - 1e-6) & (dq > 0))
        if blocked.any():
            dq = np.where(blocked, 0.0, self._dls(jac * ~blocked[:, None, :], error))
        return self._noisy(dq / self.joint_step)

    def _dls(self, jac: np.ndarray, error: np.ndarray) -> np.ndarray:
        """dq = J^T (J J^T + lambda^2 I)^-1 e, batched."""
        gram = jac @ jac.transpose(0, 2, 1) + self.damping_sq * np.eye(jac.shape[1])
        return (jac.transpose(0, 2, 1) @ np.linalg.solve(gram, error[..., None]))[..., 0]


class ScriptedReachPolicy(_IKPolicy):
    """Straight to the target (position only), gripper open."""

    def __call__(self, obs: Obs) -> np.ndarray:
        state = state_of(obs)
        arm = self.arm_action(state[:, _REACH["joint_target"]], state[:, _REACH["target_pos"]])
        return np.concatenate((arm, np.full((len(state), 1), OPEN)), axis=1)


class ScriptedPickPolicy(_IKPolicy, PickPhases):
    """Above the cube -> descend -> close -> lift; a cube lost after the grasp restarts the sequence.

    The gripper points down with its jaws square to the cube's faces, on the pair of faces nearest to
    closing along the arm's reach (where the wrist's roll stays near its home angle).
    """

    def __init__(
        self,
        num_envs: int,
        joint_step: float = 0.1,
        noise: float = 0.0,
        seed: int | None = None,
        hover: float = 0.05,
        grasp_height: float = 0.004,
        lift_to: float = 0.1,
        close_steps: int = 4,
        descend_steps: int = 12,
        tolerance: float = 0.01,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_envs, joint_step, noise, seed, **kwargs)
        self.hover = hover
        self.grasp_height = grasp_height
        self.lift_to = lift_to
        self.close_steps = close_steps
        self.descend_steps = descend_steps
        self.tolerance = tolerance

    def __call__(self, obs: Obs) -> np.ndarray:
        state = state_of(obs)
        tip = state[:, _PICK["tip_pos"]]
        cube = state[:, _PICK["cube_pos"]]
        # The grasp point sits grasp_height above the cube's centre: the fingertips then clear the table.
        grasp = cube + np.array([0.0, 0.0, self.grasp_height])
        above = cube + np.array([0.0, 0.0, self.hover + CUBE_HALF_SIZE])
        on_table = cube[:, 2] < 2 * CUBE_HALF_SIZE
        # Descend only from straight above the cube and once the arm has settled there: a descent that
        # starts while the tip is still swinging in comes down diagonally, onto the cube.
        above_error = above - tip
        settled = np.abs(state[:, _PICK["joint_vel"]][:, :N_ARM]).max(axis=1) < 0.5
        over_cube = (
            (np.linalg.norm(above_error[:, :2], axis=1) < 0.5 * self.tolerance)
            & (np.abs(above_error[:, 2]) < 1.5 * self.tolerance)
            & settled
        )

        # Advance phases first, so that each env acts on the phase it is in now.
        at = self._tick()
        self._enter(
            np.select(
                [
                    (at == self.APPROACH) & over_cube,
                    (at == self.DESCEND) & (np.linalg.norm(grasp - tip, axis=1) < self.tolerance),
                    # A descent that does not arrive is blocked (a jaw on the cube): up again, and realign.
                    (at == self.DESCEND) & (self.phase_steps >= self.descend_steps),
                    (at == self.GRASP) & (self.phase_steps >= self.close_steps),
                    (at == self.LIFT) & (np.linalg.norm(grasp - tip, axis=1) > 3 * self.tolerance) & on_table,
                ],
                [self.DESCEND, self.GRASP, self.APPROACH, self.LIFT, self.APPROACH],
                default=at,
            )
        )

        lift = grasp.copy()
        lift[:, 2] = self.lift_to
        goal = self._phase_goal(above, grasp, grasp, lift)
        arm = self.arm_action(state[:, _PICK["joint_target"]], goal, pointing_down(self._jaw_yaw(state)))
        arm[self.phase == self.GRASP] = 0.0  # hold still while the jaws close
        return np.concatenate((arm, self._gripper()), axis=1)

    @staticmethod
    def _jaw_yaw(state: np.ndarray) -> np.ndarray:
        """The closing direction: the cube face normal (yaw + k pi/2) nearest the cube's azimuth."""
        cube = state[:, _PICK["cube_pos"]]
        face = yaw_of(state[:, _PICK["cube_quat"]])
        azimuth = np.arctan2(cube[:, 1], cube[:, 0])
        quarter = np.pi / 2
        return face + quarter * np.round((azimuth - face) / quarter)
