"""A 3Dconnexion SpaceMouse on the console's machine, read through hidapi, as teleop actions.

No device (or no hidapi) means the feature is off, without an error. With one, a thread reads its HID
reports: report 1 holds translation (and, on the newer wireless/compact models, rotation too),
report 2 rotation, report 3 the buttons. Raw axes are about +-350.

Actions, in the frame of a person facing the robot: push forward -> +a[0], push left -> +a[1], lift
-> +a[2] (the end-effector deltas of the panda tasks); the left button closes the gripper and the
right one opens it (the last action component, latched). Further components stay 0.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

VENDOR_3DCONNEXION = 0x256F
VENDOR_LOGITECH = 0x046D
# 3Dconnexion devices sold under Logitech's vendor id; other Logitech HID devices are not ours.
LOGITECH_PRODUCTS = frozenset(
    {0xC603, 0xC605, 0xC606, 0xC621, 0xC623, 0xC625, 0xC626, 0xC627, 0xC628, 0xC629, 0xC62B}
)
FULL_SCALE = 350.0
DEADZONE = 0.05
# The device counts as in use for this long after the last motion or button press.
ACTIVE_S = 0.5


def is_spacemouse(info: dict[str, Any]) -> bool:
    vendor, product = info.get("vendor_id"), info.get("product_id")
    return vendor == VENDOR_3DCONNEXION or (vendor == VENDOR_LOGITECH and product in LOGITECH_PRODUCTS)


@dataclass
class SpaceMouseState:
    """Latest axes (x, y, z, rx, ry, rz in [-1, 1]), button bits and latched gripper command."""

    axes: list[float] = field(default_factory=lambda: [0.0] * 6)
    buttons: int = 0
    gripper: float = -1.0
    last_input: float = 0.0

    def decode(self, report: list[int], now: float) -> None:
        """Apply one HID report (first byte: report id)."""
        if not report:
            return
        kind, data = report[0], bytes(report[1:])
        if kind in (1, 2) and len(data) >= 6:
            count = 6 if kind == 1 and len(data) >= 12 else 3
            values = [int.from_bytes(data[2 * i : 2 * i + 2], "little", signed=True) for i in range(count)]
            offset = 0 if kind == 1 else 3
            for i, raw in enumerate(values):
                self.axes[offset + i] = max(-1.0, min(1.0, raw / FULL_SCALE))
        elif kind == 3 and data:
            self.buttons = int.from_bytes(data[:4], "little")
            if self.buttons & 1:
                self.gripper = 1.0
            elif self.buttons & 2:
                self.gripper = -1.0
        else:
            return
        if self.buttons or any(abs(a) > DEADZONE for a in self.axes):
            self.last_input = now

    def action(self, action_dim: int) -> list[float]:
        def axis(value: float) -> float:
            return 0.0 if abs(value) < DEADZONE else value

        x, y, z = (axis(a) for a in self.axes[:3])
        motion = [-y, -x, -z]
        action = [0.0] * action_dim
        for i in range(min(3, action_dim)):
            action[i] = motion[i]
        if action_dim >= 4:
            action[-1] = self.gripper
        return action


class SpaceMouse:
    """The first SpaceMouse found, read in a daemon thread. ``open()`` returns None without one."""

    def __init__(self, device: Any, name: str) -> None:
        self.device = device
        self.name = name
        self.state = SpaceMouseState()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="spacemouse", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls) -> SpaceMouse | None:
        try:
            import hid
        except ImportError:
            return None
        for info in hid.enumerate():
            if not is_spacemouse(info):
                continue
            device = hid.device()
            try:
                device.open_path(info["path"])
            except OSError:
                continue  # no permission on this node (udev rule missing): try the next one
            return cls(device, info.get("product_string") or "SpaceMouse")
        return None

    def active(self) -> bool:
        with self._lock:
            return time.monotonic() - self.state.last_input < ACTIVE_S

    def action(self, action_dim: int) -> list[float]:
        with self._lock:
            return self.state.action(action_dim)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.device.read(64, timeout_ms=100)
            except OSError:
                return  # unplugged: the console goes on without it
            if report:
                with self._lock:
                    self.state.decode(report, time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        with contextlib.suppress(OSError):
            self.device.close()
