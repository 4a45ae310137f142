"""Replay buffers for SAC/RLPD: a numpy ring ``ReplayBuffer`` and a ``DemoBuffer`` of demonstrations.

A buffer holds transitions, the output of ``striata.learner.chunk.flatten_transitions``: ``obs`` and
``next_obs`` (arrays or dicts of arrays, e.g. a state vector plus uint8 camera frames), ``actions``,
``rewards``, ``terminated`` and ``intervention``, each with a leading transition axis. Storage is
allocated on the first ``add`` from the shapes and dtypes seen, then fixed; when full the oldest
transitions are overwritten.

Files: ``save(path)`` writes one ``.npz`` (no pickle; dict observations are stored under
``obs/<key>``) atomically: a temporary file in the same folder, fsync, then ``os.replace``, so a
crash leaves the previous file or the new one, never half of one. ``ReplayBuffer.load(path)``
restores the ring exactly (contents, write position). Recorded demonstrations use the same format:
``DemoBuffer.from_files(paths, capacity)`` reads any number of them.

HIL-SERL routing: ``add_transitions(online, demo, transitions)`` puts every transition in the online
buffer and copies those a human produced (``intervention=True``) into the demo buffer too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from striata.common.files import atomic_write

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "intervention")
_DTYPES = {"actions": np.float32, "rewards": np.float32, "terminated": np.bool_, "intervention": np.bool_}
FORMAT_VERSION = 1


def _flatten(transitions: dict[str, Any]) -> dict[str, np.ndarray]:
    """Field arrays by flat name (``obs/<key>`` for dict observations)."""
    missing = [f for f in FIELDS if f not in transitions]
    if missing:
        raise KeyError(f"transitions lack field(s) {missing}; they have {sorted(transitions)}")
    flat: dict[str, np.ndarray] = {}
    for field in FIELDS:
        value = transitions[field]
        if isinstance(value, dict):
            for key, array in value.items():
                flat[f"{field}/{key}"] = np.asarray(array)
        else:
            flat[field] = np.asarray(value, dtype=_DTYPES.get(field))
    return flat


def _unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, array in flat.items():
        field, _, key = name.partition("/")
        if key:
            out.setdefault(field, {})[key] = array
        else:
            out[field] = array
    return out


class ReplayBuffer:
    """Ring buffer of transitions; ``sample`` draws uniformly with the caller's numpy Generator."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.size = 0
        self.ptr = 0  # next row to write
        self._data: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.size

    def add(self, transitions: dict[str, Any]) -> None:
        """Append M transitions (every field with leading axis M); the oldest are overwritten when full."""
        flat = _flatten(transitions)
        counts = {name: len(array) for name, array in flat.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"transition fields have different lengths: {counts}")
        m = next(iter(counts.values()))
        if not self._data:
            self._data = {n: np.zeros((self.capacity, *a.shape[1:]), dtype=a.dtype) for n, a in flat.items()}
        if flat.keys() != self._data.keys():
            raise KeyError(f"transitions have fields {sorted(flat)}, the buffer holds {sorted(self._data)}")
        for name, array in flat.items():
            if array.shape[1:] != self._data[name].shape[1:]:
                raise ValueError(
                    f"{name}: rows of shape {array.shape[1:]}, buffer holds {self._data[name].shape[1:]}"
                )
        if m == 0:
            return
        if m > self.capacity:  # only the newest rows would survive anyway
            flat = {name: array[-self.capacity :] for name, array in flat.items()}
            self.ptr = (self.ptr + m - self.capacity) % self.capacity
            m = self.capacity
        rows = (self.ptr + np.arange(m)) % self.capacity
        for name, array in flat.items():
            self._data[name][rows] = array
        self.ptr = (self.ptr + m) % self.capacity
        self.size = min(self.size + m, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, Any]:
        """``batch_size`` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        rows = rng.integers(0, self.size, size=batch_size)
        return _unflatten({name: array[rows] for name, array in self._data.items()})

    def transitions(self) -> dict[str, Any]:
        """Every stored transition, oldest first (copies)."""
        order = (
            (self.ptr + np.arange(self.size)) % self.capacity
            if self.size == self.capacity
            else slice(0, self.size)
        )
        return _unflatten({name: array[order] for name, array in self._data.items()})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the buffer to ``path`` (.npz, no pickle) atomically."""
        arrays = {name: array[: self.size] for name, array in self._data.items()}
        meta = np.array([FORMAT_VERSION, self.capacity, self.size, self.ptr], dtype=np.int64)
        atomic_write(path, lambda f: np.savez(f, __meta__=meta, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReplayBuffer:
        """The buffer saved at ``path``, with the same capacity, contents and write position."""
        with np.load(path, allow_pickle=False) as npz:
            version, capacity, size, ptr = (int(v) for v in npz["__meta__"])
            if version != FORMAT_VERSION:
                raise ValueError(f"{path}: replay format {version}, this code reads {FORMAT_VERSION}")
            arrays = {name: npz[name] for name in npz.files if name != "__meta__"}
        buffer = cls(capacity)
        if size:
            buffer._data = {n: np.zeros((capacity, *a.shape[1:]), dtype=a.dtype) for n, a in arrays.items()}
            for name, array in arrays.items():
                buffer._data[name][:size] = array
        buffer.size, buffer.ptr = size, ptr
        return buffer


class DemoBuffer(ReplayBuffer):
    """Demonstrations (recorded episodes, then human interventions); same storage and files as replay."""

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]], capacity: int) -> DemoBuffer:
        """A demo buffer holding the transitions of every saved buffer file in ``paths``, in order."""
        demo = cls(capacity)
        for path in paths:
            recorded = ReplayBuffer.load(path)
            if len(recorded):
                demo.add(recorded.transitions())
        return demo


def add_transitions(online: ReplayBuffer, demo: ReplayBuffer | None, transitions: dict[str, Any]) -> int:
    """Add ``transitions`` to ``online``; copy the intervention ones into ``demo`` as well (HIL-SERL).

    Returns how many were copied into the demo buffer.
    """
    online.add(transitions)
    flags = np.asarray(transitions["intervention"], dtype=bool)
    if demo is None or not flags.any():
        return 0

    def pick(value: Any) -> Any:
        return {k: v[flags] for k, v in value.items()} if isinstance(value, dict) else value[flags]

    demo.add({field: pick(transitions[field]) for field in FIELDS})
    return int(flags.sum())
