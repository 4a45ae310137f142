"""The reward request/response wire format (DESIGN.md "Reward request/response"), written so that a client
can be built in any language from this text alone.

Transport
---------
ZMQ: the server binds a ROUTER socket (``tcp://127.0.0.1:5790`` by default), a client connects a
DEALER. Every message is msgpack; every header carries ``v`` (the protocol version, 1). Nothing else
crosses the socket (no pickle, no msgpack extension types; map keys are strings). Before a message is
even parsed, the server's transport (``striata.common.transport``) bounds it; the bounds are in the
``health`` reply under ``limits``:

- a frame over ``max_frame_bytes``: libzmq refuses it as it arrives and closes the connection (the
  client's ZMQ reconnects on its own);
- a message of more than ``max_frames`` frames or ``max_message_bytes`` bytes, or from a peer over
  ``peer_messages_per_s`` / ``peer_bytes_per_s`` (after a burst): dropped **without a reply**,
  counted in the ``metrics`` reply's ``dropped`` by reason (``too_many_frames``,
  ``message_too_large``, ``peer_over_message_rate``, ``peer_over_byte_rate``). A client sees it as
  no reply (``RewardClient`` labels it ``late``).

Requests
--------
A score request is a multipart message: one msgpack header, then one frame per image, in the order
of the header's ``images`` list::

    {"v": 1, "type": "score", "request_id": int, "actor_id": int, "episode_id": int, "t": int,
     "task": str, "mode": "progress" | "pairwise_delta" | "episode_score" | "success" | "preference",
     "deadline_ms": float,
     "images": [{"camera": str, "role": "frame" | "reference", "encoding": "raw" | "jpeg",
                 "shape": [H, W, 3]}]}            # shape only for raw (uint8 RGB, row-major)

At least one image has role ``frame``; a camera appears at most once per role. ``health["cameras"]``
names the cameras the server's model needs a frame from (``None``: any camera) and
``health["modes"]`` the modes it answers. ``{"v": 1, "type": "health"}`` and
``{"v": 1, "type": "metrics"}`` are one-frame requests for the server's state.

Images are checked before they are decoded: a raw frame's size must match its shape, a JPEG's
width and height are read from its header and refused when a side is over ``max_side`` or when the
file is too short for the pixels its header claims (under one bit per 8x8 block: a lying header);
then it is decoded fully, off the socket thread, and any decoder error is a ``bad_request`` naming
the image and its camera. Arithmetic-coded JPEGs of nearly flat images can fall under that floor;
send baseline (Huffman) JPEGs, as PIL and libjpeg write by default.

Deadlines
---------
``deadline_ms`` counts from the moment the server reads the request off its socket. A request whose
deadline passes while it waits to be decoded or scored is answered ``timeout`` without being
scored; a score that is ready only after the deadline is also sent as ``timeout`` (NaN values, the
``detail`` says by how much it was late): an ``ok`` reply is always on time. Other statuses are sent
as they are whenever they are ready.

Replies
-------
One msgpack header::

    {"v": 1, "type": "score", "request_id", "actor_id", "episode_id", "t", "status", "progress",
     "delta", "done_prob", "uncertainty", "model_id", "revision", "cache_hit", "detail",
     "latency_ms": {"decode": float, "queue": float, "model": float, "total": float}}

The ids are ``None`` when the request could not be read that far. ``status`` is one of

- ``ok``: scored in time; ``progress`` in [0, 1] and/or ``delta``, ``done_prob`` as the mode gives;
- ``timeout``: the deadline passed before the score was ready (see Deadlines);
- ``overloaded``: ``max_queue`` requests were already waiting; refused at once;
- ``bad_request``: the request breaks this protocol or asks what this server does not take;
  ``detail`` names the field and the value. Such a request costs its client ``bad_message_cost``
  (in ``limits``; 64) requests of its ``peer_messages_per_s``, down to minus a burst: a client that
  sends nothing else is answered a few dozen times a second and its other requests over that rate are
  dropped (``peer_over_message_rate``), so a stream of garbage holds up no other client. The reasons,
  by the field named:

  - ``header``: over ``max_header_bytes``, not msgpack (or with an extension type), not a map of
    string keys; ``v``: not this version (an int); ``type``: not ``score``, ``health`` or ``metrics``;
  - ``request_id``, ``actor_id``, ``episode_id``, ``t``, ``task``, ``mode``, ``deadline_ms``,
    ``images``: missing or of the wrong type (a bool is not an int);
  - ``mode``: unknown, or not among the modes this server answers; ``task``: over
    ``max_task_chars``; ``deadline_ms``: not a positive finite number;
  - ``images``: empty, over ``max_images``, not as many as the image frames, none with role
    ``frame``, or no frame from a camera the model needs (``images: no frame from camera
    'workspace'; this server takes cameras workspace, side (got front)``);
  - ``images[i]``: not a map; ``.camera`` missing, empty, over 64 characters or twice in one role;
    ``.role`` / ``.encoding`` unknown; ``.shape`` not ``[H, W, 3]`` integers or a side over
    ``max_side``;
  - ``images[i] (camera 'name')``: over ``max_image_bytes``, raw bytes that do not fill its shape, a
    JPEG side over ``max_side``, a JPEG too short for the size its header claims, a JPEG the
    decoder refuses (``not a decodable JPEG (OSError: image file is truncated ...)``);
  - what a backend cannot use, found when it scores (e.g. the progress model: an empty task text,
    a missing reference frame);
- ``parse_error``: the model answered something its profile cannot parse (VLM backends);
- ``model_error``: the backend failed, or gave a value out of range.

Every status but ``ok`` carries NaN values, never a default score. ``health`` replies
``{"type": "health", "status": "ok", "model_id", "revision", "protocol", "cameras", "modes",
"encodings", "limits", "queue_depth", "uptime_s"}``; ``metrics`` replies counts by status, batch sizes,
latency percentiles and the transport's ``dropped`` counts.

Example: a client with nothing but pyzmq and msgpack, against a server on the default endpoint
(the README shows how to start one; ``RewardClient`` does all this and never blocks):

>>> import msgpack, numpy as np, zmq
>>> socket = zmq.Context.instance().socket(zmq.DEALER)
>>> socket.connect("tcp://127.0.0.1:5790")
<SocketContext(connect='tcp://127.0.0.1:...')>
>>> socket.send(msgpack.packb({"v": 1, "type": "health"}))
>>> socket.poll(30_000)
1
>>> health = msgpack.unpackb(socket.recv())
>>> cameras = health["cameras"] or ["front"]
>>> header = {"v": 1, "type": "score", "request_id": 1, "actor_id": 0, "episode_id": 0, "t": 0,
...           "task": "pick up the cube and lift it", "mode": "progress", "deadline_ms": 5000,
...           "images": [{"camera": c, "role": "frame", "encoding": "raw", "shape": [80, 80, 3]}
...                      for c in cameras]}
>>> pixels = np.zeros((80, 80, 3), np.uint8).tobytes()  # one raw 80x80 RGB frame per camera
>>> socket.send_multipart([msgpack.packb(header), *[pixels] * len(cameras)])
>>> socket.poll(30_000)
1
>>> reply = msgpack.unpackb(socket.recv())
>>> reply["status"], reply["request_id"], 0.0 <= reply["progress"] <= 1.0
('ok', 1, True)
>>> socket.close()
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, get_args

import numpy as np
import xxhash
from PIL import Image
from pydantic import BeforeValidator, Field, PlainValidator, ValidationInfo, field_validator

from striata.common.wire import NAMED_BY_FIELD, Message, Wire, WireError, field_error, is_number
from striata.reward_server.backend import Mode, ScoreInput, ScoreOutput

PROTOCOL_VERSION = 1
Role = Literal["frame", "reference"]
Encoding = Literal["raw", "jpeg"]
MODES: tuple[str, ...] = get_args(Mode)
ROLES: tuple[str, ...] = get_args(Role)
ENCODINGS: tuple[str, ...] = get_args(Encoding)
MAX_HEADER_BYTES = 64 * 1024
# What a client reads back: a reply header is small, but ``metrics`` grows with the statuses it counts.
MAX_REPLY_BYTES = 1024 * 1024
MAX_CAMERA_CHARS = 64
# A Huffman-coded JPEG spends at least one bit on every 8x8 block (its DC code), so a file shorter than
# that cannot hold the pixels its header claims; libjpeg would pad it silently and decode it "ok".
JPEG_MIN_BITS_PER_BLOCK = 1


class ProtocolError(WireError):
    """A message that does not follow the protocol; ``reason`` is the bad field's name, ``detail`` what is
    wrong with it (a ``bad_request`` reply's ``detail`` is both: ``str(error)``)."""


@dataclass(frozen=True)
class Limits:
    """What the server accepts in a request, so that a huge or hostile one costs little."""

    max_images: int = 16
    max_side: int = 1024
    max_image_bytes: int = 4 * 1024 * 1024
    max_task_chars: int = 2048

    def as_dict(self) -> dict[str, int]:
        return {
            "max_images": self.max_images,
            "max_side": self.max_side,
            "max_image_bytes": self.max_image_bytes,
            "max_task_chars": self.max_task_chars,
            "max_header_bytes": MAX_HEADER_BYTES,
        }


@dataclass
class EncodedImage:
    """One image frame as it came off the socket: its descriptor checked, its pixels not yet decoded."""

    index: int
    camera: str
    role: str
    encoding: str
    payload: bytes
    shape: tuple[int, int, int] | None = None  # raw only

    @property
    def where(self) -> str:
        """How replies name it: its place in the request and its camera."""
        return f"images[{self.index}] (camera {self.camera!r})"


@dataclass
class ScoreRequest:
    request_id: int
    actor_id: int
    episode_id: int
    t: int
    task: str
    mode: str
    deadline_ms: float
    images: list[EncodedImage] = field(default_factory=list)
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    reference_frames: dict[str, np.ndarray] = field(default_factory=dict)
    frame_digest: str = ""

    def score_input(self) -> ScoreInput:
        return ScoreInput(
            task=self.task, mode=self.mode, frames=self.frames, reference_frames=self.reference_frames
        )  # type: ignore[arg-type]

    def set_pixels(self, arrays: list[np.ndarray]) -> None:
        """Place the decoded images (``images`` order) by role and camera, digest them, drop the payloads."""
        # xxh3: a cache key, not a signature, at ~1 us a frame where blake2b took ~20.
        digest = xxhash.xxh3_128()
        for image, array in zip(self.images, arrays, strict=True):
            target = self.frames if image.role == "frame" else self.reference_frames
            target[image.camera] = array
            digest.update(f"{image.role}:{image.camera}:{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
        self.frame_digest = digest.hexdigest()
        self.images = []


def _limits(info: ValidationInfo) -> Limits:
    return info.context  # the server validates with its ``Limits`` as the context


def _raw_shape(value: Any, info: ValidationInfo) -> tuple[int, int, int] | None:
    """A raw image's ``[H, W, 3]`` (ignored for a JPEG, whose header says its size)."""
    if info.data.get("encoding") != "raw":
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or value[2] != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in value)
    ):
        raise field_error("expected [H, W, 3] integers")
    height, width, _ = value
    max_side = _limits(info).max_side
    if not (0 < height <= max_side and 0 < width <= max_side):
        raise field_error(f"sides must be 1 to {max_side}")
    return height, width, 3


