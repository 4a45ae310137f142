"""Task registry: task name -> config schema and batched env class; Gymnasium registration.

Imports of task modules are deferred, so listing tasks or validating a config name does not
compile any MuJoCo model.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from striata.envs.backend import BatchedEnv
from striata.envs.tasks.base import TaskConfig


@dataclass(frozen=True)
class TaskEntry:
    name: str
    module: str
    env_class: str
    config_class: str
    gym_id: str
    description: str
    config_defaults: tuple[tuple[str, Any], ...] = ()

    def config_type(self) -> type[TaskConfig]:
        return getattr(importlib.import_module(self.module), self.config_class)

    def env_type(self) -> type[BatchedEnv]:
        return getattr(importlib.import_module(self.module), self.env_class)


TASKS: dict[str, TaskEntry] = {
    entry.name: entry
    for entry in (
        TaskEntry(
            "g1_tracking",
            "striata.envs.tasks.g1_tracking.env",
            "G1TrackingEnv",
            "G1TrackingConfig",
            "striata/G1Tracking-v0",
            "Unitree G1 whole-body motion tracking (BeyondMimic MDP)",
        ),
        TaskEntry(
            "g1_tracking_keypoints",
            "striata.envs.tasks.g1_tracking.env",
            "G1TrackingEnv",
            "G1TrackingConfig",
            "striata/G1TrackingKeypoints-v0",
            "G1 tracking with keypoint-weighted rewards (GenMimic)",
            (("keypoints", True),),
        ),
        TaskEntry(
            "panda_pick",
            "striata.envs.tasks.panda.pick",
            "PandaPickEnv",
            "PandaPickConfig",
            "striata/PandaPick-v0",
            "Franka Panda + Robotiq 2F-85 lifts a cube (gym-hil scene)",
        ),
        TaskEntry(
            "panda_reach",
            "striata.envs.tasks.panda.reach",
            "PandaReachEnv",
            "PandaReachConfig",
            "striata/PandaReach-v0",
            "Franka Panda moves its gripper to a random target",
        ),
    )
}


class UnknownTaskError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def task_entry(task: str) -> TaskEntry:
    if task not in TASKS:
        raise UnknownTaskError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    return TASKS[task]


def make_config(task: str, overrides: dict[str, Any] | None = None) -> TaskConfig:
    """The task's config with its defaults, updated by ``overrides`` (nested dicts allowed)."""
    entry = task_entry(task)
    values = dict(entry.config_defaults)
    values.update(overrides or {})
    return entry.config_type().model_validate(values)


def make_env(
    task: str,
    num_envs: int = 64,
    seed: int | None = None,
    config: TaskConfig | None = None,
    **overrides: Any,
) -> BatchedEnv:
    """Build a batched env of ``task`` with ``num_envs`` environments."""
    entry = task_entry(task)
    cfg = config if config is not None else make_config(task, overrides)
    return entry.env_type()(cfg, num_envs=num_envs, seed=seed)
