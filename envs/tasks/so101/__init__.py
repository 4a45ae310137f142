"""SO-101 arm tasks: ``so101_reach`` (reach a target) and ``so101_pick`` (lift a 2.5 cm cube).

Modules: ``config`` (schemas, action and observation layouts), ``scene`` (the table, cameras and objects
built around the robot), ``visual_meshes`` (decimated visual meshes for affordable software rendering),
``control`` (actions to servo position targets), ``env`` (what both tasks share), ``reach`` and ``pick``
(the tasks), ``scripted`` (IK-based scripted policies for tests and demonstrations).
"""
