"""What the tabletop arm tasks share, whatever the arm: ``panda_*`` and ``so101_*`` build on it.

Modules: ``config`` (schema pieces and observation layouts), ``scene`` (the visuals, target and checks
around a robot spec), ``env`` (the batched arm env: robot state, resets, rewards, camera observations),
``reach`` and ``pick`` (the two tasks' logic, robot-agnostic), ``scripted`` (what the scripted policies
share: gripper commands, action noise, the pick's phases), ``rotations`` (orientation errors for IK).
"""
