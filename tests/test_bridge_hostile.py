"""The bridge against peers that break the rules: hellos that must not change the robot's mode, a new
connection that reuses a routing id, a robot whose state stops arriving, commands at the limits of
float64, and floods of frames and messages (issue 18). Timing targets live in
`striata bench bridge-attacks`; here only what must hold on any machine is asserted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from bridge_peer import RunningBridge, dealer, recv_until

from striata.deploy import protocol
from striata.deploy.attack_bench import ATTACKS, bench_bridge_attacks
from striata.deploy.bench import free_port
from striata.deploy.bridge_server import BridgeServer
from striata.deploy.robot import JointCommand, RobotState, StateLost
from striata.deploy.safety import SafetyConfig, SafetyFilter
from striata.deploy.sim_robot import SimRobot
from striata.envs.robots.g1 import G1
from striata.envs.robots.panda import PANDA

HUGE = 1e308  # finite, so the protocol accepts it: only the bridge's safety stands in its way
UPRIGHT_M = 0.6  # pelvis height (m) above which the G1 stands on its feet, not lies on its joints


@dataclass
class WatchedRobot:
    """A sim Panda as a RobotBackend that can lose its state on demand and records every write."""

    sim: SimRobot = field(default_factory=lambda: SimRobot("panda"))
    lost: threading.Event = field(default_factory=threading.Event)
    writes: list[tuple[float, JointCommand]] = field(default_factory=list)
    worst_excursion: float = 0.0
    worst_upright_excursion: float = 0.0  # while a G1's pelvis is above UPRIGHT_M (an arm: always)
    worst_joint: str = ""
    soft: SafetyFilter | None = None

    def __post_init__(self) -> None:
        sim = self.sim
        self.joint_names, self.control_period_s = sim.joint_names, sim.control_period_s
        self.joint_limits, self.effort_limits = sim.joint_limits, sim.effort_limits
        self.velocity_limits = sim.velocity_limits
        self.brake_accel = sim.brake_accel
        self.self_collision = sim.self_collision
        self.gain_limits = sim.gain_limits
        self.applies_gains = sim.applies_gains
        self.soft = SafetyFilter(SafetyConfig(), sim.joint_limits, sim.effort_limits, sim.velocity_limits)

    def read_state(self) -> RobotState:
        if self.lost.is_set():
            raise StateLost("test: the robot went quiet")
        state = self.sim.read_state()
        past = np.maximum(state.q - self.soft.upper, self.soft.lower - state.q)
        beyond = past.max()
        if beyond > self.worst_excursion:
            self.worst_joint = self.joint_names[int(past.argmax())]
        self.worst_excursion = max(self.worst_excursion, float(beyond))
        if not self.sim.has_base or self.sim.base_height() > UPRIGHT_M:
            self.worst_upright_excursion = max(self.worst_upright_excursion, float(beyond))
        return state

    def write_command(self, command: JointCommand) -> None:
        self.writes.append((time.monotonic(), command))
        self.sim.write_command(command)

    def close(self) -> None:
        self.sim.close()


@pytest.fixture
def served() -> Iterator[RunningBridge]:
    running = RunningBridge(WatchedRobot())
    running.thread.start()
    running.wait_for(lambda s: s["ticks"] > 0, 30.0, "the first tick")
    yield running
    running.stop.set()
    running.thread.join(timeout=10)
    assert not running.thread.is_alive()


def _hold(sock: zmq.Socket, seq: int, session: int, robot: Any = PANDA, **extreme: np.ndarray) -> None:
    kp, kd = robot.standby_kp_kd
    n = len(robot.joint_names)
    arrays = {
        "q_target": robot.default_pos,
        "dq_target": np.zeros(n),
        "kp": kp,
        "kd": kd,
        "tau_ff": np.zeros(n),
    }
    arrays.update(extreme)
    sock.send(protocol.command_message(seq, session, "hold", **arrays))


def test_a_hello_changes_no_mode_and_a_reused_routing_id_must_say_hello(served: RunningBridge) -> None:
    names = list(PANDA.joint_names)
    first = dealer(served.endpoint, b"controller-a")
    first.send(protocol.hello_message("a", names))
    welcome = recv_until(first, "welcome")
    assert welcome["mode"] == "zero_torque"
    assert served.ticks_pass(50)["mode"] == "zero_torque"  # a bare hello at start: still limp, as before
    _hold(first, 1, welcome["session"])
    served.wait_for(lambda s: s["mode"] == "position", 5.0, "the hold applied")
    served.wait_for(lambda s: s["watchdog_fired"] and s["mode"] == "damping", 5.0, "the watchdog")
    first.close()

    second = dealer(served.endpoint, b"controller-b")
    second.send(protocol.hello_message("b", names))
    session = recv_until(second, "welcome")["session"]
    assert served.ticks_pass(100)["mode"] == "damping"  # the damped robot does not go limp on a hello
    # What a new connection on a reused routing id can send (libzmq itself refuses the id while the old
    # connection lingers): commands from that id without the session this welcome gave are refused.
    for guess in (0, 1, session + 1):
        _hold(second, 1, guess)
        assert recv_until(second, "error")["reason"] == "not_owner"
    _hold(second, 1, session)
    served.wait_for(lambda s: s["mode"] == "position", 5.0, "the second controller's hold")
    assert served.server.status()["accepted"] == 4  # two hellos, two holds
    second.close()


def test_a_lost_state_damps_without_exiting_and_every_exit_damps_for_half_a_second(
    served: RunningBridge, capfd: pytest.CaptureFixture[str]
) -> None:
    controller = dealer(served.endpoint)
    controller.send(protocol.hello_message("test", list(PANDA.joint_names)))
    session = recv_until(controller, "welcome")["session"]
    _hold(controller, 1, session)
    served.wait_for(lambda s: s["mode"] == "position", 5.0, "the hold applied")

    served.robot.lost.set()
    status = served.wait_for(
        lambda s: s["state_lost"] and s["mode"] == "damping", 5.0, "damping on state loss"
    )
    lost_at = served.robot.writes[-1][0]
    served.ticks_pass(100)
    assert served.thread.is_alive()
    late = [c for t, c in served.robot.writes if t > lost_at]
    assert late and all(np.all(c.kp == 0) and np.all(c.kd > 0) for c in late)  # damping every tick
    assert "robot state lost" in capfd.readouterr().err

    served.robot.lost.clear()
    assert served.ticks_pass(20)["mode"] == "damping"  # the state is back, but only a hello re-arms
    controller.send(protocol.hello_message("test", list(PANDA.joint_names)))
    session = recv_until(controller, "welcome")["session"]
    _hold(controller, 1, session)
    served.wait_for(lambda s: not s["state_lost"] and s["mode"] == "position", 5.0, "commanding again")
    controller.close()

    served.stop.set()
    served.thread.join(timeout=10)
    assert status["state_lost_ticks"] > 0
    stopped_at = next(t for t, c in reversed(served.robot.writes) if np.any(c.kp > 0))
    after = [(t, c) for t, c in served.robot.writes if t > stopped_at]
    assert all(np.all(c.kp == 0) and np.all(c.kd > 0) for _, c in after)
    assert after[-1][0] - after[0][0] >= SafetyConfig().exit_damping_s - 0.01


def test_a_broken_robot_still_gets_damping_for_half_a_second() -> None:
    robot = WatchedRobot()
    server = BridgeServer(robot, f"tcp://127.0.0.1:{free_port()}", SafetyConfig())
    calls = {"n": 0}
    read = robot.read_state

    def failing() -> RobotState:
        calls["n"] += 1
        if calls["n"] > 20:
            raise OSError("test: the robot's driver crashed")
        return read()

    robot.read_state = failing  # type: ignore[method-assign]
    with pytest.raises(OSError):
        server.serve(duration_s=10.0)
    times = [t for t, c in robot.writes if np.all(c.kp == 0) and np.all(c.kd > 0)]
    assert times and times[-1] - times[0] >= SafetyConfig().exit_damping_s - 0.01


def _acked(controller: zmq.Socket, seq: int, timeout_s: float = 5.0) -> bool:
    """True once a state acknowledges ``seq``; False on the bridge's ``watchdog_latched`` error."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if controller.poll(50):
            message = msgpack.unpackb(controller.recv(), raw=False)
            if message["type"] == "state" and message.get("ack_seq") == seq:
                return True
            if message["type"] == "error" and message.get("reason") == "watchdog_latched":
                return False
    raise AssertionError(f"no state acknowledging seq {seq} within {timeout_s} s")


