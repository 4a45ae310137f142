"""Sim-to-real: ONNX controller, robot bridge protocol, robot-side bridges (sim, Unitree G1, arms), safety."""
