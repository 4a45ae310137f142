"""g1_tracking on MuJoCo Warp with every array on the simulation's device: no copies through the host.

``G1TrackingDeviceEnv`` steps ``num_envs`` G1s in one ``mujoco_warp.Data`` and reads and writes its
fields as torch tensors that share the Warp arrays' memory (``wp.to_torch``). Observations,
rewards, terminations, auto-resets, start-frame sampling and randomisation run as torch operations
on that device through the same ``mdp.TrackingMDP`` as the CPU env, built from the same scene and
clip and converted to tensors, so the two backends cannot drift apart. Nothing in ``step`` waits for
the device: done envs are reset by masks, not by host-side index lists.

The surface is the batched-env contract on tensors: ``reset() -> obs`` and
``step(actions) -> (obs, reward, terminated, truncated, info)`` with ``obs = {"policy", "critic"}``
float32 [N, D] and ``info["final_obs"]`` the observations before the auto-reset (all N rows; the
rows of truncated envs are the ones to bootstrap from). Warp's CPU device runs the same code for
tests; on CUDA, ``device`` is e.g. ``"cuda:0"`` and a learner on that device
(``learner.device_rollout``) trains without leaving it.
"""

from __future__ import annotations

import numpy as np
import torch

from striata.envs.tasks.g1_tracking import events
from striata.envs.tasks.g1_tracking.config import G1TrackingConfig
from striata.envs.tasks.g1_tracking.env import build_g1_scene
from striata.envs.tasks.g1_tracking.frame import TrackingFrame
from striata.envs.tasks.g1_tracking.mdp import SimState, TrackingMDP, load_motion


class DeviceUnavailableError(RuntimeError):
    """The requested simulation device does not exist on this machine."""


