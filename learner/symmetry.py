"""Left/right mirror maps for symmetric robots, used by PPO's symmetry augmentation and mirror loss.

A mirror of a flat vector is a *signed permutation*: ``y = x[..., index] * sign``. Reflecting the
robot through its sagittal (x-z) plane, with x forward, y left, z up in the base/anchor frame:

- joints: left and right partners swap; joints turning about x (roll) or z (yaw) change sign,
  joints turning about y (pitch, knee, elbow) keep it; waist yaw and roll change sign.
- a vector (position, linear velocity) in the anchor/base frame: ``(x, y, z) -> (x, -y, z)``.
- an angular velocity (a pseudo-vector): ``(wx, wy, wz) -> (-wx, wy, -wz)``.
- a rotation matrix: ``R -> M R M`` with ``M = diag(1, -1, 1)``, i.e. entry (i, j) times m_i m_j;
  the 6D representation (first two columns, row-major ``r00 r01 r10 r11 r20 r21``) gets signs
  ``(+, -, -, +, +, -)``.
- tracked bodies (critic observation): left and right partners swap, then the vector/rotation rules.

``g1_tracking_symmetry()`` builds the maps of the G1 tracking task from ``G1_JOINT_NAMES``,
``POLICY_TERMS`` (160-dim policy observation) and ``TRACKED_BODIES`` (286-dim critic observation).
Approximations, all small: the G1 model is mirror-symmetric only to ~1e-5 m (e.g. shoulder offsets
0.10022 vs 0.10021 m) and its link inertias to the same order; a mirrored observation is that of the
robot tracking the *mirrored* reference clip, which the augmentation assumes to be as plausible as
the clip itself. Both observation maps are exact involutions (``tests/test_learner_symmetry.py``
also checks the joint and body maps against MuJoCo forward kinematics of mirrored poses).

``SYMMETRIES`` maps the names accepted by ``PPOConfig.symmetry.mirror`` to their builders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from striata.envs.robots.g1 import G1_JOINT_NAMES, TRACKED_BODIES
from striata.envs.tasks.g1_tracking.observations import POLICY_TERMS, TermLayout, policy_term_layout

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class SignedPermutation:
    """``x -> x[..., index] * sign`` over the last axis of numpy arrays or torch tensors."""

    index: np.ndarray
    sign: np.ndarray

    def __post_init__(self) -> None:
        if self.index.shape != self.sign.shape or self.index.ndim != 1:
            raise ValueError(f"index {self.index.shape} and sign {self.sign.shape} must be equal 1-D shapes")
        if sorted(self.index.tolist()) != list(range(len(self.index))):
            raise ValueError("index must be a permutation of 0..dim-1")

    @property
    def dim(self) -> int:
        return len(self.index)

    def __call__(self, x: ArrayLike) -> ArrayLike:
        if x.shape[-1] != self.dim:
            raise ValueError(f"mirror of dim {self.dim} applied to an input of shape {tuple(x.shape)}")
        if isinstance(x, torch.Tensor):
            index = torch.as_tensor(self.index, device=x.device)
            return x[..., index] * torch.as_tensor(self.sign, dtype=x.dtype, device=x.device)
        return x[..., self.index] * self.sign.astype(x.dtype)

    @staticmethod
    def identity(dim: int) -> SignedPermutation:
        return SignedPermutation(np.arange(dim), np.ones(dim))

    @staticmethod
    def signs(*sign: float) -> SignedPermutation:
        """A sign flip with no permutation."""
        return SignedPermutation(np.arange(len(sign)), np.array(sign, dtype=np.float64))

    @staticmethod
    def concat(parts: Sequence[SignedPermutation]) -> SignedPermutation:
        """Block-diagonal: each part acts on its own consecutive slice of the vector."""
        offsets = np.cumsum([0] + [p.dim for p in parts[:-1]])
        return SignedPermutation(
            np.concatenate([p.index + off for p, off in zip(parts, offsets, strict=True)]),
            np.concatenate([p.sign for p in parts]),
        )

    @staticmethod
    def blocks(partner: Sequence[int], block: SignedPermutation) -> SignedPermutation:
        """Blocks of ``block.dim`` values (e.g. one per body): block i takes block ``partner[i]``'s
        values, mirrored by ``block``."""
        size = block.dim
        index = np.concatenate([block.index + size * j for j in partner])
        return SignedPermutation(index, np.tile(block.sign, len(partner)))


@dataclass(frozen=True)
class Symmetry:
    """Mirrors of a task's actions, actor observation and critic observation."""

    actions: SignedPermutation
    policy_obs: SignedPermutation
    critic_obs: SignedPermutation


