"""Trained policies in reward-model data-set rollouts (and ``striata audit-reward``): ONNX files.

The behaviours of a data set's envs (scripted picks, their failing variants) are the task's own
(``striata.envs.progress_scene``); ``learned`` envs act with a policy that RL trained, loaded here
from a file ``striata export`` wrote, so the data set holds the states a learner visits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class OnnxPolicy:
    """A policy file written by ``striata export`` (normaliser inside): observations in, actions out."""

    def __init__(self, path: Path) -> None:
        from striata.learner.export import make_session, read_metadata

        self.metadata = read_metadata(path)
        self.session = make_session(path)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.session.run(["actions"], {"obs": np.ascontiguousarray(obs, dtype=np.float32)})[0]