class ImageDescriptor(Message):
    """One entry of a score request's ``images``: what the frame at its place holds."""

    camera: str = Field(min_length=1, max_length=MAX_CAMERA_CHARS)
    role: Role
    encoding: Encoding
    shape: Annotated[tuple[int, int, int] | None, PlainValidator(_raw_shape)] = Field(
        default=None, validate_default=True
    )


class ScoreHeader(Message):
    """The header of a score request, checked against the server's ``Limits`` (the context)."""

    TYPE: ClassVar[str] = "score"

    request_id: int
    actor_id: int
    episode_id: int
    t: int
    task: str
    mode: Mode
    deadline_ms: float = Field(gt=0, allow_inf_nan=False)
    images: list[ImageDescriptor]

    @field_validator("task")
    @classmethod
    def _task_fits(cls, task: str, info: ValidationInfo) -> str:
        if len(task) > _limits(info).max_task_chars:
            raise field_error(f"{len(task)} characters, more than {_limits(info).max_task_chars}")
        return task

    @field_validator("images", mode="before")
    @classmethod
    def _image_count(cls, images: Any, info: ValidationInfo) -> Any:
        # Counted before any descriptor is read: a header may list thousands.
        if isinstance(images, list) and not images:
            raise field_error("at least one image is needed")
        if isinstance(images, list) and len(images) > _limits(info).max_images:
            raise field_error(f"{len(images)} images, more than {_limits(info).max_images}")
        return images


