"""The message layer of striata's three ZMQ protocols: one way to pack, unpack and validate their messages.

The robot bridge (deploy/PROTOCOL.md), the reward server (``striata.reward_server.protocol``) and the
intervention port (actors/INTERVENTION.md) all send one msgpack map per message (the reward server's
images follow in raw frames) carrying ``v``, the protocol's version, and ``type``. Each protocol
describes itself once as a ``Wire``: its version, the largest message it reads, its error class (a
``WireError``), the reason it answers each kind of bad message with, and the typed ``Message`` models of
what it reads. ``Wire.decode`` is then the whole way from bytes to a typed message, the same for all:

- size first: a message over ``max_bytes`` is refused before msgpack sees it;
- msgpack with safe options only: strings as str (``raw=False``), map keys str or bin
  (``strict_map_key``), no extension types at all (timestamps included); nothing is evaluated;
- a map whose own keys are strings, with ``v`` this version (an int, not a bool) and a string ``type``;
- the model of that type, validated strictly by pydantic (a bool is not a number, a float not an int,
  unknown keys ignored) with the protocol's runtime facts as context (the robot's joint count, the port's
  envs, the server's limits). The first error becomes the protocol's error, naming the field and value.

What a peer may send at all (frames, bytes and rates per peer) is bounded below this layer, by
``striata.common.transport``, before a message reaches ``decode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import msgpack
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

SHORT_CHARS = 60  # values quoted in error details are cut to this many characters


class WireError(ValueError):
    """A message that breaks its protocol. ``reason`` is what the protocol calls the rule (an error
    reply's ``reason``, a rejection counter's key); ``detail`` says which field and what value."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Message(BaseModel):
    """A typed message, or part of one, as a protocol reads it. ``TYPE`` is the ``type`` it is read for.

    Strict: msgpack gives exact types, so a bool where a number belongs or a float where an int belongs is
    a client's bug worth naming. Keys a model does not know are ignored, so a newer peer may add fields.
    """

    # arbitrary types: numpy array fields, which the protocols fill through validators of their own.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, arbitrary_types_allowed=True)

    TYPE: ClassVar[str] = ""


def field_error(text: str, reason: str = "bad_field") -> PydanticCustomError:
    """What a validator raises for a bad field: ``text`` says what is wrong (the value is added to it);
    ``reason`` counts where the protocol has a reason of its own for it (the bridge's ``bad_size``, the
    port's ``bad_env``: listed in ``Reasons.specific``), else the field error is ``bad_field``."""
    return PydanticCustomError(reason, text)


@dataclass(frozen=True)
class Reasons:
    """The ``reason`` a protocol's error gives for each kind of bad message.

    ``None`` makes the reason the name of what is bad instead (``header``, ``v``, ``images[0].shape``: the
    reward server's style). ``specific`` are the reasons its validators raise through ``field_error``;
    every other field error is ``bad_field``.
    """

    too_large: str | None = "too_large"
    not_msgpack: str | None = "not_msgpack"
    not_a_map: str | None = "not_a_map"
    bad_version: str | None = "bad_version"
    bad_type: str | None = "bad_type"  # ``type`` missing or not a string
    unknown_type: str | None = "unknown_type"
    bad_field: str | None = "bad_field"
    specific: frozenset[str] = frozenset()


NAMED_BY_FIELD = Reasons(None, None, None, None, None, None, None)

M = TypeVar("M", bound=Message)


