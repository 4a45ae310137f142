"""`striata eval POLICY.onnx --sim-bridge`: the tracking figures of `striata eval`, through the deploy path.

Each episode is a whole deployment as a user runs one: `striata bridge sim --track POLICY` (a MuJoCo
G1 at 500 Hz behind the bridge protocol and its safety) and `striata deploy --policy POLICY`, two
processes, the controller scripted through zero torque, interpolation to the default pose, hold, the
policy for the clip's length and damping; it acts on the bridge's freshest state
(``--align-to-state``); with two CPUs or more, each process on a CPU of its own (`--cpu`, as `bench
deploy` places them: a robot's computer keeps a core for each loop). So the robot starts standing on
the default pose, not on the clip's first frame, its PD loop runs at 2 ms on explicit torques, not on
the training env's 5 ms position actuators, and the policy sees what the controller builds from the
robot's state.

With ``--track``, the bridge's robot is a ``MonitoredSimRobot``: its ``TrackingMonitor`` reads the
simulated G1 every policy step (every ``step_dt / control_period`` ticks) and measures it with the
training task's own code (``TrackingMDP.frame``, ``relative_reference``, the terminations) against the
reference from its first frame on, from the tick the bridge entered the policy phase. The anchor
orientation error is taken after turning the reference about z by the heading difference at that
tick, as the controller's observer turns it (the other figures and every termination do not depend
on the heading). An episode reaches the end when no termination fired before the clip's last frame.
The bridge's final report carries the monitor's figures (``tracking``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from striata.deploy.bench import bench_cpus, free_port
from striata.deploy.controller import ControllerConfig
from striata.deploy.robot import RobotState
from striata.deploy.sim_robot import SimRobot
from striata.envs.rotations import quat_conj, quat_mul, yaw_angle, yaw_quat
from striata.envs.tasks.g1_tracking.config import G1TrackingConfig
from striata.envs.tasks.g1_tracking.env import build_g1_scene
from striata.envs.tasks.g1_tracking.mdp import HOLD_S, SimState, TrackingMDP, load_motion
from striata.envs.tasks.g1_tracking.terminations import terminations
from striata.evaluate import ERROR_KEYS, EvalError, eval_config

STRIATA = (sys.executable, "-m", "striata")
# The controller's script before the policy: zero torque, then its interpolation to the default pose, then
# the hold the training env's standing starts settle through (HOLD_S).
INTERPOLATE_AT_S = 0.5
POLICY_AT_S = INTERPOLATE_AT_S + ControllerConfig.model_fields["interpolate_s"].default + HOLD_S
# After the clip: this much more policy (the bridge may tick a little behind), then damping, then quit.
SPARE_S = 0.5


class SimBridgeEvalError(EvalError):
    """A deployment that did not run through: the controller's or the bridge's own words."""


@dataclass
class TrackingMonitor:
    """The training task's figures of one simulated G1, from the tick its policy phase starts."""

    mdp: TrackingMDP
    ticks_per_step: int
    ticks: int = 0
    start_tick: int | None = None
    steps: int = 0
    reached_end: bool = False
    ended: bool = False
    terminated_by: list[str] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ERROR_KEYS, 0.0))
    _heading: np.ndarray | None = None  # turns the reference's anchor onto the robot's at the start

    def on_phase(self, phase: str) -> None:
        if phase == "policy" and self.start_tick is None:
            self.start_tick = self.ticks
        elif self.start_tick is not None and not self.ended:
            self.ended = True  # the policy stopped before the clip's end

    def observe(self, data: mujoco.MjData) -> None:
        """After each tick: the figures of this policy step, and whether it left the reference."""
        self.ticks += 1
        if self.start_tick is None or self.ended:
            return
        step, rest = divmod(self.ticks - 1 - self.start_tick, self.ticks_per_step)
        if rest:
            return
        if step >= self.mdp.motion.num_frames:
            self.reached_end = self.ended = True
            return
        fields = (data.qpos, data.qvel, data.xpos, data.xquat, data.xmat, data.sensordata)
        sim = SimState(*(x[None] for x in fields))
        zeros = np.zeros((1, len(self.mdp.default_pos)))
        frame = self.mdp.frame(sim, np.array([step]), self.mdp.default_pos[None], zeros, zeros)
        rel_pos, _ = frame.relative_reference()
        if self._heading is None:
            yaw = float(yaw_angle(quat_mul(frame.anchor_quat, quat_conj(frame.ref_anchor_quat)))[0])
            self._heading = yaw_quat(yaw)[None]
        errors = frame.tracking_errors(rel_pos, quat_mul(self._heading, frame.ref_anchor_quat))
        for key in ERROR_KEYS:
            self.sums[key] += float(errors[key][0])
        self.steps += 1
        flags = terminations(frame, self.mdp.cfg.terminations, rel_pos, self.mdp.end_effectors)
        fired = [name for name, flag in flags.items() if bool(flag[0])]
        if fired:
            self.terminated_by, self.ended = fired, True

    def report(self) -> dict[str, Any]:
        """This episode's figures: mean errors over its policy steps, whether it reached the end."""
        return {
            "reached_end": self.reached_end,
            "steps": self.steps,
            "terminated_by": self.terminated_by,
            **{key: value / max(self.steps, 1) for key, value in self.sums.items()},
        }


