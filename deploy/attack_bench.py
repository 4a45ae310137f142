"""`striata bench bridge-attacks`: what a hostile peer on the bridge's port does to its control loop.

A sim bridge serves a controller that holds the robot's pose at 50 Hz, in this process (so its RSS is
the bridge's plus a small controller). For each attack, a separate process that can reach the port
sends one of: one message of 1,000,000 one-byte frames, one message of 300 x 1 MB frames, or 10,000
garbage messages. During the attack the controller keeps commanding for ``command_s`` and then stops;
the figures per scenario, beside a quiet baseline measured the same way in the same run:

- ``max_tick_gap_ms``: the longest time between two low-level ticks while the scenario ran;
- ``watchdog_ms``: from the last accepted command to the bridge's switch to damping;
- ``acked_commands``: commands the controller saw acknowledged during the attack;
- ``rss_growth_mb``: resident memory after the scenario minus before it (and the peak growth);
- ``dropped`` / ``rejected``: what the bridge's transport dropped and its protocol rejected.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
from typing import Any

import numpy as np
import psutil
import zmq

from striata.common.floods import FLOODS
from striata.deploy import protocol
from striata.deploy.bench import free_port

ATTACKS = ("baseline", *FLOODS)


def attack(kind: str, endpoint: str) -> None:
    """Target of the attacker process: send one attack to ``endpoint`` and linger until it is sent."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 10_000)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(endpoint)
    FLOODS[kind](sock)
    sock.close()
    context.term()


class _Controller:
    """Holds the robot's default pose at 50 Hz while ``commanding`` is set, saying hello again each time it
    is set (a fired watchdog needs one); counts acknowledged commands. Its thread alone uses the socket."""

    def __init__(self, endpoint: str, joint_names: list[str], target: np.ndarray, kp, kd) -> None:
        from striata.deploy.client import BridgeClient

        self.client = BridgeClient(endpoint)
        self.joint_names = joint_names
        self.target, self.kp, self.kd = target, kp, kd
        self.commanding = threading.Event()
        self.done = threading.Event()
        self.acked = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        zeros = np.zeros_like(self.target)
        next_at = time.monotonic()
        was_commanding = False
        while not self.done.is_set():
            commanding = self.commanding.is_set()
            if commanding and not was_commanding:
                self.client.hello(self.joint_names, timeout_s=30.0)
                next_at = time.monotonic()
            was_commanding = commanding
            if commanding:
                self.client.send_command(
                    "hold", q_target=self.target, dq_target=zeros, kp=self.kp, kd=self.kd, tau_ff=zeros
                )
            before = len(self.client.rtt_s)
            next_at += 0.02
            self.client.receive(max(0.0, next_at - time.monotonic()))
            self.acked += len(self.client.rtt_s) - before

    def close(self) -> None:
        self.done.set()
        self._thread.join(timeout=5)
        self.client.close()


def bench_bridge_attacks(
    robot: str = "panda", command_s: float = 1.5, settle_s: float = 1.0
) -> dict[str, Any]:
    """Every scenario of ``ATTACKS`` against one sim bridge; returns the figures per scenario."""
    from striata.deploy.bridge_server import BridgeServer
    from striata.deploy.safety import SafetyConfig
    from striata.deploy.sim_robot import SimRobot
    from striata.envs.robots.g1 import G1
    from striata.envs.robots.panda import PANDA

    config = {"panda": PANDA, "g1": G1}[robot]
    sim = SimRobot(robot)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = BridgeServer(
        sim, endpoint, SafetyConfig(), robot_name=f"sim-{robot}", on_phase=sim.on_controller_phase
    )
    stop = threading.Event()
    serving = threading.Thread(target=server.serve, kwargs={"stop": stop}, daemon=True)
    serving.start()
    kp, kd = config.standby_kp_kd
    controller = _Controller(endpoint, list(config.joint_names), config.default_pos, kp, kd)
    spawn = multiprocessing.get_context("spawn")
    process = psutil.Process()
    results: dict[str, Any] = {}
    try:
        for kind in ATTACKS:
            controller.commanding.set()
            time.sleep(settle_s)  # the pose is held and the loop is in its steady state
            gc.collect()
            rss_before = process.memory_info().rss
            rejected_before = server.status()["rejected_total"]
            dropped_before = dict(server.stats.dropped)
            acked_before = controller.acked
            server.stats.max_tick_gap_s = 0.0
            attacker = None
            if kind != "baseline":
                attacker = spawn.Process(target=attack, args=(kind, endpoint), daemon=True)
                attacker.start()
            peak = rss_before
            end = time.monotonic() + command_s
            while time.monotonic() < end:
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.01)
            controller.commanding.clear()
            watchdog_ms = None
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                status = server.status()
                if status["watchdog_fired"]:
                    watchdog_ms = round((status["mode_since"] - status["last_command_at"]) * 1e3, 2)
                    break
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.005)
            if attacker is not None:
                attacker.join(timeout=60)
                # Until what the attack sent is read and dropped (libzmq hands over a message only whole).
                deadline = time.monotonic() + 60.0
                while time.monotonic() < deadline:
                    status = server.status()
                    if kind == "big_frames" or (
                        not status["reading_message"]
                        and sum(status["dropped"].values()) > sum(dropped_before.values())
                    ):
                        break
                    time.sleep(0.05)
            time.sleep(settle_s)
            gc.collect()
            rss_after = process.memory_info().rss
            status = server.status()
            dropped = {k: v - dropped_before.get(k, 0) for k, v in status["dropped"].items()}
            results[kind] = {
                "max_tick_gap_ms": round(server.stats.max_tick_gap_s * 1e3, 3),
                "watchdog_ms": watchdog_ms,
                "acked_commands": controller.acked - acked_before,
                "rss_growth_mb": round((rss_after - rss_before) / 1e6, 1),
                "rss_peak_growth_mb": round((peak - rss_before) / 1e6, 1),
                "dropped": {k: v for k, v in dropped.items() if v},
                "rejected": status["rejected_total"] - rejected_before,
            }
    finally:
        controller.close()
        stop.set()
        serving.join(timeout=10)
        sim.close()
    baseline = results["baseline"]
    results["tick_gap_growth_ms"] = {
        k: round(results[k]["max_tick_gap_ms"] - baseline["max_tick_gap_ms"], 3) for k in ATTACKS[1:]
    }
    results["setup"] = {
        "robot": robot,
        "control_period_s": sim.control_period_s,
        "command_s": command_s,
        "watchdog_s": SafetyConfig().watchdog_s,
        "protocol_version": protocol.PROTOCOL_VERSION,
    }
    return results
