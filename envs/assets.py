"""Robot asset resolution: a robot name to the MjSpec that describes it.

Two places are looked at, in order:
1. ``$STRIATA_ASSETS/<folder>/<file>``: a menagerie-layout folder on disk (tests and CI
   point it at ../shared/assets).
2. The ``mujoco-menagerie`` package, which downloads robots on first use (online users).

A robot that is in neither gives one error naming the robot and every place looked at.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import mujoco

ASSETS_ENV = "STRIATA_ASSETS"


class AssetNotFoundError(FileNotFoundError):
    """No place holds the robot's MJCF."""


def load_robot_spec(
    robot: str,
    local: tuple[str, str],
    menagerie: Callable[[ModuleType], mujoco.MjSpec],
    menagerie_description: str,
) -> mujoco.MjSpec:
    """Parse the robot's MJCF from $STRIATA_ASSETS/<folder>/<file>, else from mujoco-menagerie.

    ``menagerie`` builds the spec from the imported mujoco_menagerie module; it may download.
    """
    looked: list[str] = []
    root = os.environ.get(ASSETS_ENV)
    if root:
        path = Path(root).expanduser() / local[0] / local[1]
        if path.is_file():
            return mujoco.MjSpec.from_file(str(path))
        looked.append(f"{path} (from ${ASSETS_ENV}={root}: no such file)")
    else:
        looked.append(f"${ASSETS_ENV} (not set)")

    where = f"mujoco-menagerie {menagerie_description}"
    try:
        import mujoco_menagerie
    except ImportError:
        looked.append(f"{where} (package not installed: pip install 'striata[menagerie]')")
    else:
        try:
            return menagerie(mujoco_menagerie)
        except Exception as exc:  # network, cache and registry failures all end the search here
            looked.append(f"{where} ({type(exc).__name__}: {exc})")
    raise AssetNotFoundError(f"robot {robot!r} not found; looked in: " + "; ".join(looked))


DATA_ENV = "STRIATA_DATA"


def resolve_data_file(name: str | Path) -> Path:
    """A data file (e.g. a motion clip): as given, else under $STRIATA_DATA; error lists both places."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    looked = [str(path.resolve())]
    root = os.environ.get(DATA_ENV)
    if root and not path.is_absolute():
        candidate = Path(root).expanduser() / path
        if candidate.is_file():
            return candidate
        looked.append(f"{candidate} (from ${DATA_ENV})")
    elif not root:
        looked.append(f"${DATA_ENV} (not set)")
    raise FileNotFoundError(f"data file {str(name)!r} not found; looked in: " + "; ".join(looked))