class MonitoredSimRobot(SimRobot):
    """The sim bridge's G1, measured by a ``TrackingMonitor`` against ``config``'s clip after every tick."""

    def __init__(self, config: G1TrackingConfig, viewer: bool = False) -> None:
        super().__init__("g1", viewer=viewer)
        step_dt = config.physics_dt * config.decimation
        mdp = TrackingMDP.build(config, self.model, load_motion(config, self.model, 1.0 / step_dt), step_dt)
        self.monitor = TrackingMonitor(mdp, round(step_dt / self.control_period_s))

    def read_state(self) -> RobotState:
        state = super().read_state()
        self.monitor.observe(self.data)
        return state

    def on_controller_phase(self, phase: str) -> None:
        super().on_controller_phase(phase)
        self.monitor.on_phase(phase)


def run_episode(policy: Path, clip: str | None, clip_s: float) -> dict[str, Any]:
    """One deployment of ``policy`` on `striata bridge sim --track`; the bridge's ``tracking`` report."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    damping_at = POLICY_AT_S + clip_s + SPARE_S
    track = ["--track", str(policy), *(["--track-clip", clip] if clip is not None else [])]
    cpus = bench_cpus(pin=True)
    bridge_cpu, controller_cpu = (
        ([], [])
        if cpus is None
        else (["--cpu", str(cpus["bridge"][0])], ["--cpu", str(cpus["controller"][0])])
    )
    bridge = subprocess.Popen(
        [*STRIATA, "bridge", "sim", "--robot", "g1", "--endpoint", endpoint, *track, *bridge_cpu,
         "--duration", str(damping_at + 60.0)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    sequence = ",".join(
        f"{event}@{at:g}"
        for event, at in (
            ("interpolate", INTERPOLATE_AT_S), ("policy", POLICY_AT_S), ("damping", damping_at),
            ("quit", damping_at + 0.5),
        )
    )  # fmt: skip
    try:
        controller = subprocess.run(
            [*STRIATA, "deploy", "--policy", str(policy), "--robot", endpoint, "--no-keys",
             "--sequence", sequence, "--align-to-state", *controller_cpu],
            capture_output=True, text=True, timeout=damping_at + 60.0,
        )  # fmt: skip
    finally:
        bridge.send_signal(signal.SIGINT)
        out, err = bridge.communicate(timeout=30.0)
    if controller.returncode != 0:
        raise SimBridgeEvalError(
            f"striata deploy exited {controller.returncode}: {controller.stderr[-2000:]}"
        )
    if bridge.returncode != 0 or not out.strip():
        raise SimBridgeEvalError(f"striata bridge sim exited {bridge.returncode}: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])["tracking"]


def evaluate_on_sim_bridge(
    policy: Path,
    clip: str | None,
    episodes: int,
    on_episode: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """``episodes`` deployments of ``policy``; the figures of ``striata eval`` over them."""
    config = eval_config(policy, clip)[1]
    step_dt = config.physics_dt * config.decimation
    clip_s = load_motion(config, build_g1_scene(step_dt), 1.0 / step_dt).num_frames * step_dt
    reports = []
    for done in range(episodes):
        reports.append(run_episode(policy, clip, clip_s))
        if on_episode is not None:
            on_episode(done + 1, episodes)
    return {
        "through": "striata bridge sim + striata deploy",
        "clip_s": round(clip_s, 3),
        "reached_end": float(np.mean([r["reached_end"] for r in reports])),
        **{key: round(float(np.mean([r[key] for r in reports])), 4) for key in ERROR_KEYS},
        "episode_s": round(float(np.mean([r["steps"] for r in reports])) * step_dt, 3),
        "terminations": dict(Counter(name for r in reports for name in r["terminated_by"])),
    }
