"""Waiting on a ZMQ socket with sub-millisecond timeouts.

``zmq_poll`` counts whole milliseconds, too coarse for a 2 ms tick; instead, wait on the socket's
``ZMQ_FD`` with ``select`` (microsecond timeouts). That descriptor is edge-triggered and only says
"the socket's state changed", so ``ZMQ_EVENTS`` is checked before and after each wait, and readers
must drain every queued message (until ``zmq.Again``) once it reports input.
"""

from __future__ import annotations

import select
import time

import zmq


def wait_readable(sock: zmq.Socket, timeout_s: float) -> bool:
    """True as soon as ``sock`` has a message to read; False once ``timeout_s`` has passed."""
    end = time.monotonic() + max(0.0, timeout_s)
    fd = sock.getsockopt(zmq.FD)
    while True:
        if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        select.select([fd], [], [], left)