class HealthRequest(Message):
    TYPE: ClassVar[str] = "health"


class MetricsRequest(Message):
    TYPE: ClassVar[str] = "metrics"


WIRE = Wire(
    version=PROTOCOL_VERSION,
    max_bytes=MAX_HEADER_BYTES,
    error=ProtocolError,
    reasons=NAMED_BY_FIELD,
    messages=(ScoreHeader, HealthRequest, MetricsRequest),
    envelope="header",
)


def pack(header: dict[str, Any]) -> bytes:
    """msgpack bytes of a header (any message's, a reply's too) with the protocol version added."""
    return WIRE.pack(header)


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


def parse_score_request(header: ScoreHeader, frames: list[bytes], limits: Limits) -> ScoreRequest:
    """Check a score request's image frames against its header without decoding any pixel (cheap: the
    socket thread runs it).

    Raises ``ProtocolError`` naming the bad field; ``decode_image`` then decodes each of ``images``.
    """
    if len(header.images) != len(frames):
        raise ProtocolError(
            "images", f"header lists {len(header.images)} images, message has {len(frames)} frames"
        )
    request = ScoreRequest(
        request_id=header.request_id,
        actor_id=header.actor_id,
        episode_id=header.episode_id,
        t=header.t,
        task=header.task,
        mode=header.mode,
        deadline_ms=header.deadline_ms,
    )
    seen: set[tuple[str, str]] = set()
    for index, (descriptor, payload) in enumerate(zip(header.images, frames, strict=True)):
        image = EncodedImage(index, descriptor.camera, descriptor.role, descriptor.encoding, payload)
        if (image.role, image.camera) in seen:
            raise ProtocolError(f"images[{index}].camera", f"{image.camera!r} appears twice as {image.role}")
        seen.add((image.role, image.camera))
        if len(payload) > limits.max_image_bytes:
            raise ProtocolError(image.where, f"{len(payload)} bytes, more than {limits.max_image_bytes}")
        if descriptor.shape is not None:
            height, width, _ = image.shape = descriptor.shape
            if len(payload) != height * width * 3:
                needed = f"shape {list(descriptor.shape)} needs {height * width * 3}"
                raise ProtocolError(image.where, f"{len(payload)} bytes, {needed}")
        request.images.append(image)
    if not any(image.role == "frame" for image in request.images):
        raise ProtocolError("images", "no image has role 'frame'")
    return request


