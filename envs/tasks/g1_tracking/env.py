"""The G1 tracking environment: reference motion, actions, terms and randomisation wired on the backend."""

from __future__ import annotations

import re

import mujoco
import numpy as np

from envs.assets import resolve_data_file
from envs.backend import BatchedEnv
from envs.motion import MotionReference, build_reference, constant_pose_motion, load_reference
from envs.robots.actuators import add_position_actuators
from envs.robots.g1 import (
    ANCHOR_BODY,
    END_EFFECTOR_BODIES,
    FOOT_GEOM_PATTERN,
    G1,
    G1_DEFAULT_ROOT_HEIGHT,
    TRACKED_BODIES,
    g1_spec,
)
from envs.rotations import quat_apply_inverse, quat_to_matrix
from envs.tasks.g1_tracking import events, observations, rewards, terminations
from envs.tasks.g1_tracking.config import STAND_MOTION, G1TrackingConfig
from envs.tasks.g1_tracking.frame import TrackingFrame
from envs.tasks.g1_tracking.sampling import AdaptiveStartSampler


def build_g1_scene(physics_dt: float) -> mujoco.MjModel:
    """G1 with PD actuators on a flat floor, lit for rendering, with velocity sensors on tracked bodies."""
    spec = g1_spec()
    add_position_actuators(spec, G1)
    # MuJoCo computes body velocities at the body origin in stage VEL; reading them as sensors
    # saves converting the COM-based cvel in numpy every step.
    for prefix, kind in (
        ("linvel", mujoco.mjtSensor.mjSENS_FRAMELINVEL),
        ("angvel", mujoco.mjtSensor.mjSENS_FRAMEANGVEL),
    ):
        for body in TRACKED_BODIES:
            spec.add_sensor(
                name=f"track_{prefix}_{body}", type=kind, objtype=mujoco.mjtObj.mjOBJ_XBODY, objname=body
            )
    spec.option.timestep = physics_dt
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.iterations = 10
    spec.option.ls_iterations = 20
    spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, 640)
    spec.visual.global_.offheight = max(spec.visual.global_.offheight, 480)
    spec.add_texture(
        name="grid",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        width=256,
        height=256,
        rgb1=[0.15, 0.2, 0.25],
        rgb2=[0.25, 0.3, 0.35],
    )
    spec.add_material(name="grid", textures=["", "grid"], texrepeat=[1, 1], texuniform=True)
    spec.worldbody.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[0, 0, 0.05],
        material="grid",
        contype=1,
        conaffinity=1,
    )
    spec.worldbody.add_light(pos=[0, 0, 3.5], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    return spec.compile()


def _load_reference(cfg: G1TrackingConfig, model: mujoco.MjModel, fps: float) -> MotionReference:
    if cfg.motion.file == STAND_MOTION:
        raw = constant_pose_motion(
            G1_DEFAULT_ROOT_HEIGHT, G1.default_pos, cfg.episode_length_s, fps, source=STAND_MOTION
        )
        return build_reference(raw, model, G1.joint_names, fps)
    return load_reference(
        resolve_data_file(cfg.motion.file),
        model,
        G1.joint_names,
        fps=fps,
        source_fps=cfg.motion.fps,
        allow_pickle=cfg.motion.allow_pickle,
    )


class G1TrackingEnv(BatchedEnv):
    """N G1s each tracking the reference clip from an adaptively sampled start frame."""

    action_dim = len(G1.joint_names)

    def __init__(self, cfg: G1TrackingConfig, num_envs: int, seed: int | None = None) -> None:
        self.cfg = cfg
        self.observation_terms = observations.policy_term_layout(cfg.state_estimation)
        self.observation_dim = sum(size for _, size in self.observation_terms)
        model = build_g1_scene(cfg.physics_dt)
        super().__init__(model, num_envs, cfg.decimation, cfg.max_episode_steps, cfg.num_threads, seed)
        self.xmat = self.batch.bind("xmat")
        self.sensordata = self.batch.bind("sensordata")
        first = model.sensor(f"track_linvel_{TRACKED_BODIES[0]}").adr[0]
        self._velocity_columns = slice(first, first + 2 * 3 * len(TRACKED_BODIES))

        self.reference = _load_reference(cfg, model, fps=1.0 / self.step_dt)
        joint_ids = [model.joint(n).id for n in G1.joint_names]
        self.joint_qpos_adr = model.jnt_qposadr[joint_ids]
        self.joint_dof_adr = model.jnt_dofadr[joint_ids]
        limits = model.jnt_range[joint_ids]
        mid, half = (
            limits.mean(axis=1),
            (limits[:, 1] - limits[:, 0]) / 2 * cfg.rewards.soft_joint_limit_factor,
        )
        self.soft_lower, self.soft_upper = mid - half, mid + half
        self.hard_lower, self.hard_upper = limits[:, 0], limits[:, 1]

        self.body_ids = np.array([model.body(n).id for n in TRACKED_BODIES])
        self.anchor = TRACKED_BODIES.index(ANCHOR_BODY)
        self.root = TRACKED_BODIES.index("pelvis")
        self.end_effectors = np.array([TRACKED_BODIES.index(n) for n in END_EFFECTOR_BODIES])
        ref_ids = self.reference.body_indices(TRACKED_BODIES)
        pelvis = self.reference.body_indices(("pelvis",))[0]
        self.ref_root_lin_vel = self.reference.body_lin_vel_w[:, pelvis]
        self.ref_root_ang_vel = self.reference.body_ang_vel_w[:, pelvis]
        self._ref_qpos, self._ref_qvel = self._reference_joint_state()
        # One [T, K] table, so a step reads every reference quantity with a single gather.
        ref = self.reference
        self._ref_parts = {
            "joint_pos": ref.joint_pos,
            "joint_vel": ref.joint_vel,
            "body_pos": ref.body_pos_w[:, ref_ids],
            "body_quat": ref.body_quat_w[:, ref_ids],
            "body_lin_vel": ref.body_lin_vel_w[:, ref_ids],
            "body_ang_vel": ref.body_ang_vel_w[:, ref_ids],
            "anchor_rot": quat_to_matrix(ref.body_quat_w[:, ref_ids[self.anchor]]),
        }
        self._ref_table = np.concatenate(
            [v.reshape(ref.num_frames, -1) for v in self._ref_parts.values()], axis=1
        )
        self._ref_layout = _layout({k: v.shape[1:] for k, v in self._ref_parts.items()})

        weights = np.array(
            [cfg.keypoint_weights.get(n, 1.0) if cfg.keypoints else 1.0 for n in TRACKED_BODIES],
            dtype=np.float64,
        )
        if weights.sum() <= 0:
            raise ValueError("keypoint_weights: at least one tracked body needs a positive weight")
        self.body_weights = weights / weights.sum()
        self.reward_weights = rewards.term_weights(cfg.rewards)

        rand = cfg.randomization
        self.default_joint_pos = np.broadcast_to(G1.default_pos, (num_envs, self.action_dim)).copy()
        self.action_scale = G1.action_scale
        if rand.enabled:
            self.default_joint_pos += events.default_pose_offsets(
                self.rng, num_envs, self.action_dim, rand.default_pos_offset
            )
            foot_geoms = [
                g for g in range(model.ngeom) if re.fullmatch(FOOT_GEOM_PATTERN, model.geom(g).name)
            ]
            friction = self.batch.expand("geom_friction")
            friction[:, foot_geoms, 0] = events.sample_friction(
                self.rng, num_envs, len(foot_geoms), rand.friction
            )

        self._obs_noise = observations.noise_scales(cfg.observation_noise, self.observation_terms)
        self._reset_noise_scales = events.reset_noise_scales(rand.reset_noise, self.action_dim)
        self.frames_per_bin = max(1, round(cfg.sampling.bin_s / self.step_dt))
        self.sampler = AdaptiveStartSampler(
            self.reference.num_frames, self.frames_per_bin, cfg.sampling, self.rng
        )
        self.frame_index = np.zeros(num_envs, dtype=np.int64)
        self.actions = np.zeros((num_envs, self.action_dim))
        self.prev_actions = np.zeros_like(self.actions)
        self.next_push = np.full(num_envs, np.inf)
        self._last_terminated = np.zeros(num_envs, dtype=bool)
        self._frame: TrackingFrame | None = None
        self._relative: tuple[np.ndarray, np.ndarray] | None = None

    # ----------------------------------------------------------------- reference
    def reference_state(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Full qpos/qvel of the reference at each env's current frame (no noise), as new arrays."""
        t = self.frame_index if ids is None else self.frame_index[ids]
        return self._ref_qpos[t], self._ref_qvel[t]

    def _reference_joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The reference as full qpos/qvel tables [T, nq], [T, nv] (free joint first)."""
        ref = self.reference
        qpos = np.zeros((ref.num_frames, self.model.nq))
        qvel = np.zeros((ref.num_frames, self.model.nv))
        qpos[:, :3] = ref.root_pos
        qpos[:, 3:7] = ref.root_quat
        qpos[:, self.joint_qpos_adr] = ref.joint_pos
        qvel[:, :3] = self.ref_root_lin_vel
        # A free joint's angular velocity is expressed in the body frame.
        qvel[:, 3:6] = quat_apply_inverse(ref.root_quat, self.ref_root_ang_vel)
        qvel[:, self.joint_dof_adr] = ref.joint_vel
        return qpos, qvel

    # ----------------------------------------------------------------- backend hooks
    def _reset_envs(self, ids: np.ndarray) -> None:
        failed = ids[self._last_terminated[ids]]
        if len(failed):
            self.sampler.record_failures(self.frame_index[failed])
        self._last_terminated[ids] = False
        self.frame_index[ids] = self.sampler.sample(len(ids))
        qpos, qvel = self.reference_state(ids)
        rand = self.cfg.randomization
        if rand.enabled:
            events.perturb_reset_state(self.rng, qpos, qvel, self._reset_noise_scales, self.joint_qpos_adr)
            qpos[:, self.joint_qpos_adr] = np.clip(
                qpos[:, self.joint_qpos_adr], self.soft_lower, self.soft_upper
            )
            self.next_push[ids] = events.next_push_times(self.rng, np.zeros(len(ids)), rand)
        self.qpos[ids] = qpos
        self.qvel[ids] = qvel
        self.actions[ids] = 0.0
        self.prev_actions[ids] = 0.0

    def _apply_actions(self, actions: np.ndarray) -> None:
        self.prev_actions = self.actions
        self.actions = actions
        self.ctrl[:] = self.default_joint_pos + self.action_scale * actions
        if self.cfg.randomization.enabled:
            now = self.episode_step * self.step_dt
            due = np.flatnonzero(now >= self.next_push)
            if len(due):
                self.qvel[due, :6] += events.push_velocities(self.rng, len(due), self.cfg.randomization)
                self.next_push[due] = events.next_push_times(self.rng, now[due], self.cfg.randomization)

    def _after_physics(self) -> None:
        self.frame_index = np.minimum(self.frame_index + 1, self.reference.num_frames - 1)
        self.sampler.update()

    def _state_changed(self, ids: np.ndarray | None = None) -> None:
        # After a partial reset only the reset rows of the cached frame are stale: patch them.
        if ids is not None and self._frame is not None:
            self._frame.scatter(ids, self._gather(ids))
        else:
            self._frame = None
        self._relative = None

    def _current(self) -> tuple[TrackingFrame, tuple[np.ndarray, np.ndarray]]:
        if self._frame is None:
            self._frame = self._gather()
        if self._relative is None:
            self._relative = self._frame.relative_reference()
        return self._frame, self._relative

    def _gather(self, ids: np.ndarray | None = None) -> TrackingFrame:
        rows = slice(None) if ids is None else ids
        qpos, qvel = self.qpos[rows], self.qvel[rows]
        body_pos = self.xpos[rows][:, self.body_ids]
        velocities = (
            self.sensordata[rows, self._velocity_columns].copy().reshape(-1, 2, len(TRACKED_BODIES), 3)
        )
        table = self._ref_table[self.frame_index[rows]]
        ref = {name: table[:, sl].reshape(-1, *shape) for name, (sl, shape) in self._ref_layout.items()}
        return TrackingFrame.of(
            ref,
            joint_pos=qpos[:, self.joint_qpos_adr],
            joint_vel=qvel[:, self.joint_dof_adr],
            default_joint_pos=self.default_joint_pos[rows].copy(),
            root_quat=qpos[:, 3:7].copy(),
            root_lin_vel_w=qvel[:, :3].copy(),
            root_ang_vel_b=qvel[:, 3:6].copy(),
            body_pos=body_pos,
            body_quat=self.xquat[rows][:, self.body_ids],
            body_rot=self.xmat[rows][:, self.body_ids].reshape(-1, len(TRACKED_BODIES), 3, 3),
            body_lin_vel=velocities[:, 0],
            body_ang_vel=velocities[:, 1],
            actions=self.actions[rows].copy(),
            prev_actions=self.prev_actions[rows].copy(),
            anchor=self.anchor,
            root=self.root,
        )

    def _observe(self, ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        if self._frame is None:
            self._frame = self._gather()
        frame = self._frame if ids is None else self._gather(ids)
        terms = observations.policy_terms(frame)
        return {
            "policy": observations.policy_obs(terms, self.observation_terms, self._obs_noise, self.rng),
            "critic": observations.critic_obs(frame, terms),
        }

    def _reward(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        frame, (rel_pos, rel_quat) = self._current()
        terms = rewards.tracking_terms(frame, self.cfg.rewards, self.body_weights, rel_pos, rel_quat)
        terms["action_rate"] = rewards.action_rate(frame)
        terms["joint_limit"] = rewards.joint_limit_violation(
            frame.joint_pos, self.soft_lower, self.soft_upper
        )
        reward = sum(self.reward_weights[name] * value for name, value in terms.items()) * self.step_dt
        return reward, terms

    def _terminated(self) -> np.ndarray:
        frame, (rel_pos, _) = self._current()
        flags = terminations.terminations(frame, self.cfg.terminations, rel_pos, self.end_effectors)
        terminated = np.logical_or.reduce(list(flags.values()))
        self._last_terminated = terminated.copy()
        return terminated

    def _truncated(self) -> np.ndarray:
        return super()._truncated() | (self.frame_index >= self.reference.num_frames - 1)

    def _success(self) -> np.ndarray:
        """An episode succeeds when it reaches the end of its clip without falling."""
        return self.frame_index >= self.reference.num_frames - 1


def _layout(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[slice, tuple[int, ...]]]:
    """Column slices of each named block in a table of flattened blocks."""
    out, start = {}, 0
    for name, shape in shapes.items():
        width = int(np.prod(shape))
        out[name] = (slice(start, start + width), shape)
        start += width
    return out
