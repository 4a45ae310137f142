"""The deploy controller: runs an exported policy on a robot bridge at the policy's control rate.

``Controller(config).run()`` reads the ONNX policy and its metadata (the single source of truth for
joint order, gains, rates, observation layout), says hello to the bridge and maps the robot's joints
onto the policy's by name (a name on one side only refuses to start, listing the differences), then
runs the state machine on absolute deadlines (``t0 + k * control_dt``, never ``sleep(dt)``)::

    zero_torque --start--> interpolate (to the default pose, standby gains) --done--> hold
    hold --policy--> policy;  any --damping--> damping;  quit: damping, then exit

The way to the default pose goes round the robot's own body where the straight line would press into it
(``striata.deploy.posture_path``: the bridge would refuse that line and the interpolation would freeze);
a hold entered from the policy (a console's pause, a blind camera) goes back the same way, at the
interpolation's speed. A policy event waits in hold until every joint is within ``start_tolerance_rad``
of its default pose.

It starts in the mode the bridge reports: a robot that an earlier controller, watchdog or lost state
left in damping stays in damping (never limp) until start moves it to the default pose.

Transitions come from the keyboard (stdin lines: s start, p policy, d damping, e e-stop, q quit; Ctrl-C
and SIGTERM quit too), the
robot's remote (state ``remote``: start, A, select edge-triggered) or a ``--sequence`` of timed
events for scripts and tests (``interpolate@0.5,policy@4,damping@24,quit@25``, seconds from start).
Measured loop lateness, policy latency and bridge round trips are logged and summarised; every
step's state (with the robot tick it was read at), phase and command, and the policy's observations and
actions, go to an NPZ recording.

With ``intervene`` set (``--intervene tcp://127.0.0.1:PORT``) the controller also serves an intervention
port (actors/INTERVENTION.md; ``striata.deploy.intervention``): a person at `striata intervene` can take the
robot over in the policy phase (their actions go through the bridge's safety like the policy's), pause
it (hold) and label what it did; the recording flags every step a person acted in.
"""

from __future__ import annotations

import gc
import math
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from queue import Empty, Queue
from typing import Any, TextIO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from striata.common.curve import CurveClient, CurveKeyError
from striata.common.intervention_port import HilConfig
from striata.deploy.camera import CameraStream, PolicyCameras
from striata.deploy.client import BridgeClient, BridgeUnavailableError
from striata.deploy.intervention import LABEL_NONE, RobotHumanLoop, check_address, hil_settings
from striata.deploy.observers import Measured, make_observer
from striata.deploy.posture_path import PostureModel, PosturePath, posture_model, straight_path
from striata.deploy.protocol import StateMessage
from striata.deploy.realtime import LoopPlacement, check_cpus
from striata.learner.export import PolicyMetadata, load_motion, make_session, read_metadata


class Phase(StrEnum):
    zero_torque = "zero_torque"
    interpolate = "interpolate"
    hold = "hold"
    policy = "policy"
    damping = "damping"


EVENTS = ("interpolate", "policy", "damping", "quit", "estop")
KEYS = {"s": "interpolate", "p": "policy", "d": "damping", "q": "quit", "e": "estop"}
REMOTE_EVENTS = {"start": "interpolate", "A": "policy", "select": "damping"}
# The controller commands the bridge at least this often, well inside the bridge's 100 ms watchdog. A
# policy slower than that (the arms' 10 Hz) runs every ``decimation`` loop steps and its target is sent
# again in between, as the training env holds a target for its physics steps.
COMMAND_PERIOD_S = 0.02
# ``align_to_state``: the most a step waits for the bridge's next state, in bridge ticks and as a share of
# the loop's period (an arm's bridge ticks as slowly as its controller: it waits only for a state due soon).
ALIGN_WAIT_TICKS = 1.5
ALIGN_WAIT_SHARE = 0.25
# The most throwaway inferences one step's cache priming runs, whatever the policy's speed.
PRIME_MAX_RUNS = 32


class JointMismatchError(ValueError):
    """The robot's joints and the policy's differ."""


class SequenceError(ValueError):
    """A --sequence that cannot be parsed."""


