"""Adaptive start-frame sampling (BeyondMimic): start more episodes where the policy fails.

The clip is cut into bins; each failure (termination, not time-out) counts against the bin it
happened in, counts decay by an EMA, get smoothed towards earlier bins (the cause of a fall
precedes it) and mixed with a uniform share so that no bin is starved. The counts live in the
array type of ``like`` (numpy, or a tensor on the GPU backend's device) and are drawn from with
``rng`` of the same library, so a GPU backend samples starts without leaving the device.
"""

from __future__ import annotations

import numpy as np

from striata.envs.arrays import Array, Rng, bincount, integers, namespace, uniform
from striata.envs.tasks.g1_tracking.config import SamplingConfig


class AdaptiveStartSampler:
    def __init__(
        self,
        num_frames: int,
        frames_per_bin: int,
        cfg: SamplingConfig,
        rng: Rng,
        like: Array | None = None,
    ) -> None:
        self.cfg = cfg
        self.num_frames = num_frames
        self.num_bins = num_frames // max(frames_per_bin, 1) + 1
        self.rng = rng
        like = np.zeros(0) if like is None else like
        xp = self._xp = namespace(like)
        self.failed = xp.zeros(self.num_bins, dtype=like.dtype, device=like.device)
        self._step_failures = xp.zeros_like(self.failed)
        kernel = cfg.kernel_lambda ** np.arange(cfg.kernel_size)
        kernel = kernel / kernel.sum()
        # Smoothing towards earlier bins as a matrix: the bins past the end repeat the last one.
        smooth = np.zeros((self.num_bins, self.num_bins))
        for b in range(self.num_bins):
            for k, weight in enumerate(kernel):
                smooth[b, min(b + k, self.num_bins - 1)] += weight
        self._smooth = xp.asarray(smooth, dtype=like.dtype, device=like.device)

    def bin_of(self, frames: Array) -> Array:
        bins = frames * self.num_bins // max(self.num_frames, 1)
        return self._xp.clip(bins, min=0, max=self.num_bins - 1)

    def record_failures(self, frames: Array, weights: Array | None = None) -> None:
        """Count failures at ``frames``; with boolean ``weights``, only where they are set (no index
        lists: a device backend records without waiting for the device)."""
        self._step_failures += bincount(self.bin_of(frames), self.num_bins, self.failed.dtype, weights)

    def update(self) -> None:
        """Fold this step's failures into the decaying per-bin counts; call once per env step."""
        a = self.cfg.alpha
        self.failed = a * self._step_failures + (1 - a) * self.failed
        self._step_failures[...] = 0

    def probabilities(self) -> Array:
        p = self._smooth @ (self.failed + self.cfg.uniform_ratio / self.num_bins)
        return p / self._xp.sum(p)

    def sample(self, n: int) -> Array:
        if self.cfg.first_frame:
            return self._xp.zeros(n, dtype=self._xp.int64, device=self.failed.device)
        if not self.cfg.adaptive:
            return integers(self.rng, self.num_frames, n)
        xp = self._xp
        # Inverse-CDF sampling: Generator.choice with p= costs ten times more per call.
        cdf = xp.cumulative_sum(self.probabilities())
        draws = xp.astype(uniform(self.rng, 0.0, 1.0, (n,)), cdf.dtype) * cdf[-1]
        bins = xp.clip(xp.searchsorted(cdf, draws, side="right"), max=self.num_bins - 1)
        frames = (bins + uniform(self.rng, 0.0, 1.0, (n,))) / self.num_bins * (self.num_frames - 1)
        return xp.clip(xp.astype(frames, xp.int64), min=0, max=self.num_frames - 1)
