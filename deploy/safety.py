"""Bridge-side safety: what the robot is allowed to do, whatever the controller sends.

``SafetyFilter`` turns the latest valid command into the ``JointCommand`` a backend applies each
low-level tick:

- watchdog: no command for ``watchdog_s`` (100 ms) -> damping (kp 0, kd ``damping_kd``);
- e-stop: latched damping until released (``clear_estop``) or the bridge restarts;
- soft joint limits: targets clamped into the model's range shrunk by ``soft_limit_factor``, each end at
  most ``max_soft_margin`` inside the model's (the joint's stop): a wider margin only costs range, since
  a limb the robot's own weight presses outward (a fallen G1's wrist, a standing one's ankle) goes on to the
  stop whatever the motor does;
- per-tick target change limit: a target moves at most ``max_target_step`` rad per tick from the
  last applied one (starting from the measured position), so a jump becomes a ramp;
- gains clipped to ``max_kp`` / ``max_kd``;
- speed: velocity targets clipped to ``velocity_limit_factor`` of the model's joint velocity limits;
- torque limit: ``tau_ff`` clipped to ``torque_limit_factor x effort``, then the target clamped so the
  PD torque ``kp (q* - q) + kd (dq* - dq) + tau_ff`` stays inside the same limit at the current state
  (where the robot applies the command's gains: position servos, ``applies_gains=False``, bound their
  own torque, and their model gains, the SO-101's kp ~1000 against 2.9 N m, would hold a target within
  3 mrad of where the joint is and crawl);
- torque ramp: feed-forward torque grows by at most ``max_torque_step`` of the effort limit per tick
  (it may fall to zero at once): one tick of full effort on every joint flings a light limb, or a
  fallen G1's leg, at 5-10 rad/s before any bound below can see its speed;
- limit envelope: moving toward a soft limit at distance d, a joint may go at most ``sqrt(2 a d)``, the
  speed from which braking at deceleration ``a`` stops it at the limit (``a``: ``limit_brake_accel``, or
  less where the robot model says the joint's motor cannot brake its limb that fast). Velocity targets
  move no faster than that envelope (targets are not slowed near a limit: see ``ramp_targets``),
  feed-forward torque outward fades to nothing over the last ``limit_zone``, and a joint faster than the
  envelope is braked by the bridge, whatever the command: target where it is (inside the soft range), no
  velocity target, no feed-forward torque, and damping that spends the joint's effort at its speed,
  between ``damping_kd`` and ``max_brake_kd``.
  (A harder brake, a target behind the joint, made Unitree's simulator at 5 ms, whose 200 Hz states the
  bridge reads at 500 Hz, drop the G1 in hold: measured. So did damping up to kd 50 on the knee.)
- limit wall: a joint past a soft limit and moving further out gets a feed-forward torque back,
  proportional to how far past it is, that reaches its effort limit ``wall_depth`` past the limit (at
  most ``wall_max_kp`` per rad, and, where the backend knows the gains its model and timestep hold,
  within those with the command's): a standing G1's weight otherwise bends a knee 0.09 rad past its
  soft limit against the controller's own gains.
- self-collision (where the backend has a model of its bodies, ``SelfCollision``): a target that would
  press two of the robot's bodies more than the check's tolerance deeper into each other than the
  posture the target ramp started from (so that a robot already touching itself can always move) is not
  applied; the last one is held, with no velocity target and no feed-forward torque on any joint (where
  the bounds above would still make the held step deeper, the posture itself is held). While the
  measured posture is that deep, feed-forward torque and velocity targets are dropped too, so nothing
  pushes a limb further into the body it meets.

Every bound holds for any finite input (``decode_client_message`` refuses NaN and inf): the arrays are
clipped before they are multiplied, so 1e308 cannot overflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from striata.deploy.protocol import Command
from striata.deploy.robot import JointCommand, RobotState
from striata.envs.robots.actuators import (
    DAMPING_KD,
    LIMIT_BRAKE_ACCEL,
    MAX_BRAKE_KD,
    MAX_SOFT_MARGIN,
    MAX_TARGET_STEP,
    SOFT_LIMIT_FACTOR,
    VELOCITY_LIMIT_FACTOR,
    braking_damping,
    braking_speeds,
    ramp_targets,
    soft_joint_limits,
)

if TYPE_CHECKING:
    from striata.deploy.gain_stability import GainLimits
    from striata.deploy.self_collision import SelfCollision


# rad/s outward past a soft limit from which the wall pushes back: a joint resting past its limit
# (a limp G1's waist, drooped on its stop) is left to the command's own gains.
WALL_SPEED = 0.1


class SafetyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    watchdog_s: float = Field(default=0.1, gt=0, description="no command for this long -> damping")
    damping_kd: float = Field(default=DAMPING_KD, ge=0, description="N m s/rad on every joint while damping")
    soft_limit_factor: float = Field(
        default=SOFT_LIMIT_FACTOR, gt=0, le=1, description="share of the joint range allowed"
    )
    max_soft_margin: float = Field(
        default=MAX_SOFT_MARGIN, ge=0, description="rad: the most a soft limit stands inside the joint range"
    )
    max_target_step: float = Field(
        default=MAX_TARGET_STEP, gt=0, description="rad a target may move per low-level tick"
    )
    max_kp: float = Field(default=500.0, ge=0)
    max_kd: float = Field(default=50.0, ge=0)
    torque_limit_factor: float = Field(default=1.0, gt=0, le=1, description="share of the effort limit")
    velocity_limit_factor: float = Field(
        default=VELOCITY_LIMIT_FACTOR,
        gt=0,
        le=1,
        description="share of the model's joint velocity limits a joint may reach",
    )
    limit_brake_accel: float = Field(
        default=LIMIT_BRAKE_ACCEL,
        gt=0,
        description="rad/s^2 of braking assumed near a soft limit: speed toward it kept to sqrt(2 a d)",
    )
    limit_zone: float = Field(
        default=0.2, gt=0, description="rad before a soft limit over which feed-forward torque outward fades"
    )
    max_torque_step: float = Field(
        default=0.05, gt=0, le=1, description="share of the effort limit tau_ff may grow per tick"
    )
    max_brake_kd: float = Field(
        default=MAX_BRAKE_KD,
        ge=0,
        description="N m s/rad: the most damping a joint braking before its limit gets",
    )
    wall_depth: float = Field(
        default=0.02, gt=0, description="rad past a soft limit where the push back reaches the effort"
    )
    wall_max_kp: float = Field(default=1000.0, ge=0, description="N m/rad: the stiffest that push back gets")
    exit_damping_s: float = Field(
        default=0.5,
        ge=0,
        description="s of damping the bridge keeps sending when it stops, whatever stopped it",
    )


class SafetyFilter:
    """Stateful per-tick filter; one per bridge (it remembers the last applied target)."""

    def __init__(
        self,
        cfg: SafetyConfig,
        joint_limits: np.ndarray,
        effort_limits: np.ndarray,
        velocity_limits: np.ndarray,
        brake_accel: np.ndarray | None = None,
        self_collision: SelfCollision | None = None,
        gain_limits: GainLimits | None = None,
        applies_gains: bool = True,
    ) -> None:
        self.cfg = cfg
        self.applies_gains = applies_gains
        self.self_collision = self_collision
        # Per joint: the config's braking rate, or less where the robot model says its motor cannot.
        self.brake_accel = np.full(len(joint_limits), cfg.limit_brake_accel)
        if brake_accel is not None:
            self.brake_accel = np.minimum(self.brake_accel, brake_accel)
        self.lower, self.upper = soft_joint_limits(joint_limits, cfg.soft_limit_factor, cfg.max_soft_margin)
        self.torque_limit = np.asarray(effort_limits, dtype=np.float64) * cfg.torque_limit_factor
        self.velocity_limit = np.asarray(velocity_limits, dtype=np.float64) * cfg.velocity_limit_factor
        self.wall_kp = np.minimum(self.torque_limit / cfg.wall_depth, cfg.wall_max_kp)
        # The wall is a torque from a state one tick old or more; such a loop holds 1/16 of the kp the
        # undelayed one does (b < 1/4 against b < 4, deploy/gain_stability.py): with the command's kp
        # it stays below that where the backend knows its model and timestep.
        self.gain_limits = gain_limits
        self.stable_kp = None if gain_limits is None else gain_limits.kp_max / 16
        self._last_target: np.ndarray | None = None
        self._last_tau_ff = np.zeros(len(joint_limits))
        # How deep into itself a target may press the robot (m): a tolerance more than the posture the
        # target ramp started from (from a passive mode), so a robot already touching itself can move.
        self._allowed_depth = 0.0

    def passive(self, state: RobotState, damping: bool) -> JointCommand:
        """Zero torque, or damping (kp 0, kd ``damping_kd``); resets the target ramp."""
        self._last_target = None
        self._last_tau_ff = np.zeros_like(self._last_tau_ff)
        n = len(state.q)
        kd = np.full(n, self.cfg.damping_kd if damping else 0.0)
        return JointCommand(state.q.copy(), np.zeros(n), np.zeros(n), kd, np.zeros(n))

    def position(self, command: Command, state: RobotState) -> JointCommand:
        """The safe version of a position command at the current state."""
        assert command.q_target is not None  # decode_client_message guarantees arrays for these phases
        previous = state.q if self._last_target is None else self._last_target
        target = ramp_targets(command.q_target, previous, self.lower, self.upper, self.cfg.max_target_step)
        kp = np.minimum(command.kp, self.cfg.max_kp)
        kd = np.minimum(command.kd, self.cfg.max_kd)
        limit = self.torque_limit
        tau_ff = np.clip(command.tau_ff, -limit, limit)
        q, dq = state.q, state.dq
        dq_target = command.dq_target
        check = self.self_collision
        if check is not None:
            target, dq_target, tau_ff = self._keep_apart(check, q, previous, target, dq_target, tau_ff)
        up_speed, down_speed = braking_speeds(
            q, self.lower, self.upper, self.brake_accel, self.velocity_limit
        )
        dq_target = np.clip(dq_target, -down_speed, up_speed)
        # Feed-forward torque outward fades to nothing over the last ``limit_zone`` before a soft limit:
        # one tick of full effort would otherwise add effort/I x dt of speed to a light joint.
        zone = self.cfg.limit_zone
        up_room = np.clip((self.upper - q) / zone, 0.0, 1.0)
        down_room = np.clip((q - self.lower) / zone, 0.0, 1.0)
        tau_ff = np.clip(tau_ff, -limit * down_room, limit * up_room)
        grow = limit * self.cfg.max_torque_step
        last = self._last_tau_ff
        tau_ff = np.clip(tau_ff, np.minimum(last - grow, 0.0), np.maximum(last + grow, 0.0))
        if self.applies_gains:
            rest = kd * (dq_target - dq) + tau_ff
            # Where kp > 0 the target alone decides the remaining torque headroom around q.
            stiff = kp > 1e-9
            safe_kp = np.where(stiff, kp, 1.0)
            low = np.where(stiff, q + (-limit - rest) / safe_kp, -np.inf)
            high = np.where(stiff, q + (limit - rest) / safe_kp, np.inf)
            target = np.clip(target, np.minimum(low, high), np.maximum(low, high))
        target = np.clip(target, self.lower, self.upper)
        # Too fast toward a soft limit to stop before it, or past it: this joint brakes, whatever was asked.
        braking = (dq >= up_speed) | (-dq >= down_speed)
        target = np.where(braking, np.clip(q, self.lower, self.upper), target)
        dq_target = np.where(braking, 0.0, dq_target)
        tau_ff = np.where(braking, 0.0, tau_ff)
        if braking.any():  # the usual tick brakes nothing: it skips this arithmetic (500 Hz)
            spend = braking_damping(dq, limit, self.cfg.damping_kd, self.cfg.max_brake_kd)
            if self.gain_limits is not None:  # no more damping than this loop holds at the command's kp
                spend = np.minimum(spend, self.gain_limits.clip(kp, spend)[1])
            kd = np.where(braking, np.maximum(kd, spend), kd)
        below, above = self.lower - q, q - self.upper
        if below.max() > 0.0 or above.max() > 0.0:
            # The wall acts on the excursion alone (zero at the limit), so entering it changes no gain,
            # and only while the joint moves further out: pushing a returning joint, on states a few
            # ms old, feeds a chatter (Unitree's simulator at 5 ms: the ankles), and pushing a resting
            # one switched on and off with the sign of its speed and stalled a limp G1's waist on its
            # stop.
            below = np.where(dq < -WALL_SPEED, np.maximum(below, 0.0), 0.0)
            above = np.where(dq > WALL_SPEED, np.maximum(above, 0.0), 0.0)
            wall_kp = self.wall_kp
            if self.stable_kp is not None:
                wall_kp = np.clip(self.stable_kp - kp, 0.0, self.wall_kp)
            tau_ff = np.clip(tau_ff + wall_kp * (below - above), -limit, limit)
        if check is not None and check.depth(target) > self._allowed_depth:
            # The bounds above moved joints unevenly and made the held step deeper: stay where it is.
            target = np.clip(q, self.lower, self.upper)
            dq_target, tau_ff = np.zeros_like(dq_target), np.zeros_like(tau_ff)
        self._last_target, self._last_tau_ff = target, tau_ff
        return JointCommand(target, dq_target, kp, kd, tau_ff)

    def _keep_apart(
        self,
        check: SelfCollision,
        q: np.ndarray,
        previous: np.ndarray,
        target: np.ndarray,
        dq_target: np.ndarray,
        tau_ff: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The target, velocity targets and feed-forward torque with no step deeper into the robot itself
        (the torque, speed and limit bounds that follow still apply to what this returns)."""
        if self._last_target is None:  # from a passive mode: the posture itself is where the ramp starts
            self._allowed_depth = check.depth(previous) + check.tolerance_m
        pushing = check.depth(q) > check.tolerance_m
        if check.depth(target) > self._allowed_depth:
            target, pushing = np.clip(previous, self.lower, self.upper), True
        if pushing:
            dq_target, tau_ff = np.zeros_like(dq_target), np.zeros_like(tau_ff)
        return target, dq_target, tau_ff
