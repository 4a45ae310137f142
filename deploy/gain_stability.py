"""Which PD gains a simulator's discrete loop can hold: per-joint bounds from the robot model's inertia.

A simulator that applies ``tau = kp (q* - q) + kd (dq* - dq)`` as an explicit torque and integrates
with semi-implicit Euler at step ``dt`` (MuJoCo's Euler, as in Unitree's ``unitree_mujoco``) is, per
joint of effective inertia ``I`` and error ``x``::

    v' = v - (dt / I) (kp x + kd v),   x' = x + dt v'

With ``a = kd dt / I`` and ``b = kp dt^2 / I`` the characteristic polynomial is
``z^2 - (2 - a - b) z + (1 - a)``; by Jury's test the loop is stable iff ``0 < a < 2`` and
``0 < b < 4 - 2 a``. When the PD reads the state one step old (``unitree_mujoco``: its LowCmd
handler reads ``mjData.sensordata``, which ``mj_step`` leaves at the state before the step) it is
``z^3 - 2 z^2 + (1 + a + b) z - a``: stable iff ``a < 1`` and ``b < a (1 - a)``, a region about ten
times smaller. Both were checked against a MuJoCo hinge stepped that way (``tests/test_vendor_g1_sim.py``).

The effective inertia of a joint is ``1 / (M^-1)_ii`` of the free-floating robot (armature included):
the inertia the joint drives when every other joint gives way, the smallest it sees, so the bound is
the conservative one. It is taken at the poses a hold passes through (the model's zero pose and the
default pose), the smallest of them. A margin ``m`` asks the gains to stay stable when multiplied by
``m`` (equivalently: with inertias ``m`` times smaller than estimated).

Ground contact makes a standing leg heavier than this free-floating estimate: in ``unitree_mujoco``
at 5 ms the G1's legs stand, without chatter, on gains that the lagged bound refuses, yet the same
gains chatter while the robot hangs with its feet in the air. So the lagged loop is checked only
where a caller asks for it (``state_lag_steps=1``), e.g. for a limb that is always in the air.

Only mujoco and numpy: the deploy computer runs this without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

DEFAULT_MARGIN = 1.5


class UnstableGainsError(ValueError):
    """Gains that a model stepped at a given timestep cannot hold (one line, names the joint)."""


def load_model(path: Path) -> mujoco.MjModel:
    """A robot model (MJCF) for the bounds; an unreadable file is a one-line error."""
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except ValueError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise UnstableGainsError(f"sim_model: cannot load {str(path)!r} ({first_line})") from exc


def effective_inertia(
    model: mujoco.MjModel,
    joint_names: Sequence[str],
    joint_positions: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """[J] ``1 / (M^-1)_ii`` per joint (kg m^2), the smallest over the zero pose and ``joint_positions``."""
    missing = [name for name in joint_names if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name) < 0]
    if missing:
        raise UnstableGainsError(f"joint_names: the model has no joints {missing}")
    joint_ids = [model.joint(name).id for name in joint_names]
    qpos_adr = model.jnt_qposadr[joint_ids]
    dof_adr = model.jnt_dofadr[joint_ids]
    data = mujoco.MjData(model)
    smallest = np.full(len(joint_names), np.inf)
    for pose in (None, *joint_positions):
        data.qpos[:] = model.qpos0
        if pose is not None:
            data.qpos[qpos_adr] = np.asarray(pose, dtype=np.float64)
        mujoco.mj_forward(model, data)
        # Column i of M^-1 is the solution of M x = e_i; only the joints' own columns are needed.
        unit = np.zeros((len(dof_adr), model.nv))
        unit[np.arange(len(dof_adr)), dof_adr] = 1.0
        columns = np.zeros_like(unit)
        mujoco.mj_solveM(model, data, columns, unit)
        smallest = np.minimum(smallest, 1.0 / columns[np.arange(len(dof_adr)), dof_adr])
    return smallest


@dataclass(frozen=True)
class GainLimits:
    """The stable (kp, kd) region per joint of one model stepped at one timestep."""

    joint_names: tuple[str, ...]
    inertia: np.ndarray  # [J] kg m^2
    timestep: float
    state_lag_steps: int = 0
    margin: float = DEFAULT_MARGIN
    model_name: str = "model"

    def __post_init__(self) -> None:
        if self.state_lag_steps not in (0, 1):
            raise UnstableGainsError(f"state_lag_steps: 0 or 1, got {self.state_lag_steps}")
        if self.timestep <= 0 or self.margin < 1.0:
            raise UnstableGainsError(
                f"timestep > 0 and margin >= 1 needed, got {self.timestep}, {self.margin}"
            )

    def _ab(self, kp: np.ndarray, kd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The margin-scaled a and b of the module docstring."""
        dt = self.timestep
        return self.margin * kd * dt / self.inertia, self.margin * kp * dt * dt / self.inertia

    @property
    def kd_max(self) -> np.ndarray:
        """[J] the largest kd that is stable at any kp (with kp = 0 for the undelayed loop)."""
        a_max = 2.0 if self.state_lag_steps == 0 else 1.0
        return a_max * self.inertia / (self.margin * self.timestep)

    @property
    def kp_max(self) -> np.ndarray:
        """[J] the largest kp that is stable with the best kd (kd -> 0 undelayed; a = 1/2 lagged)."""
        b_max = 4.0 if self.state_lag_steps == 0 else 0.25
        return b_max * self.inertia / (self.margin * self.timestep**2)

    def stable(self, kp: np.ndarray, kd: np.ndarray) -> np.ndarray:
        """[J] bool: this joint's loop is stable (with the margin) at these gains."""
        a, b = self._ab(np.asarray(kp, dtype=np.float64), np.asarray(kd, dtype=np.float64))
        if self.state_lag_steps == 0:
            return (a < 2.0) & (b < 4.0 - 2.0 * a)
        return (a < 1.0) & (b <= a * (1.0 - a))

    def describe(self, joint: int, kp: float, kd: float) -> str:
        """One line: why ``joint`` cannot hold (kp, kd) here, with the bounds of its region."""
        loop = "a one-step-old state" if self.state_lag_steps else "the current state"
        return (
            f"{self.joint_names[joint]} kp={kp:g} kd={kd:g} is unstable on {self.model_name} at a "
            f"{self.timestep:g} s step (PD from {loop}, margin {self.margin:g}): effective inertia "
            f"{self.inertia[joint]:.4g} kg m2 allows at most kd < {self.kd_max[joint]:.3g}, "
            f"kp < {self.kp_max[joint]:.3g}, less of one the more of the other"
        )

    def violations(self, kp: np.ndarray, kd: np.ndarray) -> list[str]:
        """One message per joint whose gains this model/timestep cannot hold."""
        kp, kd = np.asarray(kp, dtype=np.float64), np.asarray(kd, dtype=np.float64)
        unstable = np.flatnonzero(~self.stable(kp, kd)).tolist()
        return [self.describe(j, float(kp[j]), float(kd[j])) for j in unstable]

    def check(self, kp: np.ndarray, kd: np.ndarray) -> None:
        """Raise UnstableGainsError naming the first joint these gains cannot hold."""
        problems = self.violations(kp, kd)
        if problems:
            more = f" (and {len(problems) - 1} more joints)" if len(problems) > 1 else ""
            raise UnstableGainsError(f"gains: {problems[0]}{more}")

    def clip(self, kp: np.ndarray, kd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gains this loop holds, changed only where it cannot hold them.

        Undelayed: kp is kept (lowered to half its largest stable value where it is above that) and kd
        lowered to 90 % of what that kp allows, since stiffness is what keeps a robot up. Lagged: kd is
        moved inside the window ``a (1 - a) > b`` leaves for that kp, kp first lowered to ``b`` <= 0.2
        where the window is narrower than that (it closes at ``b`` = 0.25).
        """
        kp = np.asarray(kp, dtype=np.float64).copy()
        kd = np.asarray(kd, dtype=np.float64).copy()
        bad = ~self.stable(kp, kd)
        if not bad.any():
            return kp, kd
        scale = self.inertia / self.margin  # a = margin kd dt / I  ->  kd = a I / (margin dt)
        dt = self.timestep
        a, b = self._ab(kp, kd)
        # Stay 10 % inside the boundary: on it the loop only just stops diverging.
        if self.state_lag_steps == 0:
            b_new = np.minimum(b, 2.0)
            a_new = np.minimum(a, 0.9 * np.minimum(2.0, (4.0 - b_new) / 2.0))
        else:
            b_new = np.minimum(b, 0.2)
            root = np.sqrt(1.0 - 4.0 * b_new)
            low, high = (1.0 - root) / 2.0, (1.0 + root) / 2.0
            a_new = np.clip(a, low + 0.1 * (high - low), high - 0.1 * (high - low))
        kp[bad] = (b_new * scale / dt**2)[bad]
        kd[bad] = (a_new * scale / dt)[bad]
        return kp, kd


def gain_limits(
    model: mujoco.MjModel,
    timestep: float,
    joint_names: Sequence[str],
    *,
    state_lag_steps: int = 0,
    margin: float = DEFAULT_MARGIN,
    joint_positions: Sequence[np.ndarray] = (),
    model_name: str = "model",
) -> GainLimits:
    """The stable gain region of ``model`` stepped at ``timestep`` (see the module docstring)."""
    inertia = effective_inertia(model, joint_names, joint_positions)
    return GainLimits(tuple(joint_names), inertia, float(timestep), state_lag_steps, margin, model_name)


def stable_gain_limits(
    model: mujoco.MjModel, timestep: float, joint_names: Sequence[str], **options
) -> tuple[np.ndarray, np.ndarray]:
    """([J] kp_max, [J] kd_max) for ``model`` stepped at ``timestep``; options as ``gain_limits``."""
    limits = gain_limits(model, timestep, joint_names, **options)
    return limits.kp_max, limits.kd_max


def check_gains(
    model: mujoco.MjModel,
    timestep: float,
    joint_names: Sequence[str],
    kp: np.ndarray,
    kd: np.ndarray,
    **options,
) -> None:
    """Raise UnstableGainsError (one line, naming the joint and value) for gains the loop cannot hold."""
    gain_limits(model, timestep, joint_names, **options).check(kp, kd)
