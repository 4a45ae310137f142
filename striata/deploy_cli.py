"""`striata export`, `striata deploy`, `striata bridge sim`, `striata bench deploy`."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bridge_app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this part's commands to the CLI."""