class JointMap:
    """Policy-order <-> robot-order arrays, matched by joint name."""

    def __init__(self, policy: list[str], robot: list[str], require_same_order: bool = False) -> None:
        missing = [n for n in policy if n not in robot]
        unknown = [n for n in robot if n not in policy]
        problems = []
        if missing:
            problems.append(f"missing on the robot: {missing}")
        if unknown:
            problems.append(f"unknown to the policy: {unknown}")
        if len(set(robot)) != len(robot):
            problems.append(f"robot names repeat: {sorted({n for n in robot if robot.count(n) > 1})}")
        if not problems and require_same_order and policy != robot:
            swaps = [
                f"{i}: robot {r!r} vs policy {p!r}"
                for i, (p, r) in enumerate(zip(policy, robot, strict=True))
                if p != r
            ]
            problems.append(f"order differs at {swaps}")
        if problems:
            raise JointMismatchError("robot and policy joints differ; " + "; ".join(problems))
        self.robot_index = np.array([robot.index(n) for n in policy])  # policy i -> robot index
        self.reordered = policy != robot

    def to_policy(self, robot_values: np.ndarray) -> np.ndarray:
        return robot_values[self.robot_index]

    def to_robot(self, policy_values: np.ndarray) -> np.ndarray:
        out = np.empty_like(policy_values)
        out[self.robot_index] = policy_values
        return out


def parse_sequence(text: str | None) -> list[tuple[float, str]]:
    """``"interpolate@0.5,policy@4"`` -> [(0.5, "interpolate"), (4.0, "policy")], sorted by time."""
    if not text:
        return []
    events = []
    for item in text.split(","):
        name, _, at = item.strip().partition("@")
        try:
            seconds = float(at)
        except ValueError:
            raise SequenceError(f"--sequence item {item!r}: expected EVENT@SECONDS") from None
        if name not in EVENTS:
            raise SequenceError(f"--sequence event {name!r}; allowed: {', '.join(EVENTS)}")
        events.append((seconds, name))
    return sorted(events)


class ControllerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Path
    robot: str = Field(default="tcp://127.0.0.1:6000", description="bridge endpoint")
    interpolate_s: float = Field(
        default=2.0, gt=0, description="time to move to the default pose (longer where the way goes round)"
    )
    start_tolerance_rad: float = Field(
        default=0.5,
        gt=0,
        description="the policy starts only once every joint is within this of its default pose (rad)",
    )
    sequence: str | None = Field(default=None, description="timed events, e.g. interpolate@0.5,policy@4")
    record: Path | None = Field(default=None, description="NPZ file for observations, actions and states")
    require_same_order: bool = Field(default=False, description="refuse a robot whose joint order differs")
    duration_s: float | None = Field(default=None, gt=0, description="stop (damping) after this long")
    max_state_age_s: float = Field(default=0.25, gt=0, description="no state for this long: bridge is gone")
    log_every_s: float = Field(default=5.0, gt=0)
    keys: bool = Field(default=True, description="read key events from stdin")
    realtime: bool = Field(
        default=False, description="ask for SCHED_FIFO scheduling of the control loop (robot PCs; opt-in)"
    )
    cpus: list[int] | None = Field(
        default=None,
        description="run the control loop and its ZMQ I/O thread only on these CPUs (a core kept for the "
        "controller, away from the bridge's): default, wherever the OS puts them",
    )
    align_to_state: bool = Field(
        default=False,
        description="each step waits (at most 1.5 of the bridge's ticks and a quarter of the loop's period) "
        "for the first state the bridge publishes after the step's deadline, so the policy acts on a state "
        "fractions of a millisecond old instead of up to a tick old (a tracking policy that tracked with "
        "its commands a tick late fell when it also saw the robot a tick late). Opt-in: with Unitree's "
        "simulator at 2 ms on 2 cores its states stalled past the bridge's 100 ms in 3 of 4 runs with it, "
        "and in 2 of 4 without (deploy/PROTOCOL.md)",
    )
    prime_cache_s: float = Field(
        default=0.001,
        ge=0,
        le=0.01,
        description="in the policy phase, run the policy on the previous observation back to back for this "
        "long before each step (results unused, at most PRIME_MAX_RUNS runs), so its weights are back in "
        "cache and the CPU awake when the step's observation arrives; 0: off",
    )
    curve_secret: Path | None = Field(default=None, description="CurveZMQ: this controller's .key_secret")
    curve_server_key: Path | None = Field(default=None, description="CurveZMQ: the bridge's public .key")
    intervene_allow_remote: bool = Field(default=False, description="let the port bind beyond loopback")
    intervene: str | None = Field(
        default=None,
        description="serve an intervention port for `striata intervene` at tcp://HOST:PORT (PORT *: a free "
        "one); HOST must be loopback unless intervene_allow_remote",
    )
    intervene_curve_secret: Path | None = Field(default=None, description="CurveZMQ: the port's .key_secret")
    intervene_curve_clients: Path | None = Field(
        default=None, description="CurveZMQ: folder of the authorised consoles' .key files"
    )
    intervene_action_limit: float = Field(
        default=1.0, gt=0, description="a person's actions are clipped to +-this (policy action units)"
    )
    intervene_camera: str | None = Field(
        default=None, description="the console's view of the robot: an OpenCV device index, video file or URL"
    )
    policy_cameras: dict[str, str] = Field(
        default_factory=dict,
        description="a policy's camera inputs, name -> source: an OpenCV device index, file or URL, or "
        "zmq+tcp://HOST:PORT/NAME (the SO-101 twin's cameras)",
    )
    max_frame_age_s: float = Field(
        default=0.5, gt=0, description="a policy camera's latest frame older than this: hold, not policy"
    )
    target: tuple[float, float, float] | None = Field(
        default=None, description="so101_reach policies: where the tip goes (m, arm base frame, z up)"
    )

    @field_validator("intervene")
    @classmethod
    def _intervention_address(cls, address: str | None, info: ValidationInfo) -> str | None:
        if address is not None:  # checked before anything moves
            check_address(address, info.data.get("intervene_allow_remote", False))
        return address

    @field_validator("cpus")
    @classmethod
    def _cpus_available(cls, cpus: list[int] | None) -> list[int] | None:
        return None if cpus is None else check_cpus(cpus)

    @model_validator(mode="after")
    def _camera_needs_port(self) -> ControllerConfig:
        if self.intervene_camera is not None and self.intervene is None:
            raise ValueError("intervene_camera: the camera is the console's view; give --intervene too")
        return self


@dataclass
class Timing:
    lateness_s: deque = field(default_factory=lambda: deque(maxlen=100_000))
    period_s: deque = field(default_factory=lambda: deque(maxlen=100_000))
    policy_s: deque = field(default_factory=lambda: deque(maxlen=100_000))
    # How old the state a step acts on is: the bridge stamps it when it sends it (one machine's clock).
    state_age_s: deque = field(default_factory=lambda: deque(maxlen=100_000))
    step_phase: deque = field(default_factory=lambda: deque(maxlen=100_000))
    overruns: int = 0


def percentiles(values: Any, scale: float) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p99": None}
    array = np.asarray(values) * scale
    return {
        "p50": round(float(np.percentile(array, 50)), 4),
        "p99": round(float(np.percentile(array, 99)), 4),
    }


