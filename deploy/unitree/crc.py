"""The G1 LowCmd checksum: the vendor's struct packing and its CRC32 over 32-bit words.

The robot drops every LowCmd whose ``crc`` field is wrong, so this must reproduce the vendor's
``crc32_core`` bit for bit. That routine (init 0xFFFFFFFF, polynomial 0x04C11DB7, MSB first, no
final xor) over little-endian words equals CRC-32/MPEG-2 over the same words written big-endian,
which in turn is the reflected zlib CRC-32 over bit-reversed bytes, bit-reversed back and with
zlib's final xor undone: that puts the 8,000-bit loop in C (a few microseconds per message).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from striata.deploy.unitree.hg_idl import NUM_MOTOR_SLOTS, LowCmd_

# The C struct the vendor hashes (4-byte aligned, little-endian, 1004 bytes): mode_pr, mode_machine,
# 2 pad; per motor mode, 3 pad, q, dq, tau, kp, kd (float32), reserve (uint32); reserve[4], crc.
LOWCMD_STRUCT = struct.Struct("<2B2x" + "B3x5fI" * NUM_MOTOR_SLOTS + "5I")
_HASHED_BYTES = LOWCMD_STRUCT.size - 4  # everything but the crc word

_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def pack_lowcmd(cmd: LowCmd_) -> bytes:
    """The 1004-byte C layout of a LowCmd, as the vendor packs it for the checksum."""
    values: list[float | int] = [cmd.mode_pr, cmd.mode_machine]
    for motor in cmd.motor_cmd:
        values += (motor.mode, motor.q, motor.dq, motor.tau, motor.kp, motor.kd, motor.reserve)
    values += cmd.reserve
    values.append(cmd.crc)
    return LOWCMD_STRUCT.pack(*values)


def crc32_words(data: bytes) -> int:
    """The vendor's crc32_core over ``data`` read as little-endian uint32 words (len % 4 == 0)."""
    if len(data) % 4:
        raise ValueError(f"crc32_words needs whole 32-bit words, got {len(data)} bytes")
    big_endian = np.frombuffer(data, dtype="<u4").astype(">u4").tobytes()
    reflected = zlib.crc32(big_endian.translate(_BIT_REVERSED)) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def lowcmd_crc(cmd: LowCmd_) -> int:
    """The crc value a LowCmd must carry: over all of its packed words except the crc itself."""
    return crc32_words(pack_lowcmd(cmd)[:_HASHED_BYTES])


def crc_is_valid(cmd: LowCmd_) -> bool:
    return lowcmd_crc(cmd) == cmd.crc
