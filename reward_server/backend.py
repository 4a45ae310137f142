"""One interface for every reward model: score a batch of frame sets for a task text.

The server batches requests from many actors and hands each batch to a backend; a backend never
invents a score: a reply it cannot use comes back as a status (``parse_error``, ``model_error``)
with NaN values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

import numpy as np

Mode = Literal["progress", "pairwise_delta", "episode_score", "success", "preference"]
Status = Literal["ok", "timeout", "overloaded", "parse_error", "model_error", "bad_request"]


@dataclass
class ScoreInput:
    """One request as a backend sees it. Frames are uint8 [H, W, 3] per camera name."""

    task: str
    mode: Mode
    frames: dict[str, np.ndarray]
    reference_frames: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ScoreOutput:
    status: Status = "ok"
    progress: float = math.nan
    delta: float = math.nan
    done_prob: float = math.nan
    uncertainty: float = math.nan
    detail: str = ""


class RewardBackend(Protocol):
    """What the server needs of a backend. Two attributes are optional and reach clients in ``health``:
    ``modes`` (the modes it answers; default every mode) and ``cameras`` (the cameras it needs a frame
    from; default None, any camera)."""

    model_id: str
    revision: str
    max_batch: int  # the most inputs one ``score`` call takes

    def score(self, inputs: list[ScoreInput]) -> list[ScoreOutput]:
        """One output per input, in order; failures are statuses, never exceptions or defaults."""
        ...


def served_modes(backend: RewardBackend) -> tuple[str, ...]:
    """The modes ``backend`` answers (its optional ``modes``; every mode when it does not say)."""
    return tuple(getattr(backend, "modes", None) or get_args(Mode))


def needed_cameras(backend: RewardBackend) -> tuple[str, ...] | None:
    """The cameras ``backend`` needs a frame from (its optional ``cameras``), None when any will do."""
    cameras = getattr(backend, "cameras", None)
    return tuple(cameras) if cameras else None


def backend_device(name: str) -> str:
    """A backend config's ``device`` as this process sees it: ``auto`` resolved, CUDA checked to be there."""
    from striata.learner.device import resolve_device
    from striata.reward_server.config import RewardConfigError

    try:
        return str(resolve_device(name))
    except ValueError as exc:
        raise RewardConfigError(f"backend.device: {exc}") from None
