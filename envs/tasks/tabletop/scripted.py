"""What the scripted arm policies share: the gripper commands, the state they read, action noise, and the
pick's phases (above the cube -> descend -> close -> lift), kept per env and vectorised over N envs.

Each robot's ``scripted`` module says how its policies move (end-effector deltas for the Panda, IK on
servo targets for the SO-101) and when its pick moves on from a phase.
"""

from __future__ import annotations

import numpy as np

from striata.envs.backend import Obs

OPEN, CLOSE = -1.0, 1.0


def state_of(obs: Obs) -> np.ndarray:
    """The flat state observation in ``obs`` (the array itself, or a dict's ``"state"``)."""
    return obs["state"] if isinstance(obs, dict) else obs


class ScriptedPolicy:
    """A scripted policy for ``num_envs`` envs; ``noise`` is the std of Gaussian noise on its motion."""

    def __init__(self, num_envs: int, noise: float = 0.0, seed: int | None = None) -> None:
        self.num_envs = num_envs
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless: nothing to start over (kept for the common policy interface)."""

    def _noisy(self, actions: np.ndarray) -> np.ndarray:
        """``actions`` plus the policy's noise, clipped to [-1, 1]."""
        if self.noise > 0:
            actions = actions + self.rng.normal(0.0, self.noise, actions.shape)
        return np.clip(actions, -1.0, 1.0)


class PickPhases(ScriptedPolicy):
    """A scripted pick's phase per env, and how long it has been in it (``phase_steps``).

    A step calls ``_tick`` first (it counts the step in the current phase), picks every env's next phase
    from that, ``_enter``s it, and then acts on the phase it is in now.
    """

    APPROACH, DESCEND, GRASP, LIFT = range(4)

    def __init__(self, num_envs: int, noise: float = 0.0, seed: int | None = None) -> None:
        super().__init__(num_envs, noise, seed)
        self.phase = np.zeros(num_envs, dtype=np.int64)
        self.phase_steps = np.zeros(num_envs, dtype=np.int64)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start over in the envs of ``mask`` (all when None)."""
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        self.phase[mask] = self.APPROACH
        self.phase_steps[mask] = 0

    def _tick(self) -> np.ndarray:
        """Count this step in every env's phase; the phases [N] the envs are in."""
        self.phase_steps += 1
        return self.phase

    def _enter(self, phase: np.ndarray) -> None:
        """Move to ``phase`` [N]; an env whose phase changes starts counting its steps again."""
        self.phase_steps[phase != self.phase] = 0
        self.phase = phase

    def _phase_goal(
        self, above: np.ndarray, grasp: np.ndarray, hold: np.ndarray, lift: np.ndarray
    ) -> np.ndarray:
        """Where the end effector heads [N, 3] in each phase: ``above`` the cube, down to ``grasp``,
        ``hold`` while the jaws close, ``lift``."""
        phase = self.phase[:, None]
        return np.select(
            [phase == self.APPROACH, phase == self.DESCEND, phase == self.GRASP],
            [above, grasp, hold],
            default=lift,
        )

    def _gripper(self) -> np.ndarray:
        """Gripper commands [N, 1]: closed from the grasp on, open before."""
        return np.where(self.phase[:, None] >= self.GRASP, CLOSE, OPEN)
