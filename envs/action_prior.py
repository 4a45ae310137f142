"""Action priors: a fixed affine map from policy observations to actions that a task offers its policy.

``ActionPrior`` says, per action dimension j, ``prior[j] = gain[j] * obs[index[j]] + offset[j]``. A
PPO policy with a prior outputs ``mlp(obs) + prior(obs)``, so the network learns a correction to the
prior rather than the whole action. The G1 tracking task's prior reads the reference joint positions
from the observation and returns the actions that put the position targets on them: an untrained
policy then plays the clip open loop, and the exported ONNX policy keeps the deploy contract
(``target = default + scale * action``) because the prior is part of its graph.

Plain numpy, no torch: a task describes its prior here; the learner applies it to tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActionPrior:
    """``prior(obs)[..., j] = gain[j] * obs[..., index[j]] + offset[j]`` over the last axis."""

    index: np.ndarray  # [A] int: the observation entry each action dimension reads
    gain: np.ndarray  # [A]
    offset: np.ndarray  # [A]

    def __post_init__(self) -> None:
        shapes = {self.index.shape, self.gain.shape, self.offset.shape}
        if len(shapes) != 1 or self.index.ndim != 1:
            raise ValueError(f"index, gain and offset must be equal 1-D shapes, got {sorted(shapes)}")

    @property
    def action_dim(self) -> int:
        return len(self.index)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return obs[..., self.index] * self.gain + self.offset
