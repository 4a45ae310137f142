"""Policy actions to Panda actuator controls, for all envs at once (no Python loop over envs).

``ee_delta``: [dx, dy, dz, gripper] in [-1, 1]^4. The pinch site's target is its current position plus
``ee_step`` times the action, clamped to the workspace box; one damped-least-squares step on the pinch
site (position, and an orientation task that keeps the gripper pointing down at its home yaw) turns
it into joint targets. The Jacobian is built from the bound joint axes and anchors (every arm joint is
a hinge), so the IK costs a few batched 6x6 solves and no extra kinematics pass.

``joint_position``: 7 joint-target deltas (``joint_step`` rad at |a| = 1) from the current joint
positions, plus the gripper.

Targets are relative to the measured state, not to the last command, so the action means the same
thing in every state (the observation carries all the controller's state) and nothing winds up when
the arm is blocked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from striata.envs.robots.panda import gripper_ctrl
from striata.envs.tasks.tabletop.rotations import orientation_error

N_ARM = 7
_NULLSPACE_REGULARIZATION = 1e-6


@dataclass(frozen=True)
class ArmState:
    """What the controllers read, [N, ...] each: joint positions, pinch-site pose, arm joint axes, anchors."""

    q: np.ndarray
    site_pos: np.ndarray
    site_rot: np.ndarray
    axes: np.ndarray
    anchors: np.ndarray


class Controller(Protocol):
    action_dim: int

    def __call__(self, actions: np.ndarray, state: ArmState) -> np.ndarray:
        """Clipped actions [N, action_dim] to actuator controls [N, 8] (7 joint targets, gripper 0..255)."""
        ...


def hinge_jacobian(axes: np.ndarray, anchors: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Geometric Jacobian [N, 6, J] (linear rows first) of a world point moved by hinges [N, J, 3] each."""
    linear = np.cross(axes, point[:, None, :] - anchors)
    return np.concatenate((linear, axes), axis=-1).transpose(0, 2, 1)


def downward_rotation(home_rot: np.ndarray) -> np.ndarray:
    """The gripper-down orientation with the home pose's yaw: z straight down, x horizontal."""
    x = home_rot[:, 0].copy()
    x[2] = 0.0
    x /= np.linalg.norm(x)
    z = np.array([0.0, 0.0, -1.0])
    return np.stack((x, np.cross(z, x), z), axis=1)


class EndEffectorIK:
    """One damped-least-squares step on the pinch site, batched over envs."""

    def __init__(
        self,
        target_rot: np.ndarray,
        home: np.ndarray,
        joint_range: np.ndarray,
        damping: float,
        orientation_weight: float,
        nullspace_gain: float,
        max_joint_step: float,
    ) -> None:
        self.target_rot = target_rot
        self.home = home
        self.low, self.high = joint_range[:, 0], joint_range[:, 1]
        self.damping_sq = damping**2
        self.weights = np.array([1.0, 1.0, 1.0, orientation_weight, orientation_weight, orientation_weight])
        self.nullspace_gain = nullspace_gain
        self.max_joint_step = max_joint_step

    def solve(self, state: ArmState, target_pos: np.ndarray) -> np.ndarray:
        """Joint targets [N, 7] that move the site toward ``target_pos`` [N, 3] and the down orientation."""
        q = state.q
        error = np.concatenate(
            (target_pos - state.site_pos, orientation_error(state.site_rot, self.target_rot)), axis=-1
        )
        jac = hinge_jacobian(state.axes, state.anchors, state.site_pos) * self.weights[:, None]
        error = error * self.weights
        jac_t = jac.transpose(0, 2, 1)
        gram = jac @ jac_t + self.damping_sq * np.eye(6)
        # pinv = J^T (J J^T + lambda^2 I)^-1, from one batched solve of the symmetric system.
        pinv = np.linalg.solve(gram, jac).transpose(0, 2, 1)
        dq = (pinv @ error[..., None])[..., 0]
        # A redundant arm drifts along its null space; pull it back toward the home posture there. The
        # projector uses an almost undamped inverse: the damped one leaks into the task, and since targets
        # are relative to the measured pose, a leak would make a zero action drift.
        exact = np.linalg.solve(jac @ jac_t + _NULLSPACE_REGULARIZATION * np.eye(6), jac).transpose(0, 2, 1)
        null = np.eye(N_ARM) - exact @ jac
        dq += self.nullspace_gain * (null @ (self.home - q)[..., None])[..., 0]
        dq = np.clip(dq, -self.max_joint_step, self.max_joint_step)
        return np.clip(q + dq, self.low, self.high)


class EEDeltaControl:
    """``ee_delta`` actions [N, 4] to controls [N, 8]."""

    action_dim = 4

    def __init__(
        self, ik: EndEffectorIK, ee_step: float, workspace_low: np.ndarray, workspace_high: np.ndarray
    ) -> None:
        self.ik = ik
        self.ee_step = ee_step
        self.low = workspace_low
        self.high = workspace_high

    def __call__(self, actions: np.ndarray, state: ArmState) -> np.ndarray:
        target = np.clip(state.site_pos + self.ee_step * actions[:, :3], self.low, self.high)
        arm = self.ik.solve(state, target)
        return np.concatenate((arm, gripper_ctrl(actions[:, 3:4])), axis=1)


class JointPositionControl:
    """``joint_position`` actions [N, 8] to controls [N, 8]."""

    action_dim = N_ARM + 1

    def __init__(self, joint_step: float, joint_range: np.ndarray) -> None:
        self.joint_step = joint_step
        self.low, self.high = joint_range[:, 0], joint_range[:, 1]

    def __call__(self, actions: np.ndarray, state: ArmState) -> np.ndarray:
        arm = np.clip(state.q + self.joint_step * actions[:, :N_ARM], self.low, self.high)
        return np.concatenate((arm, gripper_ctrl(actions[:, N_ARM:])), axis=1)
