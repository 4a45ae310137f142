"""`striata bench deploy`: the G1 tracking policy on the MuJoCo sim bridge, timed end to end.

The sim bridge runs in its own process (as on a robot); the controller runs here through the
whole state machine and spends the measured window in the policy phase at the policy's rate.
Figures: ONNX inference latency (one observation, 1 intra-op thread, sequential), control period
error |measured period - control_dt|, the bridge round trip (command sent -> its ack state
received) beside its floor on this machine (the same message echoed by a process that does nothing
else, ``zmq_floor_rtt_ms``), and the age of the state each policy step acts on (sent by the bridge ->
the step). The controller asks for SCHED_FIFO, as it would on a robot's computer; the bridge, as on a
robot whose low-level loop has a core of its own, polls its socket between ticks (``spin``) so an
idle CPU's wake-up is not in the round trip (``bridge_spin=False``: it sleeps, with SCHED_FIFO
instead, since the kernel throttles a real-time thread that never sleeps). With two CPUs or more the
bridge runs on the first and the controller on the second (``pin``, the default; ``cpus`` in the
figures), as on a robot's computer where each loop has a core kept for it. The floor is measured the
same way: the sender asks for SCHED_FIFO, the echo polls.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import socket
import time
from pathlib import Path
from typing import Any

import zmq

from striata.deploy.client import BridgeUnavailableError
from striata.deploy.controller import Controller, ControllerConfig, percentiles
from striata.deploy.realtime import LoopPlacement

BENCH_WARMUP_S = 3.5  # zero torque 0.5 s, interpolate 2 s, hold 1 s before the policy starts
# The floor under the bridge's round trip: this many echoes of a command-sized message, one a policy step.
ECHO_ROUND_TRIPS = 300
ECHO_PERIOD_S = 0.02
ECHO_MESSAGE_BYTES = 700


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_sim_bridge(
    endpoint: str, duration_s: float, robot: str = "g1", spin: bool = False, cpus: list[int] | None = None
) -> None:
    """Target of the bridge process: a sim robot behind a bridge server for ``duration_s``."""
    from striata.deploy.bridge_server import BridgeServer
    from striata.deploy.safety import SafetyConfig
    from striata.deploy.sim_robot import SimRobot

    sim = SimRobot(robot)
    server = BridgeServer(
        sim,
        endpoint,
        SafetyConfig(),
        robot_name=f"sim-{robot}",
        on_phase=sim.on_controller_phase,
        realtime=not spin,
        spin=spin,
        cpus=cpus,
    )
    try:
        server.serve(duration_s=duration_s)
    finally:
        sim.close()


def run_echo(endpoint: str, duration_s: float) -> None:
    """Target of the echo process: a ROUTER that sends every message straight back, polling its socket
    as the spinning bridge does."""
    from striata.deploy.zmq_wait import poll_readable

    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    end = time.monotonic() + duration_s
    try:
        while poll_readable(sock, end - time.monotonic()):
            sock.send_multipart(sock.recv_multipart())
    finally:
        sock.close(linger=0)
        context.term()


def zmq_floor_rtt(round_trips: int = ECHO_ROUND_TRIPS, period_s: float = ECHO_PERIOD_S) -> list[float]:
    """Round trips (s) of a command-sized message to an echo process over loopback TCP, one per
    ``period_s`` as the controller sends: what this machine's scheduler and ZMQ cost before any bridge
    work, the floor under the bridge's round trip."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    echo = multiprocessing.get_context("spawn").Process(
        target=run_echo, args=(endpoint, 30.0 + round_trips * period_s), daemon=True
    )
    echo.start()
    placement = LoopPlacement(realtime=True)
    placement.enter()  # before the context: its I/O thread inherits the scheduling, as the controller's
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    message = bytes(ECHO_MESSAGE_BYTES)
    rtts = []
    try:
        sock.send(message)  # the first answer says the echo process is up
        if not sock.poll(30_000):
            raise TimeoutError("the echo process did not answer within 30 s")
        sock.recv()
        for _ in range(round_trips):
            time.sleep(period_s)
            began = time.perf_counter()
            sock.send(message)
            if not sock.poll(1000):
                raise TimeoutError("the echo process stopped answering")
            sock.recv()
            rtts.append(time.perf_counter() - began)
    finally:
        sock.close(linger=0)
        context.term()
        placement.leave()
        echo.terminate()
        echo.join(timeout=5)
    return rtts


def bench_cpus(pin: bool) -> dict[str, list[int]] | None:
    """With ``pin`` and two CPUs or more to run on: the bridge on the first, the controller on the second,
    as on a robot's computer where each loop has a core kept for it; else None (the OS places both)."""
    allowed = sorted(os.sched_getaffinity(0))
    if not pin or len(allowed) < 2:
        return None
    return {"bridge": [allowed[0]], "controller": [allowed[1]]}


def bench_deploy(
    policy: Path, seconds: float, prime_cache_s: float = 0.001, bridge_spin: bool = True, pin: bool = True
) -> dict[str, Any]:
    """Run the policy for ``seconds`` in the policy phase; return the latency figures."""
    if not Path(policy).is_file():
        raise FileNotFoundError(f"policy file {policy} does not exist (export one with `striata export`)")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    total = BENCH_WARMUP_S + seconds
    cpus = bench_cpus(pin)
    bridge = multiprocessing.get_context("spawn").Process(
        target=run_sim_bridge,
        args=(endpoint, total + 30.0, "g1", bridge_spin, None if cpus is None else cpus["bridge"]),
        daemon=True,
    )
    bridge.start()
    try:
        config = ControllerConfig(
            policy=policy,
            robot=endpoint,
            keys=False,
            realtime=True,
            prime_cache_s=prime_cache_s,
            interpolate_s=2.0,
            sequence=f"interpolate@0.5,policy@{BENCH_WARMUP_S},quit@{total}",
            cpus=None if cpus is None else cpus["controller"],
        )
        controller = Controller(config, log=io.StringIO())
        _connect_with_retry(controller, timeout_s=60.0)
        summary = controller.run()
    finally:
        bridge.terminate()
        bridge.join(timeout=5)
    # Only the policy phase counts: the steps before it include the bridge process warming up.
    figures = controller.figures(policy_phase_only=True)
    floor = percentiles(zmq_floor_rtt(), 1e3)
    return {
        "onnx_latency_us": figures["onnx_latency_us"],
        "period_error_ms": figures["period_error_ms"],
        "bridge_rtt_ms": figures["bridge_rtt_ms"],
        "zmq_floor_rtt_ms": floor,
        "state_age_ms": figures["state_age_ms"],
        "policy_steps": figures["steps"],
        "seconds": seconds,
        "prime_cache_s": prime_cache_s,
        "bridge_spin": bridge_spin,
        "cpus": cpus,
        "overruns": summary["overruns"],
        "stop_reason": summary["stop_reason"],
    }


def _connect_with_retry(controller: Controller, timeout_s: float) -> None:
    """Say hello until the bridge process, still importing and building its model, answers."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            controller.connect()
            return
        except BridgeUnavailableError:
            if controller.client is not None:
                controller.client.close()
                controller.client = None
            if time.monotonic() > end:
                raise
