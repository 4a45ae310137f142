"""A task's left/right mirror maps applied to tensors: what PPO's symmetry augmentation and mirror loss use.

The maps themselves are the task's (``striata.envs.symmetry.Symmetry``, numpy index and sign arrays,
looked up by the composition root from ``ppo.symmetry.mirror`` through the task registry).
``TensorSymmetry`` keeps them on the learner's device, so mirroring a minibatch is one gather and
one multiply with no host copies.
"""

from __future__ import annotations

import torch

from striata.envs.symmetry import SignedPermutation, Symmetry


class TensorMirror:
    """``x -> x[..., index] * sign`` over the last axis of tensors on one device."""

    def __init__(self, mirror: SignedPermutation, device: str | torch.device) -> None:
        self.dim = mirror.dim
        self.index = torch.as_tensor(mirror.index, dtype=torch.long, device=device)
        self.sign = torch.as_tensor(mirror.sign, dtype=torch.float32, device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"mirror of dim {self.dim} applied to an input of shape {tuple(x.shape)}")
        return x[..., self.index] * self.sign.to(x.dtype)


class TensorSymmetry:
    """A task's ``Symmetry`` (actions, policy and critic observations) on one device."""

    def __init__(self, symmetry: Symmetry, device: str | torch.device) -> None:
        self.actions = TensorMirror(symmetry.actions, device)
        self.policy_obs = TensorMirror(symmetry.policy_obs, device)
        self.critic_obs = TensorMirror(symmetry.critic_obs, device)