class G1TrackingDeviceEnv:
    """``num_envs`` G1s tracking the reference clip, simulated and scored on one Warp device."""

    def __init__(
        self,
        cfg: G1TrackingConfig,
        num_envs: int,
        device: str = "cuda:0",
        seed: int = 0,
        nconmax: int | None = None,
        njmax: int | None = None,
    ) -> None:
        try:
            import mujoco_warp as mjw
            import warp as wp
        except ImportError as exc:
            raise DeviceUnavailableError(
                f"the MuJoCo Warp backend needs mujoco-warp and warp-lang ({exc}): "
                "pip install 'striata[warp]'"
            ) from None

        from striata.envs.warp_batch import WarpBatch

        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if device.startswith("cuda") and not wp.is_cuda_available():
            raise DeviceUnavailableError(f"device {device!r}: Warp finds no CUDA device here (--device cpu?)")
        self._mjw, self._wp = mjw, wp
        self.cfg = cfg
        self.num_envs = num_envs
        model = build_g1_scene(cfg.physics_dt)
        self.decimation = cfg.decimation
        self.step_dt = model.opt.timestep * cfg.decimation
        self.max_episode_steps = cfg.max_episode_steps
        self.batch = WarpBatch(model, num_envs, device, nconmax, njmax)
        self.device = torch.device(wp.device_to_torch(self.batch.device))

        def tensor(x: np.ndarray) -> torch.Tensor:
            dtype = torch.float32 if np.issubdtype(x.dtype, np.floating) else torch.int64
            return torch.as_tensor(x, dtype=dtype, device=self.device)

        reference = load_motion(cfg, model, fps=1.0 / self.step_dt)
        self.mdp = TrackingMDP.build(cfg, model, reference, self.step_dt).map_arrays(tensor)
        self.action_dim = self.mdp.action_dim
        self.observation_terms = self.mdp.observation_terms
        self.observation_dim = self.mdp.observation_dim
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(seed)
        self.delay_rng = np.random.default_rng(seed)  # drawn on the host: a step never waits on the device
        with wp.ScopedDevice(self.batch.device):
            mjw.reset_data(self.batch.model, self.batch.data)
        data = self.batch.data
        self.qpos, self.qvel, self.ctrl = (wp.to_torch(getattr(data, k)) for k in ("qpos", "qvel", "ctrl"))
        self.xpos, self.xquat = wp.to_torch(data.xpos), wp.to_torch(data.xquat)
        self.xmat, self.sensordata = wp.to_torch(data.xmat), wp.to_torch(data.sensordata)

        n = num_envs
        self.default_joint_pos = self.mdp.default_joint_pos(self.rng, n)
        if cfg.randomization.enabled:
            self.mdp.randomize_friction(self.rng, wp.to_torch(self.batch.per_world("geom_friction")))
        self.sampler = self.mdp.start_sampler(self.rng)
        long = torch.int64
        self.frame_index = torch.zeros(n, dtype=long, device=self.device)
        self.episode_step = torch.zeros(n, dtype=long, device=self.device)
        self.actions = torch.zeros(n, self.action_dim, device=self.device)
        self.prev_actions = torch.zeros_like(self.actions)
        self.next_push = torch.full((n,), float("inf"), device=self.device)

    # ----------------------------------------------------------------- contract
    def reset(self) -> dict[str, torch.Tensor]:
        self._reset(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self.mdp.observe(self._gather(), self.rng)

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        if actions.shape != (self.num_envs, self.action_dim):
            expected = (self.num_envs, self.action_dim)
            raise ValueError(f"actions: expected shape {expected}, got {tuple(actions.shape)}")
        self.prev_actions, self.actions = self.actions, actions
        targets = self.mdp.joint_targets(self.default_joint_pos, actions)
        rand = self.cfg.randomization
        if rand.enabled:
            now = self.episode_step.to(torch.float32) * self.step_dt
            due = now >= self.next_push
            kick = events.push_velocities(self.rng, self.num_envs, rand)
            self.qvel[:, :6] += torch.where(due[:, None], kick, 0.0)
            self.next_push = torch.where(due, events.next_push_times(self.rng, now, rand), self.next_push)
        # In chunks up to the ticks where some env's delayed targets arrive (cfg.action_delay_ticks).
        delays = self.mdp.action_delays(self.delay_rng, self.num_envs)
        held = self.ctrl.clone()
        tick = 0
        for until in np.unique(np.append(delays, self.decimation)):
            if until > tick:
                late = torch.as_tensor(delays > tick, device=self.device)
                self.ctrl.copy_(torch.where(late[:, None], held, targets))
                self._physics(int(until) - tick, final_kinematics=until == self.decimation)
                tick = int(until)
        self.episode_step += 1
        self.frame_index = self.mdp.advance(self.frame_index)
        self.sampler.update()

        frame = self._gather()
        relative = frame.relative_reference()
        terminated = self.mdp.terminated(frame, relative[0])
        at_end = self.mdp.at_clip_end(self.frame_index)
        truncated = ((self.episode_step >= self.max_episode_steps) | at_end) & ~terminated
        reward, terms = self.mdp.reward(frame, relative)
        info = {
            "success": at_end & ~terminated,
            "final_obs": self.mdp.observe(frame, self.rng),
            "episode_length": self.episode_step.clone(),
            "reward_terms": terms,
        }
        self.sampler.record_failures(self.frame_index, weights=terminated)
        self._reset(terminated | truncated)
        return self.mdp.observe(self._gather(), self.rng), reward, terminated, truncated, info

    # ----------------------------------------------------------------- internals
    def _physics(self, nstep: int, final_kinematics: bool = True) -> None:
        with self._wp.ScopedDevice(self.batch.device):
            for _ in range(nstep):
                self._mjw.step(self.batch.model, self.batch.data)
            if final_kinematics:
                # mjw.step leaves kinematics and sensors at the state before its last integration.
                self._mjw.step1(self.batch.model, self.batch.data)

    def _reset(self, done: torch.Tensor) -> None:
        """Put the ``done`` envs at a sampled reference frame (all envs are drawn for, none waits)."""
        n = self.num_envs
        frames = self.sampler.sample(n)
        standing = self.mdp.standing_starts(self.rng, n)
        if standing is not None:
            frames = torch.where(standing, 0, frames)
        qpos, qvel = self.mdp.reset_state(frames, self.rng, standing)
        rand = self.cfg.randomization
        if rand.enabled:
            zero = torch.zeros(n, device=self.device)
            self.next_push = torch.where(done, events.next_push_times(self.rng, zero, rand), self.next_push)
        rows = done[:, None]
        self.qpos.copy_(torch.where(rows, qpos.to(self.qpos.dtype), self.qpos))
        self.qvel.copy_(torch.where(rows, qvel.to(self.qvel.dtype), self.qvel))
        self.ctrl.copy_(torch.where(rows, self.mdp.holding_targets(self.qpos).to(self.ctrl.dtype), self.ctrl))
        self.frame_index = torch.where(done, frames, self.frame_index)
        self.episode_step = torch.where(done, 0, self.episode_step)
        self.actions = torch.where(rows, 0.0, self.actions)
        self.prev_actions = torch.where(rows, 0.0, self.prev_actions)
        # Positions, velocities and sensors of the new states (the others are recomputed unchanged).
        with self._wp.ScopedDevice(self.batch.device):
            self._mjw.step1(self.batch.model, self.batch.data)

    def _gather(self) -> TrackingFrame:
        sim = SimState(self.qpos, self.qvel, self.xpos, self.xquat, self.xmat, self.sensordata)
        return self.mdp.frame(sim, self.frame_index, self.default_joint_pos, self.actions, self.prev_actions)

    def close(self) -> None:
        """Nothing to release: the Warp arrays go with the env (the batched-env contract's ``close``)."""
