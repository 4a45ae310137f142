"""``python -m striata``: the same CLI as the ``striata`` command."""

from striata.cli import app

app()