VECTOR = SignedPermutation.signs(1, -1, 1)
PSEUDO_VECTOR = SignedPermutation.signs(-1, 1, -1)
ROTATION_6D = SignedPermutation.signs(1, -1, -1, 1, 1, -1)


def mirror_partners(names: Sequence[str]) -> list[int]:
    """Index of each name's left/right partner (itself for names on the midline)."""
    lookup = {name: i for i, name in enumerate(names)}
    partners = []
    for name in names:
        other = name.replace("left_", "\0").replace("right_", "left_").replace("\0", "right_")
        if other not in lookup:
            raise ValueError(f"{name!r} has no mirror partner {other!r}")
        partners.append(lookup[other])
    return partners


def joint_mirror(names: Sequence[str]) -> SignedPermutation:
    """Swap left/right joints; negate roll and yaw joints (rotations about x and z flip under y -> -y)."""
    sign = np.array([-1.0 if ("_roll" in n or "_yaw" in n) else 1.0 for n in names])
    # Joint i reads partner p's value with the partner's sign (equal for partners, so order is moot).
    return SignedPermutation(np.array(mirror_partners(names)), sign)


def g1_joint_mirror() -> SignedPermutation:
    return joint_mirror(G1_JOINT_NAMES)


def g1_policy_term_mirrors() -> dict[str, SignedPermutation]:
    """Mirror of each G1 tracking policy observation term (``POLICY_TERMS`` names)."""
    joints = g1_joint_mirror()
    return {
        "command_joint_pos": joints,
        "command_joint_vel": joints,
        "motion_anchor_pos_b": VECTOR,
        "motion_anchor_ori_b": ROTATION_6D,
        "base_lin_vel": VECTOR,
        "base_ang_vel": PSEUDO_VECTOR,
        "joint_pos": joints,  # offsets from the default pose, which is itself mirror-symmetric
        "joint_vel": joints,
        "actions": joints,
    }


def _terms_mirror(
    terms: Sequence[tuple[str, int]], mirrors: dict[str, SignedPermutation]
) -> SignedPermutation:
    parts = []
    for name, size in terms:
        if name not in mirrors:
            raise KeyError(f"observation term {name!r} has no mirror rule; add one in learner/symmetry.py")
        if mirrors[name].dim != size:
            raise ValueError(f"mirror of {name!r} has dim {mirrors[name].dim}, the term has {size}")
        parts.append(mirrors[name])
    return SignedPermutation.concat(parts)


def g1_tracking_symmetry(policy_terms: TermLayout = POLICY_TERMS) -> Symmetry:
    """Mirrors of the G1 tracking task: actions [29], policy obs [160 or 154], critic obs [286].

    The critic layout follows ``striata.envs.tasks.g1_tracking.observations.critic_obs``: the first four
    policy terms, every tracked body's position (3 each) then 6D orientation (6 each) in the anchor
    frame, then the remaining policy terms.
    """
    terms = g1_policy_term_mirrors()
    partners = mirror_partners(TRACKED_BODIES)
    critic = SignedPermutation.concat(
        [
            _terms_mirror(POLICY_TERMS[:4], terms),
            SignedPermutation.blocks(partners, VECTOR),
            SignedPermutation.blocks(partners, ROTATION_6D),
            _terms_mirror(POLICY_TERMS[4:], terms),
        ]
    )
    return Symmetry(
        actions=g1_joint_mirror(), policy_obs=_terms_mirror(policy_terms, terms), critic_obs=critic
    )


SYMMETRIES: dict[str, Callable[[], Symmetry]] = {
    "g1_tracking": g1_tracking_symmetry,
    "g1_tracking_no_state_estimation": lambda: g1_tracking_symmetry(policy_term_layout(False)),
}


def make_symmetry(name: str) -> Symmetry:
    if name not in SYMMETRIES:
        raise KeyError(f"unknown symmetry {name!r}; known: {', '.join(SYMMETRIES)}")
    return SYMMETRIES[name]()
