"""Left/right mirror maps of a task, as plain numpy data: what a task says about its own symmetry.

A mirror of a flat vector is a *signed permutation*: ``y = x[..., index] * sign``. Reflecting a
robot through its sagittal (x-z) plane, with x forward, y left, z up in the base/anchor frame:

- joints: left and right partners swap; joints turning about x (roll) or z (yaw) change sign,
  joints turning about y (pitch, knee, elbow) keep it.
- a vector (position, linear velocity) in the anchor/base frame: ``(x, y, z) -> (x, -y, z)``.
- an angular velocity (a pseudo-vector): ``(wx, wy, wz) -> (-wx, wy, -wz)``.
- a rotation matrix: ``R -> M R M`` with ``M = diag(1, -1, 1)``, i.e. entry (i, j) times m_i m_j;
  the 6D representation (first two columns, row-major ``r00 r01 r10 r11 r20 r21``) gets signs
  ``(+, -, -, +, +, -)``.

A task builds its ``Symmetry`` (actions, actor and critic observations) from these pieces and
registers it under a name (``striata.envs.registry.TaskEntry.symmetry``); the learner applies it to
tensors (``striata.learner.symmetry``). Nothing here needs torch, so a robot computer can import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SignedPermutation:
    """``x -> x[..., index] * sign`` over the last axis of a numpy array."""

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

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.dim:
            raise ValueError(f"mirror of dim {self.dim} applied to an input of shape {tuple(x.shape)}")
        return x[..., self.index] * self.sign.astype(x.dtype)

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


def terms_mirror(
    terms: Sequence[tuple[str, int]], mirrors: Mapping[str, SignedPermutation]
) -> SignedPermutation:
    """Mirror of an observation laid out as ``(term name, size)`` blocks, from each term's own mirror."""
    parts = []
    for name, size in terms:
        if name not in mirrors:
            raise KeyError(f"observation term {name!r} has no mirror rule; the task's symmetry must give one")
        if mirrors[name].dim != size:
            raise ValueError(f"mirror of {name!r} has dim {mirrors[name].dim}, the term has {size}")
        parts.append(mirrors[name])
    return SignedPermutation.concat(parts)
