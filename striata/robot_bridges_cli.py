"""`striata bridge unitree-g1` and the arm bridge."""

from __future__ import annotations

import typer


def register(bridge_app: typer.Typer) -> None:
    """Add this part's commands to the CLI."""
