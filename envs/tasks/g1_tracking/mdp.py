"""The G1 tracking MDP, written once for both backends: constants, frame, rewards, terminations, resets.

``TrackingMDP.build`` precomputes, from the robot model and the reference clip, everything a step
reads (reference tables, joint and body indices, limits, body weights, noise scales, the reward
terms of the config) as numpy arrays; ``map_arrays`` converts them to another array type (torch
tensors on the simulation's device). The CPU env (``env.G1TrackingEnv``, numpy on
``mujoco.batch``) and the device env (``device_env.G1TrackingDeviceEnv``, torch on MuJoCo Warp) each
build one and call the same methods, in the same order, on their own arrays:
``frame`` -> ``terminated`` / ``reward`` -> ``observe``, and ``reset_state`` from the start frames of
``start_sampler``. What differs between them is only how envs are picked (index lists on the CPU,
masks on the device, which never waits for the host).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import mujoco
import numpy as np

from striata.envs.arrays import Array, Rng, namespace, uniform
from striata.envs.assets import resolve_data_file
from striata.envs.motion import MotionReference, build_reference, constant_pose_motion, load_reference
from striata.envs.robots.actuators import (
    VELOCITY_LIMIT_FACTOR,
    braking_deceleration,
    set_actuator_gains,
    soft_joint_limits,
)
from striata.envs.robots.g1 import (
    ANCHOR_BODY,
    END_EFFECTOR_BODIES,
    FOOT_GEOM_PATTERN,
    G1,
    G1_DEFAULT_ROOT_HEIGHT,
    TRACKED_BODIES,
)
from striata.envs.rotations import quat_apply_inverse, quat_mul, quat_to_matrix, yaw_angle, yaw_quat
from striata.envs.tasks.g1_tracking import events, observations, rewards, terminations
from striata.envs.tasks.g1_tracking.config import STAND_MOTION, G1TrackingConfig
from striata.envs.tasks.g1_tracking.frame import TrackingFrame
from striata.envs.tasks.g1_tracking.rewards import RewardContext, WeightedTerm
from striata.envs.tasks.g1_tracking.sampling import AdaptiveStartSampler


def load_motion(cfg: G1TrackingConfig, model: mujoco.MjModel, fps: float) -> MotionReference:
    """The config's clip (or the built-in standing pose) resampled to ``fps`` with the model's kinematics,
    cut to its segment (``motion.start_s`` / ``end_s``)."""
    if cfg.motion.file == STAND_MOTION:
        raw = constant_pose_motion(
            G1_DEFAULT_ROOT_HEIGHT, G1.default_pos, cfg.episode_length_s, fps, source=STAND_MOTION
        )
        return build_reference(raw, model, G1.joint_names, fps)
    reference = load_reference(
        resolve_data_file(cfg.motion.file),
        model,
        G1.joint_names,
        fps=fps,
        source_fps=cfg.motion.fps,
        allow_pickle=cfg.motion.allow_pickle,
    )
    return reference.segment(*cfg.motion.segment)


class SimState(NamedTuple):
    """Rows [n, ...] of the simulation fields a frame is read from, as the backend binds them."""

    qpos: Array
    qvel: Array
    xpos: Array
    xquat: Array
    xmat: Array  # [n, nbody, 9] or [n, nbody, 3, 3]
    sensordata: Array


@dataclass(frozen=True, eq=False)
class MotionTables:
    """The reference clip as per-frame tables [T, ...]."""

    qpos: Array  # [T, nq] full reference state, free joint first: what resets start from
    qvel: Array  # [T, nv]
    # Every per-step reference quantity flattened side by side, so a step reads them with one gather.
    table: Array  # [T, K]
    layout: dict[str, tuple[slice, tuple[int, ...]]]  # name -> (columns of table, shape of one frame)

    @property
    def num_frames(self) -> int:
        return int(self.table.shape[0])

    def at(self, frames: Array) -> dict[str, Array]:
        """The reference at ``frames`` [n], keyed as ``TrackingFrame.of`` takes it."""
        rows = self.table[frames]
        xp = namespace(rows)
        return {name: xp.reshape(rows[:, cols], (-1, *shape)) for name, (cols, shape) in self.layout.items()}

    @classmethod
    def build(
        cls,
        ref: MotionReference,
        model: mujoco.MjModel,
        joint_qpos_adr: np.ndarray,
        joint_dof_adr: np.ndarray,
    ) -> MotionTables:
        """The tables of ``ref`` for ``model``, whose actuated joints sit at the given qpos/qvel columns."""
        ids = ref.body_indices(TRACKED_BODIES)
        pelvis = ref.body_indices(("pelvis",))[0]
        qpos = np.zeros((ref.num_frames, model.nq))
        qvel = np.zeros((ref.num_frames, model.nv))
        qpos[:, :3] = ref.root_pos
        qpos[:, 3:7] = ref.root_quat
        qpos[:, joint_qpos_adr] = ref.joint_pos
        qvel[:, :3] = ref.body_lin_vel_w[:, pelvis]
        # A free joint's angular velocity is expressed in the body frame.
        qvel[:, 3:6] = quat_apply_inverse(ref.root_quat, ref.body_ang_vel_w[:, pelvis])
        qvel[:, joint_dof_adr] = ref.joint_vel
        parts = {
            "joint_pos": ref.joint_pos,
            "joint_vel": ref.joint_vel,
            "body_pos": ref.body_pos_w[:, ids],
            "body_quat": ref.body_quat_w[:, ids],
            "body_lin_vel": ref.body_lin_vel_w[:, ids],
            "body_ang_vel": ref.body_ang_vel_w[:, ids],
            "anchor_rot": quat_to_matrix(ref.body_quat_w[:, ids[TRACKED_BODIES.index(ANCHOR_BODY)]]),
        }
        layout, start = {}, 0
        for name, value in parts.items():
            width = int(np.prod(value.shape[1:]))
            layout[name] = (slice(start, start + width), value.shape[1:])
            start += width
        table = np.concatenate([v.reshape(ref.num_frames, -1) for v in parts.values()], axis=1)
        return cls(qpos, qvel, table, layout)


@dataclass(frozen=True, eq=False)
class TrackingMDP:
    """The tracking task's constants in one array type, and its step logic over a backend's arrays."""

    cfg: G1TrackingConfig
    step_dt: float
    observation_terms: observations.TermLayout
    rewards: tuple[WeightedTerm, ...]
    motion: MotionTables
    joint_qpos_adr: Array  # [J] qpos columns of the actuated joints, in SDK order
    joint_dof_adr: Array  # [J] their qvel columns
    body_ids: Array  # [B] model ids of TRACKED_BODIES
    end_effectors: Array  # indices of END_EFFECTOR_BODIES among the tracked bodies
    foot_geoms: Array  # geoms whose friction is randomised
    velocity_columns: slice  # sensordata: linear then angular velocity of each tracked body
    anchor: int  # index of the anchor body among the tracked bodies
    root: int  # index of the floating base (pelvis) among the tracked bodies
    default_pos: Array  # [J]
    action_scale: Array  # [J]
    soft_lower: Array  # [J]
    soft_upper: Array  # [J]
    target_lower: Array  # [J] where joint targets are clipped (cfg.clip_targets): a bridge's soft limits
    target_upper: Array  # [J]
    brake_accel: Array  # [J] rad/s^2 a bridge brakes each joint at near its soft limits
    speed_limit: Array  # [J] rad/s a bridge lets each joint reach
    body_weights: Array  # [B], summing to 1
    standing_qpos: Array  # [nq] the deployed start: the default pose as the hold leaves it, at frame 0
    reset_noise: Array  # half-widths of the reset noise (events.reset_noise_scales)
    obs_noise: Array | None  # half-widths of the policy observation noise; None when off
    frames_per_bin: int

    @classmethod
    def build(
        cls, cfg: G1TrackingConfig, model: mujoco.MjModel, reference: MotionReference, step_dt: float
    ) -> TrackingMDP:
        """The MDP of ``cfg`` on ``model`` (``env.build_g1_scene``) tracking ``reference``, as numpy."""
        joint_ids = [model.joint(n).id for n in G1.joint_names]
        joint_qpos_adr, joint_dof_adr = model.jnt_qposadr[joint_ids], model.jnt_dofadr[joint_ids]
        limits = model.jnt_range[joint_ids]
        mid = limits.mean(axis=1)
        half = (limits[:, 1] - limits[:, 0]) / 2 * cfg.soft_joint_limit_factor
        weights = np.array(
            [cfg.keypoint_weights.get(n, 1.0) if cfg.keypoints else 1.0 for n in TRACKED_BODIES],
            dtype=np.float64,
        )
        if weights.sum() <= 0:
            raise ValueError("keypoint_weights: at least one tracked body needs a positive weight")
        first = model.sensor(f"track_linvel_{TRACKED_BODIES[0]}").adr[0]
        layout = observations.policy_term_layout(cfg.state_estimation)
        motion = MotionTables.build(reference, model, joint_qpos_adr, joint_dof_adr)
        target_lower, target_upper = soft_joint_limits(limits)
        return cls(
            cfg=cfg,
            step_dt=step_dt,
            observation_terms=layout,
            rewards=tuple(
                WeightedTerm(name, rewards.REWARD_TERMS[entry.term], entry.weight, entry.params())
                for name, entry in cfg.rewards.items()
            ),
            motion=motion,
            joint_qpos_adr=joint_qpos_adr,
            joint_dof_adr=joint_dof_adr,
            body_ids=np.array([model.body(n).id for n in TRACKED_BODIES]),
            end_effectors=np.array([TRACKED_BODIES.index(n) for n in END_EFFECTOR_BODIES]),
            foot_geoms=np.array(
                [g for g in range(model.ngeom) if re.fullmatch(FOOT_GEOM_PATTERN, model.geom(g).name)]
            ),
            velocity_columns=slice(first, first + 2 * 3 * len(TRACKED_BODIES)),
            anchor=TRACKED_BODIES.index(ANCHOR_BODY),
            root=TRACKED_BODIES.index("pelvis"),
            default_pos=np.asarray(G1.default_pos, dtype=np.float64),
            action_scale=np.asarray(G1.action_scale, dtype=np.float64),
            soft_lower=mid - half,
            soft_upper=mid + half,
            target_lower=target_lower,
            target_upper=target_upper,
            brake_accel=braking_deceleration(model, G1.joint_names, G1.effort_limit, [G1.default_pos]),
            speed_limit=VELOCITY_LIMIT_FACTOR * np.asarray(G1.velocity_limit, dtype=np.float64),
            body_weights=weights / weights.sum(),
            standing_qpos=_settle_in_hold(model, _standing_qpos(motion.qpos[0], joint_qpos_adr)),
            reset_noise=events.reset_noise_scales(cfg.randomization.reset_noise, len(G1.joint_names)),
            obs_noise=observations.noise_scales(cfg.observation_noise, layout),
            frames_per_bin=max(1, round(cfg.sampling.bin_s / step_dt)),
        )

    def map_arrays(self, convert: Callable[[np.ndarray], Array]) -> TrackingMDP:
        """A copy with every array (the motion tables' too) passed through ``convert``."""

        def mapped(obj: TrackingMDP | MotionTables) -> dict[str, Array]:
            return {
                f.name: convert(v) for f in fields(obj) if isinstance(v := getattr(obj, f.name), np.ndarray)
            }

        return replace(self, **mapped(self), motion=replace(self.motion, **mapped(self.motion)))

    @property
    def action_dim(self) -> int:
        return len(G1.joint_names)

    @property
    def observation_dim(self) -> int:
        return sum(size for _, size in self.observation_terms)

    # ----------------------------------------------------------------- per env, once
    def default_joint_pos(self, rng: Rng, n: int) -> Array:
        """Each env's default pose [n, J]: the robot's, plus a fixed calibration error when randomised."""
        xp = namespace(self.default_pos)
        pose = xp.broadcast_to(self.default_pos, (n, self.action_dim))
        rand = self.cfg.randomization
        if rand.enabled:
            return pose + events.default_pose_offsets(rng, n, self.action_dim, rand.default_pos_offset)
        return xp.asarray(pose, copy=True)

    def randomize_friction(self, rng: Rng, friction: Array) -> None:
        """Draw each env's foot friction into ``friction`` [n, ngeom, 3] (per-env model values)."""
        n = friction.shape[0]
        bounds = self.cfg.randomization.friction
        friction[:, self.foot_geoms, 0] = events.sample_friction(rng, n, len(self.foot_geoms), bounds)

    def start_sampler(self, rng: Rng) -> AdaptiveStartSampler:
        """The adaptive start-frame sampler, its counts in the tables' array type."""
        return AdaptiveStartSampler(
            self.motion.num_frames, self.frames_per_bin, self.cfg.sampling, rng, self.motion.table
        )

    # ----------------------------------------------------------------- per step
    def joint_targets(self, default_joint_pos: Array, actions: Array) -> Array:
        """Position targets [n, J] of the actuators: the default pose plus scaled actions, clipped into
        a deploy bridge's soft limits when ``cfg.clip_targets``."""
        targets = default_joint_pos + self.action_scale * actions
        if not self.cfg.clip_targets:
            return targets
        return namespace(targets).clip(targets, min=self.target_lower, max=self.target_upper)

    def action_delays(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Physics steps each of ``n`` envs' new targets wait this control step (``cfg.action_delay_ticks``),
        drawn per env: a controller and a bridge on their own clocks meet a latency that varies from step
        to step, and one draw for the batch would make an evaluation's episodes one trajectory."""
        return _draw(rng, self.cfg.action_delay_ticks, n)

    def observation_delays(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Physics steps before this control step's end at which each of ``n`` envs' policy senses the
        robot (``cfg.observation_delay_ticks``), drawn per env."""
        return _draw(rng, self.cfg.observation_delay_ticks, n)

    def holding_targets(self, qpos: Array) -> Array:
        """Targets [n, J] that hold the joints of ``qpos`` where they are: what a new episode's robot was
        last commanded, for the physics steps a delayed first action waits."""
        return qpos[:, self.joint_qpos_adr]

    def advance(self, frame_index: Array) -> Array:
        """The reference frame one control step later (the last frame holds)."""
        return namespace(frame_index).clip(frame_index + 1, max=self.motion.num_frames - 1)

    def at_clip_end(self, frame_index: Array) -> Array:
        return frame_index >= self.motion.num_frames - 1

    def frame(
        self, sim: SimState, frame_index: Array, default_joint_pos: Array, actions: Array, prev_actions: Array
    ) -> TrackingFrame:
        """The robot and the reference at ``frame_index`` [n], as copies (a frame is patched by rows)."""
        xp = namespace(sim.qpos)

        def own(x: Array) -> Array:
            return xp.asarray(x, copy=True)

        nb = len(TRACKED_BODIES)
        velocities = xp.reshape(sim.sensordata[:, self.velocity_columns], (-1, 2, nb, 3))
        return TrackingFrame.of(
            self.motion.at(frame_index),
            joint_pos=sim.qpos[:, self.joint_qpos_adr],
            joint_vel=sim.qvel[:, self.joint_dof_adr],
            default_joint_pos=own(default_joint_pos),
            root_quat=own(sim.qpos[:, 3:7]),
            root_lin_vel_w=own(sim.qvel[:, :3]),
            root_ang_vel_b=own(sim.qvel[:, 3:6]),
            body_pos=sim.xpos[:, self.body_ids],
            body_quat=sim.xquat[:, self.body_ids],
            body_rot=xp.reshape(sim.xmat[:, self.body_ids], (-1, nb, 3, 3)),
            body_lin_vel=own(velocities[:, 0]),
            body_ang_vel=own(velocities[:, 1]),
            actions=own(actions),
            prev_actions=own(prev_actions),
            anchor=self.anchor,
            root=self.root,
        )

    def terminated(self, f: TrackingFrame, rel_pos: Array) -> Array:
        """Whether each env has left the reference (any termination term) [n]."""
        flags = terminations.terminations(f, self.cfg.terminations, rel_pos, self.end_effectors)
        xp = namespace(rel_pos)
        return xp.any(xp.stack(list(flags.values())), axis=0)

    def reward(self, f: TrackingFrame, relative: tuple[Array, Array]) -> tuple[Array, dict[str, Array]]:
        """The reward [n] and each configured term's value; ``relative`` is ``f.relative_reference()``."""
        ctx = RewardContext(
            *relative,
            self.body_weights,
            self.soft_lower,
            self.soft_upper,
            self.target_lower,
            self.target_upper,
            self.brake_accel,
            self.speed_limit,
        )
        return rewards.compute(self.rewards, f, ctx, self.step_dt)

    def observe(self, f: TrackingFrame, rng: Rng) -> dict[str, Array]:
        """``{"policy": noisy [n, D], "critic": clean [n, D_critic]}``, float32."""
        terms = observations.policy_terms(f)
        return {
            "policy": observations.policy_obs(terms, self.observation_terms, self.obs_noise, rng),
            "critic": observations.critic_obs(f, terms),
        }

    # ----------------------------------------------------------------- resets
    def standing_starts(self, rng: Rng, n: int) -> Array | None:
        """Which of ``n`` new episodes start as a deployment does (``sampling.standing_start``; they start
        at frame 0); None when none can."""
        share = self.cfg.sampling.standing_start
        if share <= 0.0:
            return None
        return uniform(rng, 0.0, 1.0, (n,)) < share

    def reset_state(self, frames: Array, rng: Rng, standing: Array | None = None) -> tuple[Array, Array]:
        """Full qpos/qvel [n, nq] / [n, nv] to start from at reference ``frames``, noised when randomised.

        Rows of ``standing`` start still on the default pose instead (``standing_qpos``)."""
        qpos, qvel = self.motion.qpos[frames], self.motion.qvel[frames]
        if standing is not None:
            xp = namespace(qpos)
            qpos = xp.where(standing[:, None], self.standing_qpos, qpos)
            qvel = xp.where(standing[:, None], xp.zeros_like(qvel), qvel)
        if self.cfg.randomization.enabled:
            adr = self.joint_qpos_adr
            events.perturb_reset_state(rng, qpos, qvel, self.reset_noise, adr)
            qpos[:, adr] = namespace(qpos).clip(qpos[:, adr], min=self.soft_lower, max=self.soft_upper)
        return qpos, qvel


def _draw(rng: np.random.Generator, bounds: tuple[int, int], n: int) -> np.ndarray:
    low, high = bounds
    return np.full(n, low) if low == high else rng.integers(low, high + 1, size=n)


# How long a deployment holds the default pose before its policy starts (`striata eval --sim-bridge`
# scripts its controller so).
HOLD_S = 1.5


def _settle_in_hold(model: mujoco.MjModel, qpos: np.ndarray) -> np.ndarray:
    """``qpos`` (the G1 standing on its default pose) after the deploy controller's hold: ``HOLD_S`` on the
    standby gains, as a deployed policy finds the robot, put back where and as it faced. Its weight bends
    the ankles and knees 0.03-0.04 rad and lowers the pelvis ~7 mm, and that was enough to drop a policy
    that tracked from the exact pose."""
    hold = copy.copy(model)
    set_actuator_gains(hold, *G1.standby_kp_kd)
    data = mujoco.MjData(hold)
    data.qpos[:] = qpos
    data.ctrl[: len(G1.default_pos)] = G1.default_pos
    mujoco.mj_step(hold, data, nstep=round(HOLD_S / hold.opt.timestep))
    held = data.qpos.copy()
    # Where it stood and the way it faced (the hold sways it ~3 cm): the policy starts at the first frame.
    held[:2] = qpos[:2]
    held[3:7] = quat_mul(yaw_quat(float(yaw_angle(qpos[3:7]) - yaw_angle(held[3:7]))), held[3:7])
    return held


def _standing_qpos(first: np.ndarray, joint_qpos_adr: np.ndarray) -> np.ndarray:
    """The G1 standing still on its default pose where the clip's first frame stands, facing its way:
    where a deployment starts the policy (the controller interpolates to the default pose and holds)."""
    qpos = first.copy()
    qpos[2] = G1_DEFAULT_ROOT_HEIGHT
    qpos[3:7] = yaw_quat(float(yaw_angle(first[3:7])))
    qpos[joint_qpos_adr] = G1.default_pos
    return qpos
