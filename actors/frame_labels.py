"""The actor's side of the reward model: render frames every k steps, submit them, collect the labels.

``FrameLabeller`` runs in the actor's stepping thread. After every env step it renders the frame of
each labelled env and submits it through ``striata.reward_server.client.RewardClient``, which never blocks
(a dead or full server turns into ``dropped`` labels). Every ``every_k`` steps all envs are labelled;
an episode that ended is always labelled, with the frame of its last state, which the env renders
before its auto-reset when ``env.render_ended`` is set. A frame is the state *after* the step, so
``frame_ids[t, n]`` of the chunk names the potential of ``s_{t+1}`` (see ``striata.learner.relabel``).

With several cameras, a request carries one frame of each, rendered at the same state.

Requests carry (episode id, t): episode ids are counted per actor process, t is the step within the
episode. Replies are matched back to frame ids by them. Each frame also keeps the simulator's truth
(``info["progress"]``, ``info["success"]``) so the learner can audit the model.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from striata.actors.result import LabelStats
from striata.envs.backend import FrameRequest
from striata.learner.labels import Labels
from striata.reward_server.client import RewardClient, RewardLabel


@dataclass(frozen=True)
class RewardSpec:
    """Plain data (Ray ships it to the actors): where the server is and what to send it."""

    endpoint: str
    task_text: str
    cameras: tuple[str, ...] = ("front",)
    render_cameras: tuple[str, ...] | None = None  # the env's names for ``cameras``; default: the same
    height: int = 96
    width: int = 96
    shadows: bool = True
    every_k: int = 1
    deadline_ms: float = 2000.0


def camera_views(frame: np.ndarray, cameras: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A frame of several cameras rendered side by side (``FrameRequest`` with a camera tuple), by camera."""
    return dict(zip(cameras, np.split(frame, len(cameras), axis=1), strict=True))


class FrameLabeller:
    def __init__(self, spec: RewardSpec, actor_id: int, env: Any) -> None:
        self.spec = spec
        self.env = env
        render = spec.render_cameras or spec.cameras
        # Several cameras render side by side in one frame, split back into the request's views.
        camera = render[0] if len(render) == 1 else tuple(render)
        self.request = FrameRequest(camera, spec.height, spec.width, spec.shadows)
        env.render_ended = self.request
        n = env.num_envs
        self.client = RewardClient(spec.endpoint, actor_id, deadline_ms=spec.deadline_ms)
        self.episode = np.arange(n, dtype=np.int64)
        self._next_episode = n
        self.episode_step = np.zeros(n, dtype=np.int64)
        self.held = np.full(n, -1, dtype=np.int64)
        self._next_frame = 0
        self._steps = 0
        # (episode, t) -> (frame id, true progress, true success) until the label comes back.
        self._sent: dict[tuple[int, int], tuple[int, float, float]] = {}
        self._rows: list[tuple[int, bool, float, float, float, float]] = []
        self.statuses: Counter[str] = Counter()
        self.frames_sent = 0
        self.render_s = 0.0
        self._round_trip_ms: list[float] = []

    def chunk_start(self) -> np.ndarray:
        """``start_frame_ids`` of the chunk about to start: each env's held frame."""
        return self.held.copy()

    def after_step(self, terminated: np.ndarray, truncated: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Render and submit this step's frames; returns ``frame_ids`` [N] (-1 where none was sent)."""
        n = self.env.num_envs
        ended = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        self.episode_step += 1
        frame_ids = np.full(n, -1, dtype=np.int64)
        start = time.perf_counter()
        frames: dict[int, np.ndarray] = {}
        if "final_frame_ids" in info:
            frames.update(zip(info["final_frame_ids"].tolist(), info["final_frames"], strict=True))
        if self._steps % self.spec.every_k == self.spec.every_k - 1:
            live = np.flatnonzero(~ended)
            if live.size:
                rendered = self.env.render(*self.request[:3], ids=live, shadows=self.request.shadows)
                frames.update(zip(live.tolist(), rendered, strict=True))
        self.render_s += time.perf_counter() - start
        self._steps += 1
        progress = info.get("progress")
        for env_id, frame in sorted(frames.items()):
            frame_ids[env_id] = self._submit(env_id, frame, progress, info["success"])
        self.held = np.where(frame_ids >= 0, frame_ids, self.held)
        done = np.flatnonzero(ended)
        self.held[done] = -1
        self.episode_step[done] = 0
        self.episode[done] = self._next_episode + np.arange(done.size)
        self._next_episode += done.size
        self._collect(self.client.poll())
        return frame_ids

    def _submit(
        self, env_id: int, frame: np.ndarray, progress: np.ndarray | None, success: np.ndarray
    ) -> int:
        frame_id = self._next_frame
        self._next_frame += 1
        episode, t = int(self.episode[env_id]), int(self.episode_step[env_id])
        truth = math.nan if progress is None else float(progress[env_id])
        self._sent[(episode, t)] = (frame_id, truth, float(success[env_id]))
        self.frames_sent += 1
        self.client.submit(episode, t, self.spec.task_text, camera_views(frame, self.spec.cameras))
        return frame_id

    def _collect(self, labels: list[RewardLabel]) -> None:
        for label in labels:
            sent = self._sent.pop((label.episode_id, label.t), None)
            self.statuses[label.status] += 1
            if sent is None:
                continue
            if label.ok and math.isfinite(label.round_trip_ms):
                self._round_trip_ms.append(label.round_trip_ms)
            frame_id, truth, success = sent
            self._rows.append((frame_id, label.ok, label.progress, label.done_prob, truth, success))

    def take_labels(self) -> tuple[Labels, LabelStats]:
        """Labels settled since the last call (for ``striata.learner.relabel``), label statistics."""
        self._collect(self.client.poll())
        rows, self._rows = self._rows, []
        labels = Labels(*(np.array(column) for column in zip(*rows, strict=True))) if rows else Labels.empty()
        stats = LabelStats(
            statuses=dict(self.statuses),
            frames_sent=self.frames_sent,
            render_s=self.render_s,
            in_flight=self.client.in_flight,
            round_trip_ms=float(np.mean(self._round_trip_ms)) if self._round_trip_ms else math.nan,
        )
        self.statuses.clear()
        self.frames_sent = 0
        self.render_s = 0.0
        self._round_trip_ms = []
        return labels, stats

    def settle(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until every frame sent has its label: a reply, late or failed."""
        give_up = time.monotonic() + timeout_s
        while self._sent and time.monotonic() < give_up:
            self._collect(self.client.poll())
            time.sleep(0.005)

    def close(self) -> None:
        self.client.close()
