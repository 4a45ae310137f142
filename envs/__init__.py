"""Environments: robots, tasks, motion clips and the batched MuJoCo backend.

Public entry points: ``make_env(task, num_envs)`` for batched envs, ``TASKS`` for the task
list, Gymnasium ids ``striata/<Task>-v0`` (registered on import where Gymnasium is installed) for
single and vector envs, and ``striata.envs.episodes.EpisodeLog`` for collecting the episodes a batched env
finishes.
"""

from importlib.util import find_spec

from striata.envs.backend import ActionError, BatchedEnv
from striata.envs.registry import TASKS, UnknownTaskError, make_config, make_env

# A robot computer (striata[deploy]) has no Gymnasium: there is nothing to register, and not even an
# import of it is tried.
if find_spec("gymnasium") is not None:
    from striata.envs.gym_view import register_all

    register_all()

__all__ = ["TASKS", "ActionError", "BatchedEnv", "UnknownTaskError", "make_config", "make_env"]