def _extreme_streams(running: RunningBridge, robot: Any, signs: tuple[float, ...]) -> tuple[float, float]:
    """Five +-1e308 streams of 1 s each per sign (targets, velocity targets, torque, gains); the worst
    excursion past a soft limit (rad) while they ran, at all and standing."""
    controller = dealer(running.endpoint)
    controller.send(protocol.hello_message("test", list(robot.joint_names)))
    session = recv_until(controller, "welcome")["session"]
    n = len(robot.joint_names)
    huge = np.full(n, HUGE)
    streams = [
        stream
        for sign in signs
        for stream in (
            {"dq_target": sign * huge, "kd": np.full(n, 50.0)},
            {"q_target": sign * huge},
            {"tau_ff": sign * huge},
            {
                "q_target": sign * huge,
                "dq_target": sign * huge,
                "tau_ff": sign * huge,
                "kp": huge,
                "kd": huge,
            },
            {
                "q_target": -sign * huge,
                "dq_target": -sign * huge,
                "tau_ff": -sign * huge,
                "kp": huge,
                "kd": huge,
            },
        )
    ]
    seq = latched = 0
    for stream in streams:
        start = running.server.status()["ticks"]
        while running.server.status()["ticks"] < start + 500:  # 1 s of robot time per stream, at 50 Hz
            seq += 1
            _hold(controller, seq, session, robot, **stream)
            if not _acked(controller, seq):  # a starved machine let the watchdog latch: resume
                controller.send(protocol.hello_message("test", list(robot.joint_names)))
                session = recv_until(controller, "welcome")["session"]
                latched += 1
            time.sleep(0.02)  # 50 Hz of wall time, as a controller sends, whatever the ticks cost
    excursions = running.robot.worst_excursion, running.robot.worst_upright_excursion
    controller.close()
    rejected = running.server.status()["rejected"]
    # All accepted but those the watchdog latched out: the safety bounded them.
    assert set(rejected) <= {"watchdog_latched"} and rejected.get("watchdog_latched", 0) == latched
    return excursions


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_extreme_commands_keep_every_joint_within_its_soft_limits(served: RunningBridge, sign: float) -> None:
    worst, _ = _extreme_streams(served, PANDA, (sign,))
    assert worst <= 0.05, worst


