"""striata: composition root (CLI, config handling). Algorithms and envs live in their own parts."""

__version__ = "0.1.0"
