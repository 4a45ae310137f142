"""`striata serve-reward` and `striata bench reward`."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this part's commands to the CLI."""
