"""Both sides of the bridge protocol for tests: a bridge served from a thread of the test process
(``RunningBridge``), and a controller played by hand (``dealer``, ``recv_until``), possibly a hostile one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import numpy as np
import zmq

from striata.deploy import protocol
from striata.deploy.bench import free_port
from striata.deploy.bridge_server import BridgeServer
from striata.deploy.safety import SafetyConfig

# The controller's phases through a whole scripted run, as its summary lists them.
FULL_RUN_PHASES = ["zero_torque", "interpolate", "hold", "policy", "damping"]


class RunningBridge:
    """``robot`` (any RobotBackend) behind a bridge server on a free loopback port; ``thread`` serves it."""

    def __init__(self, robot: Any, on_phase: Callable[[str], None] | None = None) -> None:
        self.robot = robot
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.server = BridgeServer(robot, self.endpoint, SafetyConfig(), on_phase=on_phase)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.server.serve, kwargs={"stop": self.stop}, daemon=True)

    def wait_for(self, predicate: Callable[[dict], bool], timeout_s: float, what: str) -> dict:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            status = self.server.status()
            if predicate(status):
                return status
            time.sleep(0.002)
        raise AssertionError(f"timed out waiting for {what}: {self.server.status()}")

    def ticks_pass(self, n: int) -> dict:
        start = self.server.status()["ticks"]
        return self.wait_for(lambda s: s["ticks"] >= start + n, 30.0, f"{n} ticks")


def dealer(endpoint: str, routing_id: bytes | None = None) -> zmq.Socket:
    """A DEALER connected to ``endpoint``, with a routing id of our choosing if given."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(endpoint)
    return sock


def recv_until(sock: zmq.Socket, kind: str, timeout_s: float = 5.0, ack: int | None = None) -> dict:
    """The first message of type ``kind`` (and ``ack_seq`` ``ack``) within ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if sock.poll(50):
            message = msgpack.unpackb(sock.recv(), raw=False)
            if message["type"] == kind and (ack is None or message.get("ack_seq") == ack):
                return message
    raise AssertionError(f"no {kind!r} message within {timeout_s} s")


@contextmanager
def arm_bridge(port: str, *options: str) -> Iterator[tuple[zmq.Socket, dict]]:
    """`striata bridge arm --port PORT` on a free loopback port, and a DEALER that has its welcome.

    On leaving, the bridge is stopped and must have exited 0 with its statistics printed."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bridge = subprocess.Popen(
        [sys.executable, "-m", "striata", "bridge", "arm", "--port", port, "--endpoint", endpoint, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sock = dealer(endpoint)
    try:
        sock.send(protocol.hello_message("test", []))
        welcome = None
        deadline = time.monotonic() + 60.0  # a cold `python -m striata` start on a loaded machine
        while welcome is None and time.monotonic() < deadline and bridge.poll() is None:
            if sock.poll(200):
                message = msgpack.unpackb(sock.recv())
                if message.get("type") == "welcome":
                    welcome = message
        assert welcome is not None, "no welcome from the bridge"
        yield sock, welcome
    finally:
        sock.close()
        bridge.terminate()
        out, err = bridge.communicate(timeout=30)
    assert bridge.returncode == 0, err
    assert '"accepted"' in out


def send_hold(sock: zmq.Socket, seq: int, session: int, target: np.ndarray) -> None:
    """A ``hold`` command to ``target`` with stiff gains (kp 20, kd 1), no velocity or torque."""
    n = len(target)
    sock.send(
        protocol.command_message(
            seq, session, "hold", target, np.zeros(n), np.full(n, 20.0), np.ones(n), np.zeros(n)
        )
    )
