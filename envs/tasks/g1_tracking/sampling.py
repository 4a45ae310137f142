"""Adaptive start-frame sampling (BeyondMimic): start more episodes where the policy fails.

The clip is cut into bins; each failure (termination, not time-out) counts against the bin it
happened in, counts decay by an EMA, get smoothed towards earlier bins (the cause of a fall
precedes it) and mixed with a uniform share so that no bin is starved.
"""

from __future__ import annotations

import numpy as np

from envs.tasks.g1_tracking.config import SamplingConfig


class AdaptiveStartSampler:
    def __init__(self, num_frames: int, frames_per_bin: int, cfg: SamplingConfig, rng: np.random.Generator):
        self.cfg = cfg
        self.num_frames = num_frames
        self.num_bins = num_frames // max(frames_per_bin, 1) + 1
        self.failed = np.zeros(self.num_bins)
        self._step_failures = np.zeros(self.num_bins)
        self.rng = rng
        kernel = cfg.kernel_lambda ** np.arange(cfg.kernel_size)
        self._kernel = kernel / kernel.sum()

    def bin_of(self, frames: np.ndarray) -> np.ndarray:
        return np.clip(frames * self.num_bins // max(self.num_frames, 1), 0, self.num_bins - 1)

    def record_failures(self, frames: np.ndarray) -> None:
        self._step_failures += np.bincount(self.bin_of(frames), minlength=self.num_bins)

    def update(self) -> None:
        """Fold this step's failures into the decaying per-bin counts; call once per env step."""
        a = self.cfg.alpha
        self.failed = a * self._step_failures + (1 - a) * self.failed
        self._step_failures[:] = 0

    def probabilities(self) -> np.ndarray:
        p = self.failed + self.cfg.uniform_ratio / self.num_bins
        if len(self._kernel) > 1:
            # A failure at bin b raises the odds of starting at b and the bins just before it.
            padded = np.concatenate((p, np.full(len(self._kernel) - 1, p[-1])))
            p = np.convolve(padded, self._kernel[::-1], mode="valid")
        return p / p.sum()

    def sample(self, n: int) -> np.ndarray:
        if not self.cfg.adaptive:
            return self.rng.integers(0, self.num_frames, size=n)
        # Inverse-CDF sampling: Generator.choice with p= costs ten times more per call.
        cdf = np.cumsum(self.probabilities())
        bins = np.minimum(np.searchsorted(cdf, self.rng.random(n) * cdf[-1], side="right"), self.num_bins - 1)
        frames = (bins + self.rng.random(n)) / self.num_bins * (self.num_frames - 1)
        return np.clip(frames.astype(np.int64), 0, self.num_frames - 1)
