"""The reward request/response wire format (DESIGN.md "Reward request/response").

A request is a multipart ZMQ message: one msgpack header, then one frame per image. The header's
``images`` list describes the image frames in order (camera, role, encoding, shape). A reply is one
msgpack header. Every message carries ``v`` (the protocol version). Decoding never trusts the peer:
any wrong type, missing field, oversized or truncated image raises ``ProtocolError``, which the
server turns into a ``bad_request`` reply.

Request header::

    {"v": 1, "type": "score", "request_id": int, "actor_id": int, "episode_id": int, "t": int,
     "task": str, "mode": "progress", "deadline_ms": float,
     "images": [{"camera": "front", "role": "frame" | "reference", "encoding": "raw" | "jpeg",
                 "shape": [H, W, 3]}]}                     # shape only for raw

``{"v": 1, "type": "health"}`` and ``{"v": 1, "type": "metrics"}`` ask for the server's state.

Reply header::

    {"v": 1, "type": "score", "request_id", "actor_id", "episode_id", "t", "status", "progress",
     "delta", "done_prob", "uncertainty", "model_id", "revision", "cache_hit", "detail",
     "latency_ms": {"queue": float, "model": float, "total": float}}
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, get_args

import msgpack
import numpy as np
import xxhash
from PIL import Image

from reward_server.backend import Mode, ScoreInput, ScoreOutput

PROTOCOL_VERSION = 1
MODES: tuple[str, ...] = get_args(Mode)
ROLES = ("frame", "reference")
ENCODINGS = ("raw", "jpeg")
MAX_HEADER_BYTES = 64 * 1024


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text names the bad field."""


@dataclass(frozen=True)
class Limits:
    """What the server accepts, so that a huge or hostile message costs little."""

    max_images: int = 16
    max_side: int = 1024
    max_image_bytes: int = 8 * 1024 * 1024
    max_task_chars: int = 2048


@dataclass
class ScoreRequest:
    request_id: int
    actor_id: int
    episode_id: int
    t: int
    task: str
    mode: str
    deadline_ms: float
    frames: dict[str, np.ndarray]
    reference_frames: dict[str, np.ndarray] = field(default_factory=dict)
    frame_digest: str = ""

    def score_input(self) -> ScoreInput:
        return ScoreInput(
            task=self.task, mode=self.mode, frames=self.frames, reference_frames=self.reference_frames
        )  # type: ignore[arg-type]


def pack(header: dict[str, Any]) -> bytes:
    return msgpack.packb({"v": PROTOCOL_VERSION, **header}, use_bin_type=True)


def unpack_header(raw: bytes) -> dict[str, Any]:
    """The msgpack header of any message, with its version checked."""
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header: {len(raw)} bytes, more than {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ProtocolError(f"header: not msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header: expected a map, got {type(header).__name__}")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"v: expected protocol version {PROTOCOL_VERSION}, got {version!r}")
    return header


