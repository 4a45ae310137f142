"""Pieces every part shares at the bottom layer: bounded ZMQ transport (and, per DESIGN.md, more to come)."""
