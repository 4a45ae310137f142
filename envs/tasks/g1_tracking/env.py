"""The G1 tracking environment on MuJoCo's CPU batch: the MDP of ``mdp.py`` on numpy arrays.

``build_g1_scene`` is the simulated robot every G1 tracking backend (and the deploy-side simulator) uses.
"""

from __future__ import annotations

import mujoco
import numpy as np

from striata.envs.backend import BatchedEnv
from striata.envs.robots.actuators import (
    MAX_TARGET_STEP,
    add_position_actuators,
    braking_damping,
    braking_speeds,
    ramp_targets,
)
from striata.envs.robots.g1 import G1, TRACKED_BODIES, g1_spec
from striata.envs.tasks.g1_tracking import events
from striata.envs.tasks.g1_tracking.config import G1TrackingConfig
from striata.envs.tasks.g1_tracking.frame import TrackingFrame
from striata.envs.tasks.g1_tracking.mdp import SimState, TrackingMDP, load_motion


def build_g1_scene(physics_dt: float) -> mujoco.MjModel:
    """G1 with PD actuators on a flat floor, lit for rendering, with velocity sensors on tracked bodies."""
    return g1_scene_spec(physics_dt).compile()


def g1_scene_spec(physics_dt: float) -> mujoco.MjSpec:
    """``build_g1_scene``'s spec, before it is compiled (to add to the scene)."""
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
    return spec


