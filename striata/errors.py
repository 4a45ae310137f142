"""Turning user errors (bad config, missing files, malformed clips) into one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import BaseModel, ValidationError

from envs.assets import AssetNotFoundError
from envs.backend import ActionError
from envs.motion import MotionFormatError
from envs.registry import UnknownTaskError
from envs.rollout import PolicyChoiceError
from striata.overrides import OverrideError


class ConfigFileError(ValueError):
    """A config file that cannot be used as written (not YAML, bad task section)."""


USER_ERRORS = (
    ConfigFileError,
    AssetNotFoundError,
    ActionError,
    FileNotFoundError,
    MotionFormatError,
    OverrideError,
    PolicyChoiceError,
    UnknownTaskError,
)


def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Field names of the (nested) model section that holds the key at ``loc``."""
    for part in loc[:-1]:
        if model is None or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if model is not None else []


def format_validation_error(
    exc: ValidationError, model: type[BaseModel] | None = None, prefix: str = "config"
) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, err["loc"])
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{prefix}: unknown key {where!r}{hint}")
        else:
            lines.append(f"{prefix}: {where}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


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
    from envs.registry import TASKS

    for entry in TASKS.values():
        cls = entry.config_type()
        if cls.__name__ == exc.title:
            return cls
    return None
