"""Sim-to-real: ONNX controller, robot bridge protocol, robot-side bridges (sim, Unitree G1, arms), safety.

Public modules (the wire format is in PROTOCOL.md):

- ``deploy.robot``: ``RobotBackend``, ``RobotState``, ``JointCommand``: what a robot-side bridge wraps.
- ``deploy.bridge_server``: ``BridgeServer(backend, endpoint, safety)``: protocol, latest-only slot, safety.
- ``deploy.safety``: ``SafetyConfig``, ``SafetyFilter`` (watchdog, limits, e-stop handling).
- ``deploy.protocol``: message schema, msgpack encoding and validation, ``PROTOCOL_VERSION``.
- ``deploy.sim_robot``: ``SimRobot``: the MuJoCo G1 or Panda as a backend (``striata bridge sim``).
- ``deploy.controller``: ``Controller``: runs an exported policy on a bridge (``striata deploy``).
- ``deploy.client``, ``deploy.observers``: the controller's bridge client and observation builders.
- ``deploy.bench``: ``striata bench deploy``.
- ``deploy.unitree``, ``deploy.arms``: Unitree G1 (DDS) and arm backends.
"""