def test_extreme_commands_on_the_g1_keep_its_joints_within_their_soft_limits() -> None:
    """Issue 18's bound: every joint within its soft limit + 0.05 rad, standing or fallen. Measured
    0.037-0.045 rad (an ankle or the waist pitch its own weight presses on its stop) in six runs beside
    a training run. What it took: a soft limit stands at most ``max_soft_margin`` (0.035 rad) inside the
    joint's stop, since the robot's weight presses a limb (a fallen G1's wrist, 5 N m) onto its stop
    whatever the motor does, and the sim's stops are stiff (``STOP_TIMECONST_STEPS``): with MuJoCo's
    default 20 ms the weight pushed a fallen G1's waist roll 0.1 rad through its stop."""
    running = RunningBridge(WatchedRobot(SimRobot("g1")))
    running.thread.start()
    try:
        running.wait_for(lambda s: s["ticks"] > 0, 30.0, "the first tick")
        worst, standing = _extreme_streams(running, G1, (1.0, -1.0))
    finally:
        running.stop.set()
        running.thread.join(timeout=10)
    joint = running.robot.worst_joint
    print(f"G1 past its soft limits: standing {standing:.3f} rad, at all {worst:.3f} rad ({joint})")
    assert worst <= 0.05, (worst, joint)


def test_the_bridge_keeps_control_under_floods_of_frames_and_messages() -> None:
    figures = bench_bridge_attacks("panda", command_s=1.0, settle_s=0.5)
    for kind in ATTACKS:
        result = figures[kind]
        assert result["acked_commands"] > 0, (kind, result)  # the controller kept getting through
        assert result["watchdog_ms"] is not None and result["watchdog_ms"] < 1000.0, (kind, result)
        assert result["rss_growth_mb"] < 50.0, (kind, result)
    assert figures["million_frames"]["dropped"] == {"too_many_frames": 1}
    assert figures["garbage"]["dropped"].get("peer_over_message_rate", 0) > 0