class Wire:
    """One protocol's message layer (see the module docstring)."""

    def __init__(
        self,
        *,
        version: int,
        max_bytes: int,
        error: type[WireError],
        reasons: Reasons,
        messages: tuple[type[Message], ...] = (),
        envelope: str = "message",
    ) -> None:
        """``messages``: the models of what this side reads, by their ``TYPE``; ``envelope``: what errors
        about the whole message (its size, its msgpack, its map) call it."""
        self.version = version
        self.max_bytes = max_bytes
        self.error = error
        self.reasons = reasons
        self.envelope = envelope
        self.messages = {model.TYPE: model for model in messages}

    def pack(self, fields: Mapping[str, Any]) -> bytes:
        """msgpack bytes of ``{"v": version, **fields}``; numpy arrays and scalars go as msgpack values."""
        return msgpack.packb({"v": self.version, **fields}, use_bin_type=True, default=_plain)

    def unpack(self, data: bytes, max_bytes: int | None = None) -> dict[str, Any]:
        """The map of one message with its version and ``type`` checked (at most ``max_bytes``, by default
        what a peer may send this side; a client reading the other way passes its own bound)."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        if len(data) > limit:
            raise self._fail("too_large", self.envelope, f"{len(data)} bytes, more than {limit}")
        try:
            fields = msgpack.unpackb(
                data, raw=False, strict_map_key=True, max_ext_len=0, ext_hook=_refuse_ext
            )
        except Exception as exc:  # msgpack raises many types for garbage (ExtraData, FormatError, ValueError)
            raise self._fail("not_msgpack", self.envelope, f"not msgpack ({type(exc).__name__})") from None
        if not isinstance(fields, dict):
            raise self._fail("not_a_map", self.envelope, f"expected a map, got {type(fields).__name__}")
        if not all(isinstance(key, str) for key in fields):
            raise self._fail("not_a_map", self.envelope, "map keys must be strings")
        version = fields.get("v")
        if type(version) is not int or version != self.version:
            expected = f"expected protocol version {self.version}, got {_short(version)}"
            raise self._fail("bad_version", "v", expected)
        kind = fields.get("type")
        if not isinstance(kind, str):
            raise self._fail("bad_type", "type", f"expected a string, got {_short(kind)}")
        return fields

    def message(self, fields: Mapping[str, Any], context: Any = None) -> Message:
        """The typed message of an unpacked map, by its ``type``; ``context`` reaches the validators."""
        model = self.messages.get(fields["type"])
        if model is None:
            allowed = ", ".join(self.messages)
            raise self._fail("unknown_type", "type", f"unknown {_short(fields['type'])}; allowed: {allowed}")
        return self.validate(model, fields, context)

    def decode(self, data: bytes, context: Any = None) -> Message:
        """``unpack`` and ``message`` in one: the gate from a peer's bytes to a typed message."""
        return self.message(self.unpack(data), context)

    def validate(self, model: type[M], fields: Mapping[str, Any], context: Any = None) -> M:
        """``fields`` as a ``model``, or this protocol's error naming the first bad field and its value."""
        try:
            return model.model_validate(fields, context=context)
        except ValidationError as exc:
            raise self._field_error(exc.errors(include_url=False)[0]) from None

    def _field_error(self, error: ErrorDetails) -> WireError:
        label = _label(error["loc"]) or self.envelope
        kind = error["type"]
        text = "missing" if kind == "missing" else f"{_text(error['msg'])}, got {_short(error['input'])}"
        reason = kind if kind in self.reasons.specific else self.reasons.bad_field
        return self._error(reason, label, text)

    def _fail(self, kind: str, label: str, text: str) -> WireError:
        return self._error(getattr(self.reasons, kind), label, text)

    def _error(self, reason: str | None, label: str, text: str) -> WireError:
        if reason is None:
            return self.error(label, text)
        return self.error(reason, f"{label}: {text}")


def _short(value: Any) -> str:
    """``repr(value)``, cut to ``SHORT_CHARS``: error details quote what a peer sent, not all of it."""
    text = repr(value)
    return text if len(text) <= SHORT_CHARS else text[: SHORT_CHARS - 3] + "..."


def is_number(value: Any) -> bool:
    """An int or a float as msgpack gives them; a bool is not a number on the wire."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _label(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as protocol texts write it: ``images[0].camera``."""
    label = ""
    for part in loc:
        label += f"[{part}]" if isinstance(part, int) else f".{part}" if label else str(part)
    return label


def _text(message: str) -> str:
    # pydantic says "Input should be ..."; the field's name stands in for "Input" in our details.
    return message.removeprefix("Input ")


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _plain(value: Any) -> Any:
    """msgpack's fallback for what it cannot pack itself."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be sent over the wire")
