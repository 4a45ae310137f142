"""Franka Panda + Robotiq 2F-85 tasks: ``panda_pick`` (lift a cube) and ``panda_reach`` (reach a target).

Modules: ``config`` (schemas, observation layouts), ``scene`` (the world built around the robot),
``control`` (actions to joint targets: end-effector-delta IK or joint deltas), ``env`` (the Panda on the
shared ``tabletop`` arm env), ``pick`` and ``reach`` (the tasks: the shared task logic plus the Panda's
state layout and the pick's progress), ``scripted`` (IK-based scripted policies for tests,
demonstrations and reward-model data), ``progress_scene`` (the pick's rollouts for reward-model data sets).
"""