def decode_image(image: EncodedImage, limits: Limits) -> np.ndarray:
    """The pixels of one checked image, uint8 [H, W, 3]; raises ``ProtocolError`` naming it and its camera."""
    if image.encoding == "raw":
        assert image.shape is not None  # set by _parse_image for every raw image
        return np.frombuffer(image.payload, dtype=np.uint8).reshape(image.shape)
    return _decode_jpeg(image.payload, limits, image.where)


def _decode_jpeg(payload: bytes, limits: Limits, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(payload), formats=["JPEG"]) as image:
            width, height = image.size  # read from the header, before any pixel is decoded
            if not (0 < height <= limits.max_side and 0 < width <= limits.max_side):
                raise ProtocolError(where, f"JPEG is {width}x{height}, sides must be 1 to {limits.max_side}")
            blocks = math.ceil(width / 8) * math.ceil(height / 8)
            needed = math.ceil(blocks * JPEG_MIN_BITS_PER_BLOCK / 8)
            if len(payload) < needed:
                raise ProtocolError(
                    where,
                    f"JPEG header claims {width}x{height}, which needs at least {needed} bytes; "
                    f"the image has {len(payload)}",
                )
            image.load()
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ProtocolError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise ProtocolError(where, f"not a decodable JPEG ({type(exc).__name__}: {exc})") from None
    return array


def reply_header(
    request: ScoreRequest | None,
    output: ScoreOutput,
    *,
    model_id: str,
    revision: str,
    cache_hit: bool = False,
    request_id: Any = None,
) -> dict[str, Any]:
    """A score reply's fields, unpacked (the server adds ``latency_ms`` when it sends it).

    ``request`` is None when the request could not be decoded; ``request_id`` is then echoed if it is
    an int.
    """
    ids = (
        {"request_id": request.request_id, "actor_id": request.actor_id, "episode_id": request.episode_id,
         "t": request.t}
        if request is not None
        else {"request_id": request_id if isinstance(request_id, int) and not isinstance(request_id, bool)
              else None, "actor_id": None, "episode_id": None, "t": None}
    )  # fmt: skip
    return {
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
    }


def past_deadline(reply: dict[str, Any], late_ms: float) -> dict[str, Any]:
    """``reply`` as it must go out when it is ready ``late_ms`` after its deadline: no ``ok``, no values."""
    if reply["status"] != "ok":
        return reply
    return {
        **reply,
        "status": "timeout",
        "progress": math.nan,
        "delta": math.nan,
        "done_prob": math.nan,
        "uncertainty": math.nan,
        "detail": f"scored {late_ms:.1f} ms after the deadline",
    }


def _number_or_nan(value: Any) -> float:
    return float(value) if is_number(value) else math.nan


# A reply's value: NaN for anything that is not a number (a failure's values are NaN, never a default).
Score = Annotated[float, BeforeValidator(_number_or_nan)]


class ScoreReply(Message):
    """A scoring reply as a client reads it: the values are NaN unless ``status`` is ``ok``."""

    TYPE: ClassVar[str] = "score"

    request_id: int
    status: str
    progress: Score = math.nan
    delta: Score = math.nan
    done_prob: Score = math.nan
    uncertainty: Score = math.nan
    cache_hit: bool = False
    model_id: str = ""
    detail: str = ""

    @classmethod
    def of(cls, reply: dict[str, Any]) -> ScoreReply:
        """The typed reply of a decoded reply map; ``ProtocolError`` naming the field it cannot read (a
        ``request_id`` that is not an integer, a ``status`` that is not a string)."""
        return WIRE.validate(cls, reply)


def decode_reply(raw: bytes) -> dict[str, Any]:
    """A reply header (``score``, ``health`` or ``metrics``) as a dict; raises ``ProtocolError`` for
    anything else."""
    return WIRE.unpack(raw, max_bytes=MAX_REPLY_BYTES)
