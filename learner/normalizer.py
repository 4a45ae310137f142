"""Empirical observation normalisation as an ``nn.Module`` (so ONNX export bakes it into the policy).

``EmpiricalNormalizer(dim)`` keeps a running mean and variance in buffers; ``update(x)`` merges the
statistics of a batch with Chan et al.'s parallel algorithm (exact for any batch sizes, so chunks of
different actors can be merged in any order); ``forward(x)`` returns ``clip((x - mean) / std)``.
The buffers are the module's state dict, so ``state_dict()`` / ``load_state_dict()`` round-trip.
"""

from __future__ import annotations

import torch
from torch import nn


class EmpiricalNormalizer(nn.Module):
    """Running mean/variance normaliser over the last axis; ``forward`` never updates the statistics."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, dim: int, clip: float = 5.0, eps: float = 1e-2) -> None:
        super().__init__()
        self.clip = clip
        # eps bounds the scale of near-constant inputs (rsl_rl uses 1e-2 too), so a feature that
        # never moved during warm-up does not blow up to +-clip on its first change.
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + self.eps), -self.clip, self.clip)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the statistics of ``x`` [..., dim] into the running ones."""
        x = x.reshape(-1, x.shape[-1]).double()
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        total = int(self.count) + n
        # Chan's merge in float64: the running moments stay accurate over billions of samples.
        mean = self.mean.double()
        delta = batch_mean - mean
        new_mean = mean + delta * (n / total)
        m2 = (
            self.var.double() * int(self.count)
            + batch_var * n
            + delta.square() * (int(self.count) * n / total)
        )
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.fill_(total)
