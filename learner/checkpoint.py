"""Checkpoints: everything a learner needs to resume, written atomically and read weights-only.

``save_checkpoint(path, algo, buffers={"online": online, "demo": demo}, extra={"env_steps": n})``
writes, in this order: each replay buffer beside the checkpoint as ``<path>.<name>.npz`` (see
``buffer_path``), then ``path`` itself (``torch.save`` of plain tensors, numbers and strings):
``algo.state_dict()`` (model, optimiser(s), normalisers, learning rate, counters, the algorithm's own
RNG streams; a pixel SAC's image encoder and target encoder too), the process-wide RNG states (torch
CPU and CUDA, numpy's legacy global, Python's ``random``) and ``extra`` (the launcher's counters; plain
values only). Every file is written to a temporary file and renamed over the old one, so a crash leaves
a complete previous checkpoint; the checkpoint file is written last, so a complete checkpoint never
points at missing buffers. A pixel SAC's buffers hold its camera frames as uint8, uncompressed: a
buffer's file is about its size in memory (``sac.replay_memory_gb`` bounds the online one).

``load_checkpoint(path, algo)`` restores ``algo`` and the global RNGs and returns the ``extra``
dict and the buffers. It loads with ``torch.load(..., weights_only=True)`` only: a checkpoint
cannot run code when read.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from striata.common.files import atomic_write
from striata.learner.replay import DemoBuffer, ReplayBuffer

FORMAT_VERSION = 1
_BUFFER_TYPES: dict[str, type[ReplayBuffer]] = {"ReplayBuffer": ReplayBuffer, "DemoBuffer": DemoBuffer}


class Checkpointable(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LoadedCheckpoint:
    extra: dict[str, Any]
    buffers: dict[str, ReplayBuffer] = field(default_factory=dict)


def buffer_path(path: str | os.PathLike[str], name: str) -> Path:
    """Where the buffer ``name`` of checkpoint ``path`` lives: ``<path>.<name>.npz``."""
    path = Path(path)
    return path.with_name(f"{path.name}.{name}.npz")


def rng_state() -> dict[str, Any]:
    """Process-wide RNG states, as tensors and strings (weights-only loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps([kind, keys.tolist(), pos, has_gauss, cached]),
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    kind, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    path: str | os.PathLike[str],
    algo: Checkpointable,
    buffers: dict[str, ReplayBuffer] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``algo``'s full state, the RNG states, ``extra`` and ``buffers`` (beside) atomically."""
    buffers = buffers or {}
    for name, buffer in buffers.items():
        if not name.isidentifier():
            raise ValueError(f"buffer name {name!r} must be an identifier (it becomes part of a file name)")
        buffer.save(buffer_path(path, name))
    payload = {
        "format": FORMAT_VERSION,
        "algorithm": type(algo).__name__,
        "state": algo.state_dict(),
        "rng": rng_state(),
        "extra": extra or {},
        "buffers": {name: type(buffer).__name__ for name, buffer in buffers.items()},
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(
    path: str | os.PathLike[str], algo: Checkpointable, restore_rng: bool = True
) -> LoadedCheckpoint:
    """Restore ``algo`` (and the global RNGs) from ``path``; return ``extra`` and the saved buffers."""
    # CPU first: RNG states must be CPU tensors; load_state_dict copies weights to algo's device.
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {payload.get('format')}, this code reads {FORMAT_VERSION}"
        )
    if payload["algorithm"] != type(algo).__name__:
        raise ValueError(f"{path} holds a {payload['algorithm']} checkpoint, not {type(algo).__name__}")
    algo.load_state_dict(payload["state"])
    if restore_rng:
        set_rng_state(payload["rng"])
    buffers = {
        name: _BUFFER_TYPES[kind].load(buffer_path(path, name)) for name, kind in payload["buffers"].items()
    }
    return LoadedCheckpoint(extra=payload["extra"], buffers=buffers)
