"""Pieces every part shares at the bottom layer: bounded ZMQ transport (``transport``), the message layer
of the three protocols above it (``wire``), the intervention port, CurveZMQ keys, atomic files and the
hostile floods the benchmarks and tests send."""
