"""Environments: robots, tasks, motion clips and the batched MuJoCo backend.

Public entry points: ``make_env(task, num_envs)`` for batched envs, ``TASKS`` for the task
list, Gymnasium ids ``striata/<Task>-v0`` (registered on import) for single envs, and
``envs.episodes.EpisodeLog`` for collecting the episodes a batched env finishes.
"""

from envs.backend import ActionError, BatchedEnv
from envs.gym_view import register_all
from envs.registry import TASKS, UnknownTaskError, make_config, make_env

register_all()

__all__ = ["TASKS", "ActionError", "BatchedEnv", "UnknownTaskError", "make_config", "make_env"]