class G1TrackingEnv(BatchedEnv):
    """N G1s each tracking the reference clip from an adaptively sampled start frame (numpy, ``mdp``)."""

    action_dim = len(G1.joint_names)

    def __init__(self, cfg: G1TrackingConfig, num_envs: int, seed: int | None = None) -> None:
        self.cfg = cfg
        model = build_g1_scene(cfg.physics_dt)
        super().__init__(model, num_envs, cfg.decimation, cfg.max_episode_steps, cfg.num_threads, seed)
        self.xmat = self.batch.bind("xmat")
        self.sensordata = self.batch.bind("sensordata")
        self.reference = load_motion(cfg, model, fps=1.0 / self.step_dt)
        self.mdp = TrackingMDP.build(cfg, model, self.reference, self.step_dt)
        self.observation_terms = self.mdp.observation_terms
        self.observation_dim = self.mdp.observation_dim

        # Pose offsets, then friction (the device env's order too): a seed keeps drawing what it drew.
        self.default_joint_pos = self.mdp.default_joint_pos(self.rng, num_envs)
        if cfg.randomization.enabled:
            self.mdp.randomize_friction(self.rng, self.batch.expand("geom_friction"))
        self.sampler = self.mdp.start_sampler(self.rng)
        self.frame_index = np.zeros(num_envs, dtype=np.int64)
        self.actions = np.zeros((num_envs, self.action_dim))
        self.prev_actions = np.zeros_like(self.actions)
        self.targets = np.zeros((num_envs, self.action_dim))  # the policy's joint targets this step
        self.next_push = np.full(num_envs, np.inf)
        self._last_terminated = np.zeros(num_envs, dtype=bool)
        self._frame: TrackingFrame | None = None
        self._relative: tuple[np.ndarray, np.ndarray] | None = None
        self._sensed: SimState | None = None  # the state the policy observes, when sensed before the end
        if cfg.bridge_brake:  # per-env actuator damping, for the joints a bridge would brake
            self._actuator_bias = self.batch.expand("actuator_biasprm")
            self._applied = self.ctrl.copy()  # the targets the emulated bridge applied last

    def reference_state(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Full qpos/qvel of the reference at each env's current frame (no noise), as new arrays."""
        t = self.frame_index if ids is None else self.frame_index[ids]
        return self.mdp.motion.qpos[t], self.mdp.motion.qvel[t]

    def tracking_errors(self) -> dict[str, np.ndarray]:
        """Per env, at its current frame: ``body_pos_error_m`` (mean over the tracked bodies, against the
        reference moved onto the robot's anchor, as the body terms see it), ``joint_error_rad`` (mean
        absolute), ``anchor_ori_error_rad`` (angle between the robot's and the reference's anchor)."""
        frame, (rel_pos, _) = self._current()
        return frame.tracking_errors(rel_pos)

    # ----------------------------------------------------------------- backend hooks
    def _reset_envs(self, ids: np.ndarray) -> None:
        failed = ids[self._last_terminated[ids]]
        if len(failed):
            self.sampler.record_failures(self.frame_index[failed])
        self._last_terminated[ids] = False
        frames = self.sampler.sample(len(ids))
        standing = self.mdp.standing_starts(self.rng, len(ids))
        if standing is not None:
            frames[standing] = 0
        self.frame_index[ids] = frames
        self.qpos[ids], self.qvel[ids] = self.mdp.reset_state(frames, self.rng, standing)
        rand = self.cfg.randomization
        if rand.enabled:
            self.next_push[ids] = events.next_push_times(self.rng, np.zeros(len(ids)), rand)
        self.actions[ids] = 0.0
        self.prev_actions[ids] = 0.0
        # What the robot was last commanded and applied: targets that hold the new pose.
        self.targets[ids] = self.ctrl[ids] = self.mdp.holding_targets(self.qpos[ids])
        if self.cfg.bridge_brake:
            self._applied[ids] = self.targets[ids]

    def _apply_actions(self, actions: np.ndarray) -> None:
        self.prev_actions = self.actions
        self.actions = actions
        self._held = self.targets
        self.targets = self.mdp.joint_targets(self.default_joint_pos, actions)
        if self.cfg.randomization.enabled:
            now = self.episode_step * self.step_dt
            due = np.flatnonzero(now >= self.next_push)
            if len(due):
                self.qvel[due, :6] += events.push_velocities(self.rng, len(due), self.cfg.randomization)
                self.next_push[due] = events.next_push_times(self.rng, now[due], self.cfg.randomization)

    def _step_physics(self) -> None:
        # In chunks between the ticks where something changes for some env: its delayed targets arrive,
        # its policy senses the robot; tick by tick where the bridge's brake is emulated.
        delay = self.mdp.action_delays(self.rng, self.num_envs)
        sense_at = self.decimation - self.mdp.observation_delays(self.rng, self.num_envs)
        self._sensed = self._sim_state(copy=True) if (sense_at < self.decimation).any() else None
        changes = np.unique(np.concatenate([delay, sense_at, [self.decimation]]))
        tick = 0
        while tick < self.decimation:
            self._sense(sense_at == tick)
            command = np.where((tick < delay)[:, None], self._held, self.targets)
            if self.cfg.bridge_brake:
                self._brake(command)
                n = 1
            else:
                self.ctrl[:] = command
                n = int(changes[changes > tick][0]) - tick
            self.batch.step(nstep=n, stage=mujoco.mjtStage.mjSTAGE_VEL)
            tick += n
        self._sense(sense_at == self.decimation)

    def _sense(self, rows: np.ndarray) -> None:
        """The policy of the envs in the mask ``rows`` senses the robot now (cfg.observation_delay_ticks)."""
        if self._sensed is not None and rows.any():
            for sensed, now in zip(self._sensed, self._sim_state(), strict=True):
                sensed[rows] = now[rows]

    def _brake(self, targets: np.ndarray) -> None:
        """Command ``targets`` as a deploy bridge passes them on each tick (deploy/safety.py): ramped from
        the last applied ones, and a joint faster toward its soft limit than braking stops it there held
        where it is, damped to spend its effort."""
        mdp = self.mdp
        lower, upper = mdp.target_lower, mdp.target_upper
        q, dq = self.qpos[:, mdp.joint_qpos_adr], self.qvel[:, mdp.joint_dof_adr]
        ramped = ramp_targets(targets, self._applied, lower, upper, MAX_TARGET_STEP)
        up, down = braking_speeds(q, lower, upper, mdp.brake_accel, mdp.speed_limit)
        braking = (dq >= up) | (-dq >= down)
        self._applied = np.where(braking, np.clip(q, lower, upper), ramped)
        self.ctrl[:] = self._applied
        kd = np.where(braking, np.maximum(G1.kd, braking_damping(dq, G1.effort_limit)), G1.kd)
        self._actuator_bias[:, : len(G1.joint_names), 2] = -kd

    def _after_physics(self) -> None:
        self.frame_index = self.mdp.advance(self.frame_index)
        self.sampler.update()

    def _state_changed(self, ids: np.ndarray | None = None) -> None:
        # After a partial reset only the reset rows of the cached frame are stale: patch them.
        if ids is not None and self._frame is not None:
            self._frame.scatter(ids, self._gather(ids))
        else:
            self._frame = None
        if ids is not None and self._sensed is not None:  # a new episode's policy sees its first state
            for sensed, now in zip(self._sensed, self._sim_state(), strict=True):
                sensed[ids] = now[ids]
        self._relative = None

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray, ids: np.ndarray | None = None) -> None:
        self._sensed = None
        super().set_state(qpos, qvel, ids)

    def _sim_state(self, copy: bool = False) -> SimState:
        arrays = (self.qpos, self.qvel, self.xpos, self.xquat, self.xmat, self.sensordata)
        return SimState(*(x.copy() if copy else x for x in arrays))

    def _current(self) -> tuple[TrackingFrame, tuple[np.ndarray, np.ndarray]]:
        if self._frame is None:
            self._frame = self._gather()
        if self._relative is None:
            self._relative = self._frame.relative_reference()
        return self._frame, self._relative

    def _gather(self, ids: np.ndarray | None = None, sim: SimState | None = None) -> TrackingFrame:
        """The frame of rows ``ids`` of the current state, or of ``sim`` (a state sensed earlier)."""
        rows = slice(None) if ids is None else ids
        state = SimState(*(x[rows] for x in (self._sim_state() if sim is None else sim)))
        env = (self.frame_index, self.default_joint_pos, self.actions, self.prev_actions)
        return self.mdp.frame(state, *(x[rows] for x in env))

    def _observe(self, ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        if self._frame is None:
            self._frame = self._gather()
        frame = self._frame if ids is None else self._gather(ids)
        obs = self.mdp.observe(frame, self.rng)
        if self._sensed is not None:  # the policy sees the state it sensed (cfg.observation_delay_ticks)
            obs["policy"] = self.mdp.observe(self._gather(ids, self._sensed), self.rng)["policy"]
        return obs

    def _reward(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        frame, relative = self._current()
        return self.mdp.reward(frame, relative)

    def _terminated(self) -> np.ndarray:
        frame, (rel_pos, _) = self._current()
        terminated = self.mdp.terminated(frame, rel_pos)
        self._last_terminated = terminated.copy()
        return terminated

    def _truncated(self) -> np.ndarray:
        return super()._truncated() | self.mdp.at_clip_end(self.frame_index)

    def _success(self) -> np.ndarray:
        """An episode succeeds when it reaches the end of its clip without falling."""
        return self.mdp.at_clip_end(self.frame_index)
