"""`striata train-reward`: the in-process progress model trained on sim rollouts."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the CLI."""
