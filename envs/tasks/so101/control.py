"""Policy actions to SO-101 servo position targets, for all envs at once: what a Feetech bus executes.

An STS3215 takes a goal position and runs its own position loop, so the action space is goal positions
too. Actions [N, 6] in [-1, 1], servo order:

- arm (5): the new target is the last target plus ``joint_step`` times the action, clipped to the joint
  limits. Deltas of the last target, not of the measured position: a servo holding a pose against gravity
  or pressing on the table sits a little off its target, and a delta of the measured position would
  drift under a zero action (the observation carries the targets, so the state stays Markov);
- gripper (1): the target opening, -1 open (``gripper_open`` rad) .. +1 closed (the joint's lower limit,
  past contact with anything held, so the servo squeezes it), approached at ``gripper_step`` rad a step.

No target moves more than ``joint_step`` (arm) or ``gripper_step`` (gripper) in a step; the config checks
both against what the servo covers in a control step (``striata.envs.robots.so101.max_target_step``).
"""

from __future__ import annotations

import numpy as np

from striata.envs.robots.so101 import N_ARM


class JointTargetControl:
    """Actions [N, 6] and the last targets [N, 6] to the next targets [N, 6] (rad, servo order)."""

    action_dim = N_ARM + 1

    def __init__(
        self, joint_step: float, gripper_step: float, gripper_open: float, joint_range: np.ndarray
    ) -> None:
        self.joint_step = joint_step
        self.gripper_step = gripper_step
        self.low, self.high = joint_range[:, 0].copy(), joint_range[:, 1].copy()
        self.gripper_open = float(np.clip(gripper_open, self.low[N_ARM], self.high[N_ARM]))
        self.gripper_closed = float(self.low[N_ARM])

    def gripper_goal(self, command: np.ndarray) -> np.ndarray:
        """Gripper command in [-1, 1] (-1 open, +1 closed) to the joint angle it asks for (rad)."""
        closing = (np.clip(command, -1.0, 1.0) + 1.0) * 0.5
        return self.gripper_open + closing * (self.gripper_closed - self.gripper_open)

    def __call__(self, actions: np.ndarray, targets: np.ndarray) -> np.ndarray:
        actions = np.clip(actions, -1.0, 1.0)
        arm = targets[:, :N_ARM] + self.joint_step * actions[:, :N_ARM]
        gripper = targets[:, N_ARM:] + np.clip(
            self.gripper_goal(actions[:, N_ARM:]) - targets[:, N_ARM:], -self.gripper_step, self.gripper_step
        )
        return np.clip(np.concatenate((arm, gripper), axis=1), self.low, self.high)
