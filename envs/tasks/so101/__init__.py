"""SO-101 arm tasks: ``so101_reach`` (reach a target) and ``so101_pick`` (lift a 2.5 cm cube).

Modules: ``config`` (schemas, action and observation layouts), ``scene`` (the table, cameras and objects
built around the robot, its visual meshes decimated by ``envs.visual_meshes``), ``control`` (actions to
servo position targets), ``env`` (the SO-101 on the shared ``tabletop`` arm env), ``reach`` and ``pick``
(the tasks: the shared task logic plus the SO-101's state layout), ``scripted`` (IK-based scripted
policies for tests and demonstrations).
"""
