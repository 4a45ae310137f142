"""g1_tracking on MuJoCo Warp with every array on the simulation's device: no copies through the host.

``G1TrackingDeviceEnv`` steps ``num_envs`` G1s in one ``mujoco_warp.Data`` and reads and writes its
fields as torch tensors that share the Warp arrays' memory (``wp.to_torch``). Observations,
rewards, terminations, auto-resets, start-frame sampling and randomisation run as torch operations
on that device, with the same term functions as the CPU env (``observations``, ``rewards``,
``terminations``, ``events``, ``sampling``, ``frame``), and the MDP's constants (reference tables,
joint indices, limits, weights, noise scales) are read from a one-env CPU ``G1TrackingEnv`` of the
same config, so the two backends cannot drift apart. Nothing in ``step`` waits for the device:
done envs are reset by masks, not by host-side index lists.

The surface is the batched-env contract on tensors: ``reset() -> obs`` and
``step(actions) -> (obs, reward, terminated, truncated, info)`` with ``obs = {"policy", "critic"}``
float32 [N, D] and ``info["final_obs"]`` the observations before the auto-reset (all N rows; the
rows of truncated envs are the ones to bootstrap from). Warp's CPU device runs the same code for
tests; on CUDA, ``device`` is e.g. ``"cuda:0"`` and a learner on that device (``learner.gpu_ppo``)
trains without leaving it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from envs.robots.g1 import G1, TRACKED_BODIES
from envs.tasks.g1_tracking import events, observations, rewards, terminations
from envs.tasks.g1_tracking.config import G1TrackingConfig
from envs.tasks.g1_tracking.env import G1TrackingEnv
from envs.tasks.g1_tracking.frame import TrackingFrame
from envs.tasks.g1_tracking.sampling import AdaptiveStartSampler


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

        from envs.warp_batch import WarpBatch

        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if device.startswith("cuda") and not wp.is_cuda_available():
            raise DeviceUnavailableError(f"device {device!r}: Warp finds no CUDA device here (--device cpu?)")
        self._mjw, self._wp = mjw, wp
        self.cfg = cfg
        self.num_envs = num_envs
        # The MDP's constants come from the CPU env of the same config, so the backends cannot drift.
        template = G1TrackingEnv(cfg.model_copy(update={"backend": "cpu"}), num_envs=1, seed=seed)
        self.template = template
        self.action_dim = template.action_dim
        self.observation_dim = template.observation_dim
        self.observation_terms = template.observation_terms
        self.decimation, self.step_dt = template.decimation, template.step_dt
        self.max_episode_steps = template.max_episode_steps
        self.batch = WarpBatch(template.model, num_envs, device, nconmax, njmax)
        self.device = torch.device(wp.device_to_torch(self.batch.device))
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(seed)
        with wp.ScopedDevice(self.batch.device):
            mjw.reset_data(self.batch.model, self.batch.data)
        data = self.batch.data
        self.qpos, self.qvel, self.ctrl = (wp.to_torch(getattr(data, k)) for k in ("qpos", "qvel", "ctrl"))
        self.xpos, self.xquat = wp.to_torch(data.xpos), wp.to_torch(data.xquat)
        self.xmat, self.sensordata = wp.to_torch(data.xmat), wp.to_torch(data.sensordata)

        def t(x: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(np.array(x), dtype=dtype, device=self.device)

        long = torch.int64
        self.joint_qpos_adr = t(template.joint_qpos_adr, long)
        self.joint_dof_adr = t(template.joint_dof_adr, long)
        self.body_ids, self.end_effectors = t(template.body_ids, long), t(template.end_effectors, long)
        self.soft_lower, self.soft_upper = t(template.soft_lower), t(template.soft_upper)
        self.body_weights = t(template.body_weights)
        self.reward_weights = template.reward_weights
        self.velocity_columns = template._velocity_columns
        self.ref_qpos, self.ref_qvel = t(template._ref_qpos), t(template._ref_qvel)
        self.ref_table = t(template._ref_table)
        self.ref_layout = template._ref_layout
        self.num_frames = template.reference.num_frames
        self.anchor, self.root = template.anchor, template.root
        self.action_scale = t(template.action_scale)
        self.obs_noise = None if template._obs_noise is None else t(template._obs_noise)
        self.reset_noise = t(template._reset_noise_scales)

        rand = cfg.randomization
        n = num_envs
        self.default_joint_pos = t(np.broadcast_to(G1.default_pos, (n, self.action_dim)))
        if rand.enabled:
            offsets = events.default_pose_offsets(self.rng, n, self.action_dim, rand.default_pos_offset)
            self.default_joint_pos = self.default_joint_pos + offsets
        self.sampler = AdaptiveStartSampler(
            self.num_frames, template.frames_per_bin, cfg.sampling, self.rng, self.ref_table
        )
        self.frame_index = torch.zeros(n, dtype=long, device=self.device)
        self.episode_step = torch.zeros(n, dtype=long, device=self.device)
        self.actions = torch.zeros(n, self.action_dim, device=self.device)
        self.prev_actions = torch.zeros_like(self.actions)
        self.next_push = torch.full((n,), float("inf"), device=self.device)

    # ----------------------------------------------------------------- contract
    def reset(self) -> dict[str, torch.Tensor]:
        self._reset(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self._observe(self._gather())

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        if actions.shape != (self.num_envs, self.action_dim):
            expected = (self.num_envs, self.action_dim)
            raise ValueError(f"actions: expected shape {expected}, got {tuple(actions.shape)}")
        self.prev_actions, self.actions = self.actions, actions
        self.ctrl.copy_(self.default_joint_pos + self.action_scale * actions)
        rand = self.cfg.randomization
        if rand.enabled:
            now = self.episode_step.to(torch.float32) * self.step_dt
            due = now >= self.next_push
            kick = events.push_velocities(self.rng, self.num_envs, rand)
            self.qvel[:, :6] += torch.where(due[:, None], kick, 0.0)
            self.next_push = torch.where(due, events.next_push_times(self.rng, now, rand), self.next_push)
        self._physics(self.decimation)
        self.episode_step += 1
        self.frame_index = torch.clamp(self.frame_index + 1, max=self.num_frames - 1)
        self.sampler.update()

        frame = self._gather()
        rel_pos, rel_quat = frame.relative_reference()
        flags = terminations.terminations(frame, self.cfg.terminations, rel_pos, self.end_effectors)
        terminated = torch.stack(list(flags.values())).any(dim=0)
        at_end = self.frame_index >= self.num_frames - 1
        truncated = ((self.episode_step >= self.max_episode_steps) | at_end) & ~terminated
        terms = rewards.tracking_terms(frame, self.cfg.rewards, self.body_weights, rel_pos, rel_quat)
        terms["action_rate"] = rewards.action_rate(frame)
        limits = (self.soft_lower, self.soft_upper)
        terms["joint_limit"] = rewards.joint_limit_violation(frame.joint_pos, *limits)
        reward = sum(self.reward_weights[name] * value for name, value in terms.items()) * self.step_dt
        info = {
            "success": at_end & ~terminated,
            "final_obs": self._observe(frame),
            "episode_length": self.episode_step.clone(),
            "reward_terms": terms,
        }
        self.sampler.record_failures(self.frame_index, weights=terminated)
        self._reset(terminated | truncated)
        return self._observe(self._gather()), reward, terminated, truncated, info

    # ----------------------------------------------------------------- internals
    def _physics(self, nstep: int) -> None:
        with self._wp.ScopedDevice(self.batch.device):
            for _ in range(nstep):
                self._mjw.step(self.batch.model, self.batch.data)
            # mjw.step leaves kinematics and sensors at the state before its last integration.
            self._mjw.step1(self.batch.model, self.batch.data)

    def _reset(self, done: torch.Tensor) -> None:
        """Put the ``done`` envs at a sampled reference frame (all envs are drawn for, none waits)."""
        n = self.num_envs
        frames = self.sampler.sample(n)
        qpos, qvel = self.ref_qpos[frames].clone(), self.ref_qvel[frames].clone()
        rand = self.cfg.randomization
        if rand.enabled:
            events.perturb_reset_state(self.rng, qpos, qvel, self.reset_noise, self.joint_qpos_adr)
            joints = qpos[:, self.joint_qpos_adr]
            qpos[:, self.joint_qpos_adr] = torch.clamp(joints, self.soft_lower, self.soft_upper)
            zero = torch.zeros(n, device=self.device)
            self.next_push = torch.where(done, events.next_push_times(self.rng, zero, rand), self.next_push)
        rows = done[:, None]
        self.qpos.copy_(torch.where(rows, qpos.to(self.qpos.dtype), self.qpos))
        self.qvel.copy_(torch.where(rows, qvel.to(self.qvel.dtype), self.qvel))
        self.frame_index = torch.where(done, frames, self.frame_index)
        self.episode_step = torch.where(done, 0, self.episode_step)
        self.actions = torch.where(rows, 0.0, self.actions)
        self.prev_actions = torch.where(rows, 0.0, self.prev_actions)
        # Positions, velocities and sensors of the new states (the others are recomputed unchanged).
        with self._wp.ScopedDevice(self.batch.device):
            self._mjw.step1(self.batch.model, self.batch.data)

    def _gather(self) -> TrackingFrame:
        nb = len(TRACKED_BODIES)
        qpos, qvel = self.qpos, self.qvel
        velocities = self.sensordata[:, self.velocity_columns].reshape(-1, 2, nb, 3)
        table = self.ref_table[self.frame_index]
        ref = {name: table[:, sl].reshape(-1, *shape) for name, (sl, shape) in self.ref_layout.items()}
        return TrackingFrame.of(
            ref,
            joint_pos=qpos[:, self.joint_qpos_adr],
            joint_vel=qvel[:, self.joint_dof_adr],
            default_joint_pos=self.default_joint_pos,
            root_quat=qpos[:, 3:7],
            root_lin_vel_w=qvel[:, :3],
            root_ang_vel_b=qvel[:, 3:6],
            body_pos=self.xpos[:, self.body_ids],
            body_quat=self.xquat[:, self.body_ids],
            body_rot=self.xmat[:, self.body_ids].reshape(-1, nb, 3, 3),
            body_lin_vel=velocities[:, 0],
            body_ang_vel=velocities[:, 1],
            actions=self.actions,
            prev_actions=self.prev_actions,
            anchor=self.anchor,
            root=self.root,
        )

    def _observe(self, frame: TrackingFrame) -> dict[str, torch.Tensor]:
        terms = observations.policy_terms(frame)
        return {
            "policy": observations.policy_obs(terms, self.observation_terms, self.obs_noise, self.rng),
            "critic": observations.critic_obs(frame, terms),
        }

    def close(self) -> None:
        self.template.close()
