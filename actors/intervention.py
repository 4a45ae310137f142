"""The training job's side of the intervention port (striata.common.intervention_port serves it):
``write_hil_file`` publishes a job's ports in ``RUN_DIR/hil.json``, ``InterventionLog`` sums up what
people did (intervention rate, takeovers per episode, transitions the learner got, labels), and what an
actor sends its watchers (``obs_row``, ``port_cameras``).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from striata.actors.result import ActorStats
from striata.common.files import atomic_write
from striata.common.intervention_port import FREE_CAMERA, HIL_FILE, PROTOCOL_VERSION


def obs_row(obs: np.ndarray | dict[str, np.ndarray], row: int) -> dict[str, list[float]]:
    """One env's observation as a ``step`` message carries it: name -> floats.

    A plain array is named ``state``; of a dict, every float array by its key (camera frames, uint8,
    travel as ``frame`` messages instead).
    """
    if isinstance(obs, dict):
        return {
            key: np.asarray(value[row], dtype=np.float64).ravel().tolist()
            for key, value in obs.items()
            if np.issubdtype(np.asarray(value).dtype, np.floating)
        }
    return {"state": np.asarray(obs[row], dtype=np.float64).ravel().tolist()}


def port_cameras(cameras: Sequence[str]) -> tuple[str, ...]:
    """Camera names a port offers: the model's, or the free camera when it has none."""
    return tuple(cameras) or (FREE_CAMERA,)


def write_hil_file(run_dir: Path, task: str, ports: list[dict[str, Any]], finished: bool = False) -> None:
    """Write ``run_dir/hil.json`` atomically: the job's ports (``ActorPool.hil_ports``), whether it ended."""
    data = {
        "v": PROTOCOL_VERSION,
        "task": task,
        "actors": ports,
        "updated_at": time.time(),
        "finished": finished,
    }
    atomic_write(run_dir / HIL_FILE, lambda f: f.write(json.dumps(data, indent=2).encode()))


class InterventionLog:
    """What people did in a run, from the actors' statistics and the chunks the learner received.

    ``intervention_rate`` is the share of the steps of the last ``window`` finished episodes that a
    person acted in; ``takeovers_per_episode`` their mean number of takeovers.
    """

    def __init__(self, window: int = 100) -> None:
        self.interventions: deque[int] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.takeovers: deque[int] = deque(maxlen=window)
        self.intervention_transitions = 0
        self.human_labels = {"success": 0, "failure": 0}

    def add_stats(self, stats: ActorStats) -> None:
        """An actor result's ``stats``: its finished episodes and the labels people gave."""
        self.interventions.extend(stats.episode_interventions)
        self.lengths.extend(stats.episode_lengths)
        self.takeovers.extend(stats.episode_takeovers)
        for key in self.human_labels:
            self.human_labels[key] += int(stats.human_labels[key])

    def add_learner_chunk(self, chunk: dict[str, Any]) -> None:
        """A chunk handed to the learner: its flagged steps with a reward count as received."""
        self.intervention_transitions += int((chunk["intervention"] & ~chunk["reward_pending"]).sum())

    def scalars(self) -> dict[str, float]:
        out = {"intervention_transitions": float(self.intervention_transitions)}
        if self.lengths:
            out["intervention_rate"] = sum(self.interventions) / max(sum(self.lengths), 1)
            out["takeovers_per_episode"] = float(np.mean(self.takeovers))
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "intervention_transitions": self.intervention_transitions,
            "human_labels": dict(self.human_labels),
        }
