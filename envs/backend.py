"""Batched MuJoCo backend: N environments of one task stepped together on ``mujoco.batch.Batch``.

The physics of all N environments runs in MuJoCo's own thread pool (no Python per env and
per substep); task terms then read the bound state arrays ``[N, ...]`` once per control
step with numpy. Subclasses (tasks) fill in actions, observations, rewards, terminations and
resets; this class owns stepping, auto-reset, episode bookkeeping and rendering.

Contract (DESIGN.md): ``reset() -> obs``, ``step(actions[N, A]) -> obs, reward, terminated,
truncated, info``, with auto-reset, time-outs kept apart from terminations, ``info["success"]``
per env, and ``render(camera) -> uint8[N, H, W, 3]``. ``info["final_obs"]`` holds the last
observation of the episodes listed in ``info["final_ids"]``: the truncated ones, or every
ended one when ``final_obs_on_termination`` is set. With ``render_ended`` set (camera, height,
width, shadows), ``info["final_frames"]`` holds a frame of every ended episode's last state,
rendered before the auto-reset, for the envs in ``info["final_frame_ids"]`` (a reward model labels
the state an episode ended in, which the observation after the step no longer shows).
``end_episodes(ids, success)`` ends chosen episodes at the next step, whatever the task says (a person's
label or reset in a human-in-the-loop session).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import mujoco
import numpy as np
from mujoco import batch as mj_batch

from striata.envs.rendering import make_renderer
from striata.envs.tasks.base import TaskConfig

Obs = np.ndarray | dict[str, np.ndarray]


def _make_batch(model: mujoco.MjModel, num_envs: int, threads: int, cfg: object) -> Any:
    """The physics batch the task's config asks for (``backend``); tasks without a TaskConfig get MuJoCo's.

    Tasks set ``self.cfg`` before calling ``BatchedEnv.__init__``, which is where the choice is read.
    """
    if isinstance(cfg, TaskConfig) and cfg.backend == "warp":
        from striata.envs.warp_batch import WarpBatch  # mujoco-warp is an optional dependency

        return WarpBatch(model, num_envs, cfg.warp.device, cfg.warp.nconmax, cfg.warp.njmax)
    return mj_batch.Batch(model, nsim=num_envs, nthread=threads, persistent=True)


class FrameRequest(NamedTuple):
    """What ``render`` should draw: a camera (or a tuple of them), the frame size, and whether shadows and
    reflections are on."""

    camera: str | int | tuple[str | int, ...] = -1
    height: int = 128
    width: int = 128
    shadows: bool = True


class ActionError(ValueError):
    """Actions of the wrong shape or with non-finite values."""


class BatchedEnv(ABC):
    """Base class of every batched task."""

    action_dim: int
    observation_dim: int
    # When False, info["final_obs"] covers truncated episodes only (what bootstrapping needs).
    final_obs_on_termination: bool = False
    # When set, every ended episode's last state is rendered before the reset (info["final_frames"]).
    render_ended: FrameRequest | None = None

    def __init__(
        self,
        model: mujoco.MjModel,
        num_envs: int,
        decimation: int,
        max_episode_steps: int,
        num_threads: int | None = None,
        seed: int | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.model = model
        self.num_envs = num_envs
        self.decimation = decimation
        self.max_episode_steps = max_episode_steps
        self.step_dt = model.opt.timestep * decimation
        threads = num_threads or min(os.cpu_count() or 1, num_envs)
        self.batch = _make_batch(model, num_envs, threads, getattr(self, "cfg", None))
        self.rng = np.random.default_rng(seed)
        self.qpos = self.batch.bind("qpos")
        self.qvel = self.batch.bind("qvel")
        self.ctrl = self.batch.bind("ctrl")
        self.xpos = self.batch.bind("xpos")
        self.xquat = self.batch.bind("xquat")
        self.batch.reset()
        # Resetting by copying the initial state rows is much cheaper than Batch.reset per call.
        self._initial_state = self.batch.state[0].copy()
        self.episode_step = np.zeros(num_envs, dtype=np.int64)
        self.episode_return = np.zeros(num_envs)
        self._renderers: dict[tuple[int, int, bool], mujoco.Renderer] = {}
        self._render_data: mujoco.MjData | None = None
        # env id -> outcome of the episode ended at the next step (see end_episodes).
        self._end_requests: dict[int, bool | None] = {}

    # ----------------------------------------------------------------- task hooks
    @abstractmethod
    def _reset_envs(self, ids: np.ndarray) -> None:
        """Write a fresh initial state for envs ``ids``; derived fields are refreshed after."""

    @abstractmethod
    def _apply_actions(self, actions: np.ndarray) -> None:
        """Turn policy actions into actuator controls (``self.ctrl``) and any other inputs."""

    @abstractmethod
    def _observe(self, ids: np.ndarray | None = None) -> Obs:
        """Observations of envs ``ids`` (all when None) from the current state."""

    @abstractmethod
    def _reward(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Reward [N] and its named terms [N] each."""

    @abstractmethod
    def _terminated(self) -> np.ndarray:
        """Termination flags [N] (failure or task completion; no bootstrapping)."""

    @abstractmethod
    def _success(self) -> np.ndarray:
        """Per-env success flags [N]."""

    def _truncated(self) -> np.ndarray:
        """Time-out flags [N] (bootstrapped by learners). Tasks may add their own limits."""
        return self.episode_step >= self.max_episode_steps

    def _step_physics(self) -> None:
        """Advance the physics one control step (``decimation`` substeps) under ``self.ctrl``."""
        self.batch.step(nstep=self.decimation, stage=mujoco.mjtStage.mjSTAGE_VEL)

    def _after_physics(self) -> None:  # noqa: B027 - an optional hook
        """Advance task state that moves with time (reference motion, pushes). Default: nothing."""

    def _state_changed(self, ids: np.ndarray | None = None) -> None:  # noqa: B027 - an optional hook
        """The state of envs ``ids`` (all when None) changed: drop or refresh what the task cached."""

    # ----------------------------------------------------------------- contract
    def reset(self) -> Obs:
        self._end_requests.clear()
        self._reset(np.arange(self.num_envs))
        return self._observe()

    def step(self, actions: np.ndarray) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = self._check_actions(actions)
        self._apply_actions(actions)
        self._step_physics()
        self.episode_step += 1
        self._state_changed()
        self._after_physics()

        terminated = self._terminated()
        truncated = self._truncated() & ~terminated
        reward, terms = self._reward()
        success = self._success()
        if self._end_requests:
            terminated, truncated, success = self._requested_ends(terminated, truncated, success)
        self.episode_return += reward
        done = terminated | truncated
        info: dict[str, Any] = {
            "success": success,
            "reward_terms": terms,
            "episode_return": np.where(done, self.episode_return, np.nan),
            "episode_length": np.where(done, self.episode_step, 0),
        }
        # Learners bootstrap from the last observation of a time-out only; a terminated episode's
        # last observation is computed when asked for (Gymnasium's view), as it costs a second pass.
        final = done if self.final_obs_on_termination else truncated
        if final.any():
            info["final_ids"] = np.flatnonzero(final)
            info["final_obs"] = self._observe(info["final_ids"])
        if done.any() and self.render_ended is not None:
            info["final_frame_ids"] = np.flatnonzero(done)
            request = self.render_ended
            info["final_frames"] = self.render(
                request.camera, request.height, request.width, ids=info["final_frame_ids"],
                shadows=request.shadows,
            )  # fmt: skip
        if done.any():
            self._reset(np.flatnonzero(done))
        return self._observe(), reward, terminated, truncated, info

    def end_episodes(self, ids: np.ndarray, success: bool | None) -> None:
        """End the episodes of envs ``ids`` at the next ``step``, whatever the task says then.

        ``success=True``: terminated, ``info["success"]`` True (nothing to bootstrap after a success);
        ``False``: truncated, success False (a failure by judgement, not a terminal state of the MDP, so
        learners bootstrap); ``None``: truncated unless the task terminates it anyway, success as the
        task says (a plain reset). The latest request for an env wins.
        """
        for env_id in np.asarray(ids, dtype=np.int64).reshape(-1):
            if not 0 <= env_id < self.num_envs:
                raise IndexError(f"end_episodes: env {env_id} is out of range 0..{self.num_envs - 1}")
            self._end_requests[int(env_id)] = success

    @property
    def camera_names(self) -> list[str]:
        """The model's camera names in model order (what ``render`` takes besides -1, the free camera)."""
        return [self.model.camera(i).name for i in range(self.model.ncam)]

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Write joint state [n, nq] / [n, nv] for envs ``ids`` (all by default) and recompute kinematics."""
        ids = np.arange(self.num_envs) if ids is None else np.asarray(ids)
        self.qpos[ids] = qpos
        self.qvel[ids] = qvel
        self.batch.forward(ids, stage=mujoco.mjtStage.mjSTAGE_VEL)
        self._state_changed()

    def snapshot(self) -> np.ndarray:
        """Copy of every env's full simulation state (the batch's state rows)."""
        return self.batch.state.copy()

    def restore(self, snapshot: np.ndarray) -> None:
        """Return every env to a ``snapshot()``; task bookkeeping (episode counters) is not rewound."""
        self.batch.state[:] = snapshot
        self.batch.forward(stage=mujoco.mjtStage.mjSTAGE_VEL)
        self._state_changed()

    def evaluate(self) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Score the current state without stepping: reward, reward terms and termination flags."""
        reward, terms = self._reward()
        return reward, terms, self._terminated()

    def render(
        self,
        camera: str | int | tuple[str | int, ...] = -1,
        height: int = 128,
        width: int = 128,
        ids: np.ndarray | None = None,
        shadows: bool = True,
    ) -> np.ndarray:
        """RGB frames from one camera of envs ``ids`` (all by default): uint8 [n, H, W, 3].

        A tuple of cameras gives each env's views side by side, uint8 [n, H, len(camera) * W, 3].
        ``shadows=False`` turns shadows, reflections and multisampling off (``envs.rendering``): such
        frames are several times cheaper with software OpenGL.
        """
        if isinstance(camera, tuple):
            views = [self.render(view, height, width, ids, shadows) for view in camera]
            return np.concatenate(views, axis=2)
        key = (height, width, shadows)
        if key not in self._renderers:
            self._renderers[key] = make_renderer(self.model, height, width, shadows)
        renderer = self._renderers[key]
        if self._render_data is None:
            self._render_data = mujoco.MjData(self.model)
        ids = np.arange(self.num_envs) if ids is None else np.asarray(ids)
        frames = np.empty((len(ids), height, width, 3), dtype=np.uint8)
        for i, sim in enumerate(ids):
            self.batch.get_data(int(sim), self._render_data)
            renderer.update_scene(self._render_data, camera=camera)
            frames[i] = renderer.render()
        return frames

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # ----------------------------------------------------------------- internals
    def _requested_ends(
        self, terminated: np.ndarray, truncated: np.ndarray, success: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        terminated, truncated, success = terminated.copy(), truncated.copy(), success.copy()
        for env_id, outcome in self._end_requests.items():
            if outcome is None:
                truncated[env_id] = not terminated[env_id]
            else:
                terminated[env_id], truncated[env_id], success[env_id] = outcome, not outcome, outcome
        self._end_requests.clear()
        return terminated, truncated, success

    def _reset(self, ids: np.ndarray) -> None:
        self.batch.state[ids] = self._initial_state
        self.episode_step[ids] = 0
        self.episode_return[ids] = 0.0
        self._reset_envs(ids)
        self.batch.forward(ids, stage=mujoco.mjtStage.mjSTAGE_VEL)
        self._state_changed(ids)

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        expected = (self.num_envs, self.action_dim)
        if actions.shape != expected:
            raise ActionError(f"actions: expected shape {expected}, got {actions.shape}")
        if not np.isfinite(actions).all():
            bad = np.argwhere(~np.isfinite(actions))[0]
            raise ActionError(f"actions[{bad[0]}, {bad[1]}] is {actions[tuple(bad)]}: actions must be finite")
        return actions
