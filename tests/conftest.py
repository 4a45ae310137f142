"""Test setup: point striata at the shared robot assets and motion clips beside the repo."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
os.environ.setdefault("STRIATA_ASSETS", str(SHARED / "assets"))
os.environ.setdefault("STRIATA_DATA", str(SHARED / "data"))
os.environ.setdefault("MUJOCO_GL", "egl")
# Motion caches of a test run stay out of the user's ~/.cache.
os.environ.setdefault("STRIATA_CACHE", tempfile.mkdtemp(prefix="striata-test-cache-"))
