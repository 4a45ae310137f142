"""Turning user errors (bad config, missing files, malformed clips) into one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import get_origin

import typer
from pydantic import BaseModel, ValidationError

from striata.envs.assets import AssetNotFoundError
from striata.envs.backend import ActionError
from striata.envs.motion import MotionFormatError
from striata.envs.motion.reference import MotionSegmentError
from striata.envs.registry import UnknownTaskError
from striata.envs.rollout import PolicyChoiceError
from striata.overrides import OverrideError


class ConfigFileError(ValueError):
    """A config file that cannot be used as written (not YAML, bad task section)."""


USER_ERRORS = (
    ConfigFileError,
    AssetNotFoundError,
    ActionError,
    FileNotFoundError,
    MotionFormatError,
    MotionSegmentError,
    OverrideError,
    PolicyChoiceError,
    UnknownTaskError,
)


def _section(model: type[BaseModel] | None, path: tuple) -> type[BaseModel] | None:
    """The (nested) config model at ``path``, or None where ``path`` leaves the config sections."""
    for part in path:
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Field names of the (nested) model section that holds the key at ``loc``."""
    section = _section(model, loc[:-1])
    return list(section.model_fields) if section is not None else []


def format_validation_error(
    exc: ValidationError, model: type[BaseModel] | None = None, prefix: str = "config"
) -> str:
    lines = []
    for loc, errs in _group_union_members(exc.errors(), model):
        err = errs[0]
        where = ".".join(str(p) for p in loc) or "(root)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, err["loc"])
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{prefix}: unknown key {where!r}{hint}")
        elif len(errs) == 1:
            lines.append(f"{prefix}: {where}: {err['msg']} (got {err.get('input')!r})")
        else:
            message = "; or ".join(dict.fromkeys(_member_message(e, len(loc)) for e in errs))
            message = message[0].upper() + message[1:]
            lines.append(f"{prefix}: {where}: {message} (got {_whole_input(errs, len(loc))!r})")
    return "\n".join(lines)


def _group_union_members(errors: list[dict], model: type[BaseModel] | None) -> list[tuple[tuple, list[dict]]]:
    """One entry per bad key. Pydantic reports a value that fits no member of a union (``str | list[str]``)
    once per member, the member's type in its location after the key; those become one entry for the key."""
    groups: dict[tuple, tuple[int | None, list[dict]]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        depth = _union_key_depth(model, loc)
        groups.setdefault(loc[:depth] if depth else (*loc, id(err)), (depth, []))[1].append(err)
    entries = []
    for key, (depth, errs) in groups.items():
        if depth and len({e["loc"][depth] for e in errs}) > 1:
            entries.append((key, errs))
        else:
            entries.extend((tuple(e["loc"]), [e]) for e in errs)
    return entries


def _union_key_depth(model: type[BaseModel] | None, loc: tuple) -> int | None:
    """How many parts of ``loc`` name a config key whose type is not a config section, when a union
    member's type follows them; None otherwise."""
    for depth in range(1, len(loc)):
        if loc[depth - 1] not in _allowed_keys(model, loc[:depth]):
            return None
        if _section(model, loc[:depth]) is None:
            # After a mapping's key comes a key of that mapping (rewards.body_pos), not a union member.
            return depth if isinstance(loc[depth], str) and not _is_mapping(model, loc[:depth]) else None
    return None


def _is_mapping(model: type[BaseModel] | None, path: tuple) -> bool:
    """Whether the config key at ``path`` holds a dict (its keys are names the user chose)."""
    section = _section(model, path[:-1])
    return section is not None and get_origin(section.model_fields[path[-1]].annotation) is dict


def _member_message(err: dict, depth: int) -> str:
    """A union member's complaint, naming where inside the value it is (``item 0: ...``)."""
    inside = err["loc"][depth + 1 :]
    where = f"item {'.'.join(str(p) for p in inside)}: " if inside else ""
    return where + err["msg"][0].lower() + err["msg"][1:]


def _whole_input(errs: list[dict], depth: int) -> object:
    """The value given for the key: the input of a member error about the whole value, if any."""
    whole = [e for e in errs if len(e["loc"]) == depth + 1]
    return (whole or errs)[0].get("input")


@contextmanager
def user_errors(
    model: type[BaseModel] | None = None, extra: tuple[type[Exception], ...] = ()
) -> Iterator[None]:
    """Print user errors as one line on stderr and exit 2, instead of a traceback.

    ``model`` is the config schema being validated, to list the allowed keys of a bad section;
    ``extra`` are a part's own user-error types (deploy, reward server) handled the same way.
    """
    try:
        yield
    except ValidationError as exc:
        print(format_validation_error(exc, model or _model_of(exc)), file=sys.stderr)
        raise typer.Exit(2) from None
    except ConfigFileError as exc:
        print(exc, file=sys.stderr)  # already "config: ...", naming the key
        raise typer.Exit(2) from None
    except (*USER_ERRORS, *extra) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


def _model_of(exc: ValidationError) -> type[BaseModel] | None:
    """The pydantic model class named in the error's title, among the registered task configs."""
    from striata.envs.registry import TASKS

    for entry in TASKS.values():
        cls = entry.config_type()
        if cls.__name__ == exc.title:
            return cls
    return None
