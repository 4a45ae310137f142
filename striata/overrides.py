"""``--set key=value`` overrides: dotted keys into nested dicts, values parsed as YAML scalars."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml

SetOption = Annotated[list[str] | None, typer.Option("--set", help="config override key=value (repeatable)")]


class OverrideError(ValueError):
    """A --set argument that is not key=value."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["rewards.body_pos.std=0.5", "keypoints=true"]`` -> nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise OverrideError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise OverrideError(f"--set {item!r}: {part!r} is set both as a value and as a section")
            node = child
        node[parts[-1]] = value
    return out
