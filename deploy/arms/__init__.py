"""Arm bridges: the ``ArmSDK`` adapter interface, its RobotBackend wrapper, vendor adapters (ARMS.md)."""
