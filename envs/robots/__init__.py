"""Robots as config (joint order, motors, gains, poses) and their MJCF specs."""
