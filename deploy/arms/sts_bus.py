"""A Feetech STS servo bus served on a pseudo-terminal: the servo side of the serial protocol.

``StsBus`` opens a pty (raw mode) and answers the instruction packets the vendor SDK sends
(ping, read, write, sync read, sync write; ``0xFF 0xFF id length instruction params checksum``)
from one 256-byte register table per servo id, so ``scservo_sdk`` and pyserial run unchanged
against it. What a write does beyond storing the bytes (a servo moving) is a subclass's
``written`` hook: the SO-101 twin (``twin.py``) and the adapter tests build on it.
"""

from __future__ import annotations

import os
import select
import threading
import tty

PING, READ, WRITE, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
REGISTERS = 256


def checksum(body: bytes) -> int:
    return ~sum(body) & 0xFF


class StsBus:
    """Servos ``ids`` behind a pty at ``path``; packets are handled in a thread under ``lock``.

    ``lock`` also guards ``tables``: hold it to change registers from another thread, so a status
    packet never carries half of an update.
    """

    def __init__(self, ids: list[int]) -> None:
        bad = [i for i in ids if not 0 <= i <= 252]
        if bad:
            raise ValueError(f"servo ids {bad}: an STS bus id is 0..252")
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.tables = {i: bytearray(REGISTERS) for i in ids}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sts-bus", daemon=True)
        self._thread.start()

    def register(self, servo: int, address: int, size: int = 2) -> int:
        """An unsigned little-endian register as the servo holds it."""
        return int.from_bytes(self.tables[servo][address : address + size], "little")

    def set_register(self, servo: int, address: int, value: int, size: int = 2) -> None:
        self.tables[servo][address : address + size] = value.to_bytes(size, "little")

    def written(self, servo: int, address: int, length: int) -> None:
        """Called (under ``lock``) after a write or sync write stored ``length`` bytes at ``address``."""

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        os.close(self.master)
        os.close(self._slave)

    def _reply(self, servo: int, params: bytes = b"") -> None:
        body = bytes([servo, len(params) + 2, 0]) + params
        os.write(self.master, b"\xff\xff" + body + bytes([checksum(body)]))

    def _write(self, servo: int, address: int, data: bytes) -> None:
        self.tables[servo][address : address + len(data)] = data
        self.written(servo, address, len(data))

    def _handle(self, servo: int, instruction: int, params: bytes) -> None:
        if instruction == PING and servo in self.tables:
            self._reply(servo)
        elif instruction == READ and servo in self.tables:
            address, length = params
            self._reply(servo, bytes(self.tables[servo][address : address + length]))
        elif instruction == WRITE and servo in self.tables:
            self._write(servo, params[0], params[1:])
            self._reply(servo)
        elif instruction == SYNC_READ:
            address, length = params[0], params[1]
            for target in params[2:]:
                if target in self.tables:
                    self._reply(target, bytes(self.tables[target][address : address + length]))
        elif instruction == SYNC_WRITE:  # no status packets: a broadcast
            address, length = params[0], params[1]
            for k in range(2, len(params), length + 1):
                if params[k] in self.tables:
                    self._write(params[k], address, params[k + 1 : k + 1 + length])

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.02)[0]:
                continue
            try:
                buffer += os.read(self.master, 4096)
            except OSError:
                return
            while True:
                start = buffer.find(b"\xff\xff")
                if start < 0 or len(buffer) < start + 4:
                    break
                buffer = buffer[start:]
                total = 4 + buffer[3]
                if len(buffer) < total:
                    break
                packet, buffer = buffer[:total], buffer[total:]
                if packet[-1] == checksum(packet[2:-1]):
                    with self.lock:
                        self._handle(packet[2], packet[4], packet[5:-1])
