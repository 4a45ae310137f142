"""Both sides of the bridge protocol for tests: a bridge served from a thread of the test process
(``RunningBridge``), and a controller played by hand (``dealer``, ``recv_until``), possibly a hostile one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

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