class Controller:
    def __init__(self, config: ControllerConfig, log: TextIO | None = None) -> None:
        self.config = config
        self.log = log or sys.stderr
        self.metadata: PolicyMetadata = read_metadata(config.policy)
        self.session = make_session(config.policy)
        self.observer = make_observer(self.metadata, load_motion(config.policy, self.metadata), config.target)
        md = self.metadata
        self.default_pos = np.asarray(md.default_joint_pos)
        self.kp, self.kd = np.asarray(md.kp), np.asarray(md.kd)
        self.standby_kp = np.asarray(md.standby_kp) if md.standby_kp is not None else self.kp
        self.standby_kd = np.asarray(md.standby_kd) if md.standby_kd is not None else self.kd
        self.sequence = parse_sequence(config.sequence)
        self.events: Queue[str] = Queue()
        self.phase = Phase.zero_torque
        self.phase_log: list[tuple[float, str]] = []
        self.timing = Timing()
        self.last_action = np.zeros(md.action_dim)
        self.decimation = max(1, math.ceil(md.control_dt / COMMAND_PERIOD_S - 1e-9))
        self._policy_ticks = 0
        self._policy_target: np.ndarray | None = None
        # The way to the default pose the interpolation, and a hold entered from the policy, follow.
        self._path: PosturePath | None = None
        self._path_started = 0.0
        self._interp_s = config.interpolate_s
        self._told_waiting = False  # whether the user was told why a policy event waits
        # The robot's model for its way to the default pose (a G1's observer has read the same assets).
        self.posture: PostureModel | None = posture_model(md.robot, md.joint_names)
        self._phase_started = 0.0
        self._pending_policy = False
        self._remote_before: set[str] = set()
        self._policy_seqs = [np.inf, -np.inf]  # first and last command seq sent in the policy phase
        per_step = ("t", "tick", "phase", "q", "dq", "q_target")
        per_policy_step = ("obs", "action", "policy_action", "intervention", "label")
        self._records: dict[str, list] = {k: [] for k in per_step + per_policy_step}
        self.client: BridgeClient | None = None
        self.hil: RobotHumanLoop | None = None
        self._camera: CameraStream | None = None  # the console's view, owned by ``hil`` once it exists
        self.cameras: PolicyCameras | None = None  # the policy's camera inputs, if it reads any
        self._last_feed: dict[str, np.ndarray] | None = None
        self.joints: JointMap | None = None
        self.placement = LoopPlacement(config.cpus, config.realtime)
        self._align_wait_s = 0.0  # how long a step waits for the bridge's next state (align_to_state)

    # ----------------------------------------------------------------- setup
    def connect(self) -> None:
        if not self.placement.entered:
            self.placement.enter()  # before the client: ZMQ's I/O thread, started with it, inherits it
            if self.placement.cpus is not None:
                self._say(f"control loop on CPUs {self.placement.cpus}")
            if self.placement.scheduling is not None:
                self._say(f"control loop scheduling: {self.placement.scheduling}")
        curve = None
        if self.config.curve_secret is not None or self.config.curve_server_key is not None:
            if self.config.curve_secret is None or self.config.curve_server_key is None:
                raise CurveKeyError("CurveZMQ needs both --curve-secret and --curve-server-key")
            curve = CurveClient(self.config.curve_secret, self.config.curve_server_key)
        md = self.metadata
        if (md.cameras or self.config.policy_cameras) and self.cameras is None:
            # Before the bridge, as the console's camera: a policy that cannot see does not start.
            self.cameras = PolicyCameras(
                md.cameras or [],
                md.camera_sizes or [],
                self.config.policy_cameras,
                self.config.max_frame_age_s,
            )
        if self.config.intervene_camera is not None and self._camera is None:
            # Before the bridge: a camera that cannot be opened is reported before anything moves.
            view = HilConfig()  # the frame size the console's port asks for
            self._camera = CameraStream(self.config.intervene_camera, view.width, view.height)
        self.client = BridgeClient(self.config.robot, curve=curve)
        welcome = self.client.hello(self.metadata.joint_names)
        self.joints = JointMap(
            self.metadata.joint_names, welcome["joint_names"], self.config.require_same_order
        )
        if self.joints.reordered:
            self._say("robot joint order differs from the policy's: mapped by name")
        period = welcome.get("control_period_s")
        if self.config.align_to_state and isinstance(period, int | float) and period > 0:
            loop_dt = self.metadata.control_dt / self.decimation
            self._align_wait_s = min(ALIGN_WAIT_TICKS * float(period), ALIGN_WAIT_SHARE * loop_dt)
        count = len(welcome["joint_names"])
        self._say(f"connected to {welcome.get('robot')} at {self.config.robot}: {count} joints")
        cfg = self.config
        if cfg.intervene is not None and self.hil is None:
            hil, port = hil_settings(
                cfg.intervene,
                cfg.intervene_allow_remote,
                cfg.intervene_curve_secret,
                cfg.intervene_curve_clients,
            )
            self.hil = RobotHumanLoop(
                hil, port, self.metadata, cfg.intervene_action_limit, self._say, self._camera
            )
            self._say(f"intervention port: {self.hil.endpoint} (striata intervene --job {self.hil.endpoint})")

    def _say(self, text: str) -> None:
        print(f"[deploy] {text}", file=self.log, flush=True)

    def _read_keys(self) -> None:
        for line in sys.stdin:
            event = KEYS.get(line.strip()[:1].lower())
            if event is not None:
                self.events.put(event)

    # ----------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        """Run until quit, the sequence or ``duration_s`` ends, or the bridge goes away; return a summary."""
        if self.client is None:
            self.connect()
        client, joints = self.client, self.joints
        assert client is not None and joints is not None
        if self.config.keys and sys.stdin is not None and not sys.stdin.closed:
            threading.Thread(target=self._read_keys, daemon=True).start()
        previous_handlers = {}
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C / SIGTERM: quit through damping like the q key, never die mid-command.
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous_handlers[signum] = signal.signal(signum, lambda *_: self.events.put("quit"))
        dt = self.metadata.control_dt / self.decimation
        # Everything allocated so far lives for the whole run: keep it out of the collector's scans,
        # so a garbage collection cannot stall a control step.
        gc.collect()
        gc.freeze()
        client.receive(self.config.max_state_age_s)
        if client.latest is None:
            raise BridgeUnavailableError(f"no state from {self.config.robot} after the welcome")
        start = time.monotonic()
        self._set_phase(Phase.damping if client.latest.mode == "damping" else Phase.zero_torque, 0.0)
        k, last_log, previous_start = 0, start, None
        stop_reason = "quit"
        sequence = list(self.sequence)
        try:
            while True:
                deadline = start + k * dt
                self._prime_cache(client, deadline)
                client.receive(max(0.0, deadline - time.monotonic()))
                self.timing.lateness_s.append(time.monotonic() - deadline)
                if self._align_wait_s > 0:
                    client.receive_newer_state(self._align_wait_s)
                now = time.monotonic()
                self.timing.state_age_s.append(now - client.latest.time)
                self.timing.period_s.append(np.nan if previous_start is None else now - previous_start)
                self.timing.step_phase.append(self.phase)
                previous_start = now
                t = now - start
                while sequence and sequence[0][0] <= t:
                    self.events.put(sequence.pop(0)[1])
                if now - client.latest_at > self.config.max_state_age_s:
                    stop_reason = f"bridge silent for {now - client.latest_at:.3f} s"
                    break
                if client.errors.get("watchdog_latched"):
                    stop_reason = "the bridge's watchdog fired (this controller stalled): robot in damping"
                    break
                if self.config.duration_s is not None and t >= self.config.duration_s:
                    stop_reason = "duration"
                    break
                if self._handle_events(t) == "quit":
                    break
                self._step(t)
                k += 1
                behind = int((time.monotonic() - start) / dt) - k
                if behind > 0:  # missed whole periods: skip them rather than run late steps back to back
                    self.timing.overruns += behind
                    k += behind
                if now - last_log >= self.config.log_every_s:
                    self._log_timing()
                    last_log = now
        finally:
            self._finish()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        return self.summary(stop_reason)

    def _prime_cache(self, client: BridgeClient, deadline: float) -> None:
        """Between policy steps other processes evict the policy's weights from the CPU caches, and an
        idle virtual CPU loses them (a cold inference takes several times a warm one). Throwaway
        inferences on the previous observation, back to back from ``prime_cache_s`` before the
        deadline until one more would pass it, bring them back and keep the CPU awake, so the step's
        own inference runs warm. One throwaway run alone was not enough on a VM whose idle CPUs lose
        their caches (`striata bench deploy`, five interleaved pairs: onnx p99 215-337 us with one,
        101-240 us with the window; 40 us back to back)."""
        prime_s = self.config.prime_cache_s
        if prime_s <= 0 or self.phase != Phase.policy or self._last_feed is None:
            return
        if self._policy_ticks % self.decimation:
            return  # the coming step re-sends the last target: no inference to warm up for
        client.receive(max(0.0, deadline - prime_s - time.monotonic()))
        for _ in range(PRIME_MAX_RUNS):
            began = time.monotonic()
            self.session.run(["actions"], self._last_feed)
            if deadline - time.monotonic() < time.monotonic() - began:
                return

    def _handle_events(self, t: float) -> str | None:
        client, joints = self.client, self.joints
        assert client is not None and client.latest is not None and joints is not None
        pressed = set(client.latest.remote)
        for button in sorted(pressed - self._remote_before):
            if button in REMOTE_EVENTS:
                self.events.put(REMOTE_EVENTS[button])
        self._remote_before = pressed
        hil = self.hil
        if hil is not None:
            hil.poll()
        while True:
            try:
                event = self.events.get_nowait()
            except Empty:
                break
            if event == "quit":
                return "quit"
            if event == "estop":
                client.estop()
                self._set_phase(Phase.damping, t)
            elif event == "damping":
                self._set_phase(Phase.damping, t)
            elif event == "interpolate" and self.phase in (Phase.zero_torque, Phase.damping):
                self._set_path(joints.to_policy(client.latest.q), t)
                self._set_phase(Phase.interpolate, t)
            elif event == "policy" and self.phase in (Phase.interpolate, Phase.hold):
                self._pending_policy = True
            else:
                self._say(f"ignored {event!r} in phase {self.phase}")
        if self.phase == Phase.interpolate and t - self._path_started >= self._interp_s:
            self._set_phase(Phase.hold, t)
        paused = hil is not None and hil.paused
        if paused and self.phase == Phase.policy:
            # A console's pause: hold the default pose, and run the policy again when it ends.
            self._say("intervention: paused by the console")
            self._hold_from_policy(t)
        blind = None if self.cameras is None else self.cameras.stale()
        if blind is not None and self.phase == Phase.policy:
            self._say(f"{blind}: hold until the cameras are back")
            self._hold_from_policy(t)
        state = client.latest
        if (
            self._pending_policy
            and self.phase == Phase.hold
            and not paused
            and blind is None
            and self._at_default(joints.to_policy(state.q))
        ):
            self._pending_policy = False
            self.observer.start(state.imu_quat_wxyz, joints.to_policy(state.q))
            self.last_action = np.zeros(self.metadata.action_dim)  # a new array: the old one is recorded
            self._policy_ticks = 0
            self._policy_target = None  # a new policy phase starts from the default pose, not the last one
            self._set_phase(Phase.policy, t)
            if hil is not None:
                hil.begin()
        return None

    def _hold_from_policy(self, t: float) -> None:
        """Hold, and run the policy again when what stopped it ends: the default pose is reached along a
        path at the interpolation's speed, not in the bridge's 25 rad/s target ramp."""
        assert self.client is not None and self.client.latest is not None and self.joints is not None
        self._pending_policy = True
        self._set_path(self.joints.to_policy(self.client.latest.q), t)
        self._set_phase(Phase.hold, t)

    def _set_path(self, start: np.ndarray, t: float) -> None:
        self._path = self._plan(start)
        self._path_started = t
        self._interp_s = self.config.interpolate_s * self._path.length

    def _plan(self, start: np.ndarray) -> PosturePath:
        if self.posture is None:
            return straight_path(start.copy(), self.default_pos)
        path = self.posture.plan(start, self.default_pos)
        if not path.reached:
            names = self.metadata.joint_names
            end = path.waypoints[-1]
            far = np.abs(end - self.default_pos).argmax()
            self._say(
                "the way to the default pose would press the robot into itself: it holds where the way "
                f"ends ({names[far]} {end[far]:+.2f} rad, default {self.default_pos[far]:+.2f}), and a "
                "policy waits for the default pose. Damp it, move its limbs clear and start again"
            )
        elif path.length > 1.0:
            self._say(
                f"the straight way to the default pose presses the robot into itself: going round "
                f"({path.length:.2f}x as long)"
            )
        return path

    def _at_default(self, q: np.ndarray) -> bool:
        """Whether the robot is near enough its default pose for the policy; says once why not."""
        error = np.abs(q - self.default_pos)
        far = int(error.argmax())
        if error[far] <= self.config.start_tolerance_rad:
            self._told_waiting = False
            return True
        if not self._told_waiting:
            self._say(
                f"policy waits: {self.metadata.joint_names[far]} is {error[far]:.2f} rad from its default "
                f"pose (start_tolerance_rad {self.config.start_tolerance_rad})"
            )
            self._told_waiting = True
        return False

    def _set_phase(self, phase: Phase, t: float) -> None:
        if phase != self.phase or not self.phase_log:
            self._say(f"t={t:7.3f} s  phase {phase}")
            self.phase_log.append((round(t, 4), str(phase)))
        self.phase = phase
        self._phase_started = t

    def _step(self, t: float) -> None:
        client, joints = self.client, self.joints
        assert client is not None and joints is not None and client.latest is not None
        state = client.latest
        q, dq = joints.to_policy(state.q), joints.to_policy(state.dq)
        obs = action = policy_action = None
        intervened, label = False, LABEL_NONE
        zeros = np.zeros_like(q)
        hil = self.hil
        if hil is not None and self.phase != Phase.policy:
            if hil.in_episode:  # the policy phase was just left: its episode ends with this observation
                hil.end(self._observe(q, dq, state)[0])
            hil.idle()
        if self.phase in (Phase.zero_torque, Phase.damping):
            target = None
            client.send_command(str(self.phase))
        else:
            kp, kd = self.standby_kp, self.standby_kd
            if self.phase in (Phase.interpolate, Phase.hold):
                assert self._path is not None
                target = self._path.at((t - self._path_started) / self._interp_s)
            elif self._policy_ticks % self.decimation and self._policy_target is not None:
                self._policy_ticks += 1
                target, kp, kd = self._policy_target, self.kp, self.kd
            else:
                self._policy_ticks += 1
                obs = self._observe(q, dq, state)
                feed = {"obs": obs} if self.cameras is None else self.cameras.feed(obs)
                self._last_feed = feed
                began = time.perf_counter()
                action = policy_action = self.session.run(["actions"], feed)[0][0].astype(np.float64)
                self.timing.policy_s.append(time.perf_counter() - began)
                if hil is not None:
                    # A person's action replaces the policy's in the same action space, and is what the
                    # next observation's last-action term sees, as in training.
                    action, intervened, label = hil.policy_step(obs[0], policy_action)
                self.last_action = action
                target = self.observer.targets_of(action)
                if self.posture is not None:
                    previous = self.default_pos if self._policy_target is None else self._policy_target
                    target = self.posture.keep_apart(previous, target)
                self._policy_target = target
                kp, kd = self.kp, self.kd
            seq = client.seq + 1
            if self.phase == Phase.policy:
                self._policy_seqs = [min(self._policy_seqs[0], seq), seq]
            client.send_command(
                str(self.phase),
                q_target=joints.to_robot(target),
                dq_target=zeros,
                kp=joints.to_robot(kp),
                kd=joints.to_robot(kd),
                tau_ff=zeros,
            )
        self._record(t, state.tick, q, dq, target, obs, action, policy_action, intervened, label)

    def _record(
        self,
        t: float,
        tick: int,
        q: np.ndarray,
        dq: np.ndarray,
        target: np.ndarray | None,
        obs: np.ndarray | None,
        action: np.ndarray | None,
        policy_action: np.ndarray | None,
        intervened: bool,
        label: int,
    ) -> None:
        if self.config.record is None:
            return
        r = self._records
        r["t"].append(t)
        r["tick"].append(tick)
        r["phase"].append(list(Phase).index(self.phase))
        r["q"].append(q)
        r["dq"].append(dq)
        r["q_target"].append(np.full_like(q, np.nan) if target is None else target)
        if obs is not None:
            r["obs"].append(obs[0])
            r["action"].append(action)
            r["policy_action"].append(policy_action)
            r["intervention"].append(intervened)
            r["label"].append(label)

    def _observe(self, q: np.ndarray, dq: np.ndarray, state: StateMessage) -> np.ndarray:
        """The policy's observation [1, obs_dim] of a state (``q``, ``dq`` in policy joint order)."""
        return self.observer.observe(Measured(q, dq, state.imu_quat_wxyz, state.gyro, self.last_action))

    def _finish(self) -> None:
        client, joints, hil = self.client, self.joints, self.hil
        if hil is not None:
            if hil.in_episode and client is not None and client.latest is not None and joints is not None:
                state = client.latest
                q, dq = joints.to_policy(state.q), joints.to_policy(state.dq)
                hil.end(self._observe(q, dq, state)[0])
            hil.close()
        elif self._camera is not None:
            self._camera.close()
        if self.cameras is not None:
            self.cameras.close()
        if client is not None:
            client.send_command(str(Phase.damping))
            client.receive(0.05)
            client.close()
        self.placement.leave()
        if self.config.record is not None:
            self._save_record(self.config.record)

    def _save_record(self, path: Path) -> None:
        r = self._records
        path.parent.mkdir(parents=True, exist_ok=True)
        obs_dim, action_dim = self.metadata.obs_dim, self.metadata.action_dim
        np.savez(
            path,
            t=np.asarray(r["t"]),
            tick=np.asarray(r["tick"], dtype=np.int64),
            phase=np.asarray(r["phase"], dtype=np.int8),
            phase_names=np.array([str(p) for p in Phase]),
            q=np.asarray(r["q"]).reshape(-1, len(self.default_pos)),
            dq=np.asarray(r["dq"]).reshape(-1, len(self.default_pos)),
            q_target=np.asarray(r["q_target"]).reshape(-1, len(self.default_pos)),
            obs=np.asarray(r["obs"], dtype=np.float32).reshape(-1, obs_dim),
            actions=np.asarray(r["action"], dtype=np.float32).reshape(-1, action_dim),
            policy_actions=np.asarray(r["policy_action"], dtype=np.float32).reshape(-1, action_dim),
            intervention=np.asarray(r["intervention"], dtype=bool),
            label=np.asarray(r["label"], dtype=np.int8),
            joint_names=np.array(self.metadata.joint_names),
        )

    # ----------------------------------------------------------------- figures
    def _log_timing(self) -> None:
        recent = 250
        lateness = list(self.timing.lateness_s)[-recent:]
        rtt = [r for _, r in list(self.client.rtt_s)[-recent:]] if self.client else []
        policy = list(self.timing.policy_s)[-recent:]
        self._say(
            f"phase {self.phase}: lateness ms {percentiles(lateness, 1e3)}, "
            f"policy us {percentiles(policy, 1e6)}, bridge rtt ms {percentiles(rtt, 1e3)}, "
            f"overruns {self.timing.overruns}"
        )

    def figures(self, policy_phase_only: bool = False) -> dict[str, Any]:
        """Latency figures over the whole run or over the policy phase only."""
        phases = np.array([str(p) for p in self.timing.step_phase])
        keep = phases == str(Phase.policy) if policy_phase_only else np.ones(len(phases), dtype=bool)
        period = np.asarray(self.timing.period_s)[keep]
        period_error = np.abs(period[np.isfinite(period)] - self.metadata.control_dt)
        rtt = list(self.client.rtt_s) if self.client else []
        low, high = self._policy_seqs
        if policy_phase_only:
            rtt = [(seq, r) for seq, r in rtt if low <= seq <= high]
        return {
            "onnx_latency_us": percentiles(self.timing.policy_s, 1e6),
            "period_error_ms": percentiles(period_error, 1e3),
            "bridge_rtt_ms": percentiles([r for _, r in rtt], 1e3),
            "deadline_lateness_ms": percentiles(np.asarray(self.timing.lateness_s)[keep], 1e3),
            "state_age_ms": percentiles(np.asarray(self.timing.state_age_s)[keep], 1e3),
            "steps": int(keep.sum()),
        }

    def summary(self, stop_reason: str) -> dict[str, Any]:
        client = self.client
        return {
            "stop_reason": stop_reason,
            "phases": self.phase_log,
            **self.figures(),
            "overruns": self.timing.overruns,
            "bridge_errors": dict(client.errors) if client else {},
            "record": str(self.config.record) if self.config.record else None,
            "intervention": None if self.hil is None else {"endpoint": self.hil.endpoint, **self.hil.totals},
        }
