"""Sim-to-real: ONNX controller, robot bridge protocol, robot-side bridges (sim, Unitree G1, arms), safety.

Public modules of ``striata.deploy`` (the wire format is in PROTOCOL.md):

- ``.robot``: ``RobotBackend``, ``RobotState``, ``JointCommand``: what a robot-side bridge wraps.
- ``.bridge_server``: ``BridgeServer(backend, endpoint, safety)``: protocol, latest-only slot, safety.
- ``.safety``: ``SafetyConfig``, ``SafetyFilter`` (watchdog, limits, e-stop handling).
- ``.protocol``: message schema, msgpack encoding and validation, ``PROTOCOL_VERSION``.
- ``.sim_robot``: ``SimRobot``: the MuJoCo G1 or Panda as a backend (``striata bridge sim``).
- ``.controller``: ``Controller``: runs an exported policy on a bridge (``striata deploy``).
- ``.client``, ``.observers``: the controller's bridge client and observation builders.
- ``.bench``: ``striata bench deploy``.
- ``.unitree``, ``.arms``: Unitree G1 (DDS) and arm backends.
"""
