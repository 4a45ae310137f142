"""Collecting the episodes a batched env finishes: return, length and success of each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpisodeLog:
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)

    def record(self, terminated: np.ndarray, truncated: np.ndarray, info: dict[str, Any]) -> None:
        """Add the episodes that ended at this step (from one ``env.step`` result)."""
        done = np.flatnonzero(terminated | truncated)
        self.returns += info["episode_return"][done].tolist()
        self.lengths += info["episode_length"][done].tolist()
        self.successes += info["success"][done].tolist()

    def __len__(self) -> int:
        return len(self.returns)

    def means(self) -> dict[str, float | None]:
        """Mean return, length and success rate (None when no episode ended)."""
        if not self.returns:
            return {"return": None, "length": None, "success": None}
        return {
            "return": float(np.mean(self.returns)),
            "length": float(np.mean(self.lengths)),
            "success": float(np.mean(self.successes)),
        }
