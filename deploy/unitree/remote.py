"""The G1's wireless remote as carried in LowState.wireless_remote (40 raw bytes).

Bytes 2-3 hold a little-endian uint16 of buttons, one bit each, in the order below (the vendor's
``xKeySwitchUnion``); bytes 4-23 hold the stick floats lx, rx, ry, L2 (analog), ly.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

# Bit i of the button word is BUTTON_BITS[i]; the names are striata.deploy.protocol.REMOTE_BUTTONS'.
BUTTON_BITS: tuple[str, ...] = (
    "R1", "L1", "start", "select", "R2", "L2", "F1", "F2", "A", "B", "X", "Y", "up", "right", "down", "left",
)  # fmt: skip
_BUTTONS = struct.Struct("<H")
REMOTE_BYTES = 40


def pressed_buttons(wireless_remote: bytes | Iterable[int]) -> tuple[str, ...]:
    """Names of the buttons held down in a LowState's wireless_remote."""
    (word,) = _BUTTONS.unpack_from(bytes(wireless_remote), 2)
    return tuple(name for bit, name in enumerate(BUTTON_BITS) if word >> bit & 1)


def encode_buttons(buttons: Iterable[str]) -> bytes:
    """A 40-byte wireless_remote with ``buttons`` held down and the sticks centred."""
    word = 0
    for name in buttons:
        word |= 1 << BUTTON_BITS.index(name)
    raw = bytearray(REMOTE_BYTES)
    _BUTTONS.pack_into(raw, 2, word)
    return bytes(raw)
