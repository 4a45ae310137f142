"""Demonstrations for SAC/RLPD from disk: intervene sessions and saved buffer files, in one DemoBuffer.

A source is a session root (a LeRobotDataset v3.0 or v2.1, see actors/SESSIONS.md), a ``.npz`` buffer file
(``striata.learner.replay`` format) or a folder of them. Each is checked against the task before anything is
trained: its observation (the key the networks read, ``sac.obs_key``, or a session's only
observation key), with pixel SAC each camera's frames (``sac.cameras``), and its actions must have the
task's shapes; a mismatch is a ``DemoError`` naming the source, the field, and both shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from striata.learner.replay import FIELDS, DemoBuffer, ReplayBuffer
from striata.learner.session_dataset import load_session_transitions, read_session_episodes


class DemoError(ValueError):
    """Demonstrations that cannot be used for this task: one line naming the source and the field."""


@dataclass(frozen=True)
class DemoSource:
    path: str
    kind: str  # "session" or "buffer"
    episodes: int  # sessions only; 0 for buffer files
    transitions: int


def _pick_obs(obs: Any, obs_key: str, where: str, prefix: str) -> tuple[np.ndarray, str]:
    """The observation the networks read, with its name in the source (for errors)."""
    if not isinstance(obs, dict):
        return obs, prefix.rstrip("./")
    if obs_key in obs:
        return obs[obs_key], prefix + obs_key
    if len(obs) == 1:
        key = next(iter(obs))
        return obs[key], prefix + key
    raise DemoError(f"{where}: observation keys {sorted(obs)} lack {obs_key!r} (sac.obs_key)")


def _checked(
    transitions: dict[str, Any],
    where: str,
    kind: str,
    task: str,
    obs_shape: tuple[int, ...],
    action_dim: int,
    obs_key: str,
    cameras: dict[str, tuple[int, int, int]],
) -> dict[str, Any]:
    """``transitions`` with the learner's observations (the state vector, or with ``cameras`` a dict of it
    and their frames), after checking every shape against the task."""
    prefixes = {"obs": "observation.", "next_obs": "next.observation."} if kind == "session" else {}
    out = {field: transitions[field] for field in FIELDS}
    for field in ("obs", "next_obs"):
        prefix = prefixes.get(field, f"{field}/")
        array, name = _pick_obs(transitions[field], obs_key, where, prefix)
        _check_shape(where, name, array, obs_shape, task)
        if not cameras:
            out[field] = array
            continue
        stored = transitions[field] if isinstance(transitions[field], dict) else {}
        frames = {}
        for camera, shape in cameras.items():
            if camera not in stored:
                raise DemoError(
                    f"{where}: no {prefix}{camera} frames; pixel SAC (sac.cameras) needs every camera's "
                    f"frames: record them with `striata demos {task} --set 'cameras=[{','.join(cameras)}]'`"
                )
            _check_shape(where, prefix + camera, stored[camera], shape, task)
            frames[camera] = stored[camera]
        out[field] = {obs_key: array, **frames}
    actions = transitions["actions"]
    if tuple(actions.shape[1:]) != (action_dim,):
        name = "action" if kind == "session" else "actions"
        raise DemoError(
            f"{where}: {name} has shape {tuple(actions.shape[1:])}, the task {task} expects ({action_dim},)"
        )
    return out


def _check_shape(where: str, name: str, array: np.ndarray, shape: tuple[int, ...], task: str) -> None:
    if tuple(array.shape[1:]) != tuple(shape):
        raise DemoError(
            f"{where}: {name} has shape {tuple(array.shape[1:])}, the task {task} expects {tuple(shape)}"
        )


def _buffer_files(path: Path) -> list[Path]:
    if path.is_file() and path.suffix == ".npz":
        return [path]
    return sorted(path.glob("*.npz")) if path.is_dir() else []


def read_source(
    path: Path, on_episode: Callable[[int, int], None] | None = None
) -> tuple[str, int, list[dict[str, Any]]]:
    """(kind, episodes, transition batches) of one source, as stored."""
    if not path.exists():
        raise FileNotFoundError(f"--demos {path} does not exist")
    if (path / "meta" / "info.json").is_file():
        episodes = len(read_session_episodes(path))
        return "session", episodes, [load_session_transitions(path, on_episode)]
    files = _buffer_files(path)
    if not files:
        raise DemoError(f"--demos {path}: neither a session folder (meta/info.json) nor .npz buffer files")
    buffers = [ReplayBuffer.load(f) for f in files]
    return "buffer", 0, [b.transitions() for b in buffers if len(b)]


def load_demos(
    sources: Sequence[Path],
    *,
    task: str,
    obs_shape: tuple[int, ...],
    action_dim: int,
    obs_key: str = "state",
    cameras: dict[str, tuple[int, int, int]] | None = None,
    extra_capacity: int = 0,
    console: Console | None = None,
) -> tuple[DemoBuffer, list[DemoSource]]:
    """One demo buffer with the transitions of every source, in order, and a record per source.

    The buffer has room for every loaded transition plus ``extra_capacity`` (the interventions of the
    run). ``cameras`` (name -> frame shape) keeps those frames beside the state, for pixel SAC.
    ``console`` shows a progress bar over each session's episodes.
    """
    batches: list[dict[str, Any]] = []
    records: list[DemoSource] = []
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True,
        disable=console is None,
    )  # fmt: skip
    with progress:
        for path in sources:
            path = Path(path)
            bar = progress.add_task(f"demos {path.name}", total=None)
            kind, episodes, raw = read_source(
                path, lambda done, total, bar=bar: progress.update(bar, completed=done, total=total)
            )
            checked = [
                _checked(t, f"--demos {path}", kind, task, obs_shape, action_dim, obs_key, cameras or {})
                for t in raw
            ]
            count = sum(len(t["rewards"]) for t in checked)
            if count == 0:
                raise DemoError(f"--demos {path}: holds no transitions")
            batches.extend(checked)
            records.append(DemoSource(str(path), kind, episodes, count))
    buffer = DemoBuffer(max(1, sum(r.transitions for r in records) + extra_capacity))
    for batch in batches:
        buffer.add(batch)
    return buffer, records
