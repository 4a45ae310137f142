"""Reward-model labels as they travel from the actors to the learner: one typed contract.

An actor's ``FrameLabeller`` (``striata.actors.frame_labels``) collects a label for each frame it sent
the reward server; with every chunk it hands the learner those settled since the last one, as
``Labels``: one row per frame. The relabeller (``striata.learner.relabel``) files them by frame id to
shape rewards; its audit window and ``striata audit-reward`` compare them with the simulator's truth.
It lives in the learner, the lowest part that reads them, so that the actors can import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Labels:
    """Rows of labelled frames, one array per column, all of one length.

    ``frame_ids`` name the frames as the chunks do (``frame_ids[t, n]``); ``ok`` is whether the server
    scored the frame in time, and only then are ``progress`` and ``done_prob`` the model's values.
    ``true_progress`` and ``true_success`` are the simulator's truth for the audit, NaN where unknown (a
    task without a progress term).
    """

    frame_ids: np.ndarray  # int64
    ok: np.ndarray  # bool
    progress: np.ndarray  # float32, as every column below
    done_prob: np.ndarray
    true_progress: np.ndarray
    true_success: np.ndarray

    def __post_init__(self) -> None:
        # Each column is cast to its type once, here (frozen: hence object.__setattr__).
        size = len(self.frame_ids)
        for column in fields(self):
            array = np.asarray(getattr(self, column.name))
            if array.shape != (size,):
                raise ValueError(f"labels: {column.name} has shape {array.shape}, frame_ids ({size},)")
            object.__setattr__(self, column.name, array.astype(_DTYPES.get(column.name, np.float32)))

    def __len__(self) -> int:
        return len(self.frame_ids)

    @classmethod
    def empty(cls) -> Labels:
        """No rows."""
        return cls(*(np.zeros(0) for _ in fields(cls)))

    @classmethod
    def concat(cls, parts: Sequence[Labels]) -> Labels:
        """The rows of ``parts``, in order."""
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(part, c.name) for part in parts]) for c in fields(cls)))

    def select(self, rows: np.ndarray | slice) -> Labels:
        """The rows a boolean mask, an index array or a slice picks."""
        return Labels(*(getattr(self, c.name)[rows] for c in fields(self)))


_DTYPES = {"frame_ids": np.int64, "ok": np.bool_}