def encode_images(
    frames: dict[str, np.ndarray], reference_frames: dict[str, np.ndarray] | None, jpeg_quality: int | None
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Image descriptors for the header and the frames that follow it (raw, or JPEG when a quality is set)."""
    descriptors: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    for role, group in (("frame", frames), ("reference", reference_frames or {})):
        for camera, image in group.items():
            array = np.ascontiguousarray(image, dtype=np.uint8)
            if jpeg_quality is None:
                descriptors.append(
                    {"camera": camera, "role": role, "encoding": "raw", "shape": list(array.shape)}
                )
                payloads.append(array.tobytes())
            else:
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, format="JPEG", quality=jpeg_quality)
                descriptors.append({"camera": camera, "role": role, "encoding": "jpeg"})
                payloads.append(buffer.getvalue())
    return descriptors, payloads


def encode_request(
    *,
    request_id: int,
    actor_id: int,
    episode_id: int,
    t: int,
    task: str,
    mode: str,
    deadline_ms: float,
    frames: dict[str, np.ndarray],
    reference_frames: dict[str, np.ndarray] | None = None,
    jpeg_quality: int | None = None,
) -> list[bytes]:
    descriptors, payloads = encode_images(frames, reference_frames, jpeg_quality)
    header = pack(
        {
            "type": "score",
            "request_id": request_id,
            "actor_id": actor_id,
            "episode_id": episode_id,
            "t": t,
            "task": task,
            "mode": mode,
            "deadline_ms": deadline_ms,
            "images": descriptors,
        }
    )
    return [header, *payloads]


def _field(header: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in header:
        raise ProtocolError(f"{name}: missing")
    value = header[name]
    # bool is an int in Python; a flag where a number belongs is a client bug worth naming.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError(f"{name}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def decode_score_request(header: dict[str, Any], frames: list[bytes], limits: Limits) -> ScoreRequest:
    """Validate a score request and decode its images; raises ``ProtocolError`` naming the bad field."""
    request = ScoreRequest(
        request_id=_field(header, "request_id", int),
        actor_id=_field(header, "actor_id", int),
        episode_id=_field(header, "episode_id", int),
        t=_field(header, "t", int),
        task=_field(header, "task", str),
        mode=_field(header, "mode", str),
        deadline_ms=float(_field(header, "deadline_ms", (int, float))),
        frames={},
    )
    if request.mode not in MODES:
        raise ProtocolError(f"mode: unknown {request.mode!r}; allowed: {', '.join(MODES)}")
    if len(request.task) > limits.max_task_chars:
        raise ProtocolError(f"task: {len(request.task)} characters, more than {limits.max_task_chars}")
    if not math.isfinite(request.deadline_ms) or request.deadline_ms <= 0:
        raise ProtocolError(f"deadline_ms: must be a positive number, got {request.deadline_ms}")
    descriptors = _field(header, "images", list)
    if not descriptors:
        raise ProtocolError("images: at least one image is needed")
    if len(descriptors) > limits.max_images:
        raise ProtocolError(f"images: {len(descriptors)} images, more than {limits.max_images}")
    if len(descriptors) != len(frames):
        raise ProtocolError(
            f"images: header lists {len(descriptors)} images, message has {len(frames)} frames"
        )
    # xxh3: a cache key, not a signature, at ~1 us a frame where blake2b took ~20 (per request, on the
    # socket thread).
    digest = xxhash.xxh3_128()
    for index, (descriptor, payload) in enumerate(zip(descriptors, frames, strict=True)):
        image = _decode_image(descriptor, payload, limits, index)
        camera, role = descriptor["camera"], descriptor["role"]
        target = request.frames if role == "frame" else request.reference_frames
        if camera in target:
            raise ProtocolError(f"images[{index}].camera: {camera!r} appears twice as {role}")
        target[camera] = image
        digest.update(f"{role}:{camera}:{image.shape}".encode())
        digest.update(image.data)
    if not request.frames:
        raise ProtocolError("images: no image has role 'frame'")
    request.frame_digest = digest.hexdigest()
    return request


def _decode_image(descriptor: Any, payload: bytes, limits: Limits, index: int) -> np.ndarray:
    where = f"images[{index}]"
    if not isinstance(descriptor, dict):
        raise ProtocolError(f"{where}: expected a map, got {type(descriptor).__name__}")
    camera = _field(descriptor, "camera", str)
    if not camera or len(camera) > 64:
        raise ProtocolError(f"{where}.camera: must be 1 to 64 characters")
    role = _field(descriptor, "role", str)
    if role not in ROLES:
        raise ProtocolError(f"{where}.role: unknown {role!r}; allowed: {', '.join(ROLES)}")
    encoding = _field(descriptor, "encoding", str)
    if encoding not in ENCODINGS:
        raise ProtocolError(f"{where}.encoding: unknown {encoding!r}; allowed: {', '.join(ENCODINGS)}")
    if len(payload) > limits.max_image_bytes:
        raise ProtocolError(f"{where}: {len(payload)} bytes, more than {limits.max_image_bytes}")
    if encoding == "raw":
        return _decode_raw(descriptor, payload, limits, where)
    return _decode_jpeg(payload, limits, where)


def _decode_raw(descriptor: dict[str, Any], payload: bytes, limits: Limits, where: str) -> np.ndarray:
    shape = _field(descriptor, "shape", list)
    if (
        len(shape) != 3
        or shape[2] != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
    ):
        raise ProtocolError(f"{where}.shape: expected [H, W, 3] integers, got {shape!r}")
    height, width, _ = shape
    if not (0 < height <= limits.max_side and 0 < width <= limits.max_side):
        raise ProtocolError(f"{where}.shape: sides must be 1 to {limits.max_side}, got {shape}")
    if len(payload) != height * width * 3:
        raise ProtocolError(f"{where}: {len(payload)} bytes, shape {shape} needs {height * width * 3}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(height, width, 3)


def _decode_jpeg(payload: bytes, limits: Limits, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(payload), formats=["JPEG"]) as image:
            width, height = image.size  # read from the header, before any pixel is decoded
            if not (0 < height <= limits.max_side and 0 < width <= limits.max_side):
                raise ProtocolError(
                    f"{where}: JPEG is {width}x{height}, sides must be 1 to {limits.max_side}"
                )
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ProtocolError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise ProtocolError(f"{where}: not a decodable JPEG ({type(exc).__name__}: {exc})") from None
    return array


def score_reply(
    request: ScoreRequest | None,
    output: ScoreOutput,
    *,
    model_id: str,
    revision: str,
    cache_hit: bool,
    latency_ms: dict[str, float],
    request_id: Any = None,
) -> bytes:
    """The reply header; ``request`` is None when the request could not be decoded."""
    ids = (
        {"request_id": request.request_id, "actor_id": request.actor_id, "episode_id": request.episode_id,
         "t": request.t}
        if request is not None
        else {"request_id": request_id if isinstance(request_id, int) else None, "actor_id": None,
              "episode_id": None, "t": None}
    )  # fmt: skip
    return pack(
        {
            "type": "score",
            **ids,
            "status": output.status,
            "progress": output.progress,
            "delta": output.delta,
            "done_prob": output.done_prob,
            "uncertainty": output.uncertainty,
            "detail": output.detail,
            "model_id": model_id,
            "revision": revision,
            "cache_hit": cache_hit,
            "latency_ms": latency_ms,
        }
    )


def decode_reply(raw: bytes) -> dict[str, Any]:
    """A reply header as a dict; raises ``ProtocolError`` for anything else."""
    try:
        reply = msgpack.unpackb(raw, raw=False)
    except Exception:
        raise ProtocolError("reply: not msgpack") from None
    if not isinstance(reply, dict) or reply.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"reply: not a protocol {PROTOCOL_VERSION} message")
    return reply
