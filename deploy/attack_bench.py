"""`striata bench bridge-attacks`: what a hostile peer on the bridge's port does to its control loop.

A sim bridge, in this process (so its RSS is the bridge's), serves a controller process that holds the
robot's pose at 50 Hz; with ``realtime`` (the default) the bridge's loop runs SCHED_FIFO where allowed.
For each attack, a separate process that can reach the port sends one of: one message of 1,000,000
one-byte frames, one message of 300 x 1 MB frames, or 10,000 garbage messages. During the attack the
controller keeps commanding for ``command_s`` and then stops; the figures per scenario, beside a quiet
baseline measured the same way in the same run:

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


def hold_pose(robot: str, endpoint: str, commanding: Any, done: Any, acked: Any) -> None:
    """Target of the controller process: hold the robot's default pose at 50 Hz while ``commanding`` is
    set, saying hello again each time it is set (a fired watchdog needs one); count acknowledged
    commands in ``acked``. A process of its own, as a controller is: in the bridge's process its thread
    would share the interpreter lock with the bridge's loop."""
    from striata.deploy.client import BridgeClient
    from striata.envs.robots.g1 import G1
    from striata.envs.robots.panda import PANDA

    config = {"panda": PANDA, "g1": G1}[robot]
    kp, kd = config.standby_kp_kd
    target = np.asarray(config.default_pos, dtype=np.float64)
    zeros = np.zeros_like(target)
    client = BridgeClient(endpoint)
    next_at = time.monotonic()
    was_commanding = False
    try:
        while not done.is_set():
            is_commanding = commanding.is_set()
            if is_commanding and not was_commanding:
                client.hello(list(config.joint_names), timeout_s=30.0)
                next_at = time.monotonic()
            was_commanding = is_commanding
            if is_commanding:
                client.send_command("hold", q_target=target, dq_target=zeros, kp=kp, kd=kd, tau_ff=zeros)
            before = len(client.rtt_s)
            next_at += 0.02
            client.receive(max(0.0, next_at - time.monotonic()))
            with acked.get_lock():
                acked.value += len(client.rtt_s) - before
    finally:
        client.close()


def bench_bridge_attacks(
    robot: str = "panda", command_s: float = 1.5, settle_s: float = 1.0, realtime: bool = True
) -> dict[str, Any]:
    """Every scenario of ``ATTACKS`` against one sim bridge; returns the figures per scenario. With
    ``realtime`` the bridge's loop asks for SCHED_FIFO, as `striata bridge --realtime` on a robot (what
    it got is in ``setup``): an attacker on the same machine competes for its CPUs."""
    from striata.deploy.bridge_server import BridgeServer
    from striata.deploy.safety import SafetyConfig
    from striata.deploy.sim_robot import SimRobot

    sim = SimRobot(robot)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = BridgeServer(
        sim,
        endpoint,
        SafetyConfig(),
        robot_name=f"sim-{robot}",
        on_phase=sim.on_controller_phase,
        realtime=realtime,
    )
    stop = threading.Event()
    serving = threading.Thread(target=server.serve, kwargs={"stop": stop}, daemon=True)
    serving.start()
    spawn = multiprocessing.get_context("spawn")
    commanding, done, acked = spawn.Event(), spawn.Event(), spawn.Value("q", 0)
    controller = spawn.Process(target=hold_pose, args=(robot, endpoint, commanding, done, acked), daemon=True)
    controller.start()
    process = psutil.Process()
    results: dict[str, Any] = {}
    try:
        commanding.set()
        started = time.monotonic()
        while acked.value == 0:  # the controller process is still importing, or saying hello
            if time.monotonic() - started > 60.0 or not controller.is_alive():
                raise RuntimeError("the bench's controller got no command acknowledged within 60 s")
            time.sleep(0.05)
        for kind in ATTACKS:
            commanding.set()
            time.sleep(settle_s)  # the pose is held and the loop is in its steady state
            gc.collect()
            rss_before = process.memory_info().rss
            rejected_before = server.status()["rejected_total"]
            dropped_before = dict(server.stats.dropped)
            acked_before = acked.value
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
            commanding.clear()
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
                "acked_commands": acked.value - acked_before,
                "rss_growth_mb": round((rss_after - rss_before) / 1e6, 1),
                "rss_peak_growth_mb": round((peak - rss_before) / 1e6, 1),
                "dropped": {k: v for k, v in dropped.items() if v},
                "rejected": status["rejected_total"] - rejected_before,
            }
    finally:
        done.set()
        controller.join(timeout=10)
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
        "bridge_priority": server.priority,
        "protocol_version": protocol.PROTOCOL_VERSION,
    }
    return results
