"""Task registry: task name -> config schema, batched env class and the facts the task owns.

The facts other parts need of a task come from here, by the task's name: its left/right mirror maps
(``TaskEntry.symmetry``, for the learner's symmetry augmentation and mirror loss), its action priors
(``TaskEntry.action_prior``, a fixed part of the PPO policy's mean) and its progress
scene (``TaskEntry.progress_scene``, for the reward server's data sets). Imports of task modules are
deferred, so listing tasks or validating a config name does not compile any MuJoCo model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from striata.envs.action_prior import ActionPrior
from striata.envs.backend import BatchedEnv
from striata.envs.progress_scene import ProgressScene
from striata.envs.symmetry import Symmetry
from striata.envs.tasks.base import TaskConfig


class RegistryError(KeyError):
    """A name the registry does not know; printed as its message (a KeyError's would be quoted)."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownTaskError(RegistryError):
    """A task name that is not in ``TASKS``."""


class UnknownSymmetryError(RegistryError):
    """A mirror-map name the task does not define."""


class UnknownActionPriorError(RegistryError):
    """An action-prior name the task does not define."""


class NoProgressSceneError(RegistryError):
    """A task that offers no progress scene for reward-model data sets."""


def _attribute(ref: str) -> Any:
    """The object a ``"module:attribute"`` reference names (the module imported now)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class TaskEntry:
    name: str
    module: str
    env_class: str
    config_class: str
    gym_id: str
    description: str
    config_defaults: tuple[tuple[str, Any], ...] = ()
    symmetries_ref: str | None = None
    """``"module:attribute"`` of the task's mirror maps: name -> builder of a ``Symmetry``."""
    action_priors_ref: str | None = None
    """``"module:attribute"`` of the task's action priors: name -> builder of an ``ActionPrior``."""
    progress_scene_ref: str | None = None
    """``"module:attribute"`` of what makes the task's ``ProgressScene`` (called with no arguments)."""

    def config_type(self) -> type[TaskConfig]:
        return getattr(importlib.import_module(self.module), self.config_class)

    def env_type(self) -> type[BatchedEnv]:
        return getattr(importlib.import_module(self.module), self.env_class)

    def symmetries(self) -> Mapping[str, Callable[[], Symmetry]]:
        """The task's mirror maps by name (empty: the task defines none)."""
        return {} if self.symmetries_ref is None else _attribute(self.symmetries_ref)

    def symmetry(self, name: str) -> Symmetry:
        """The mirror maps ``name`` of this task; ``UnknownSymmetryError`` lists the known names."""
        builders = self.symmetries()
        if name not in builders:
            known = ", ".join(builders) or "none"
            raise UnknownSymmetryError(f"unknown symmetry {name!r} of task {self.name!r}; known: {known}")
        return builders[name]()

    def action_prior(self, name: str) -> ActionPrior:
        """The action prior ``name`` of this task; ``UnknownActionPriorError`` lists the known names."""
        builders = {} if self.action_priors_ref is None else _attribute(self.action_priors_ref)
        if name not in builders:
            known = ", ".join(builders) or "none"
            raise UnknownActionPriorError(
                f"unknown action prior {name!r} of task {self.name!r}; known: {known}"
            )
        return builders[name]()

    def progress_scene(self) -> ProgressScene[Any]:
        """The task's rollouts for reward-model data sets; ``NoProgressSceneError`` where it has none."""
        if self.progress_scene_ref is None:
            having = ", ".join(e.name for e in TASKS.values() if e.progress_scene_ref is not None)
            raise NoProgressSceneError(
                f"task {self.name!r} has no progress scene (reward-model data sets); tasks with one: {having}"
            )
        return _attribute(self.progress_scene_ref)()


# Both G1 tracking tasks observe and act alike, so they share their mirror maps and action priors.
_G1_TRACKING_SYMMETRIES = "striata.envs.tasks.g1_tracking.symmetry:SYMMETRIES"
_G1_TRACKING_PRIORS = "striata.envs.tasks.g1_tracking.action_prior:ACTION_PRIORS"


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
            symmetries_ref=_G1_TRACKING_SYMMETRIES,
            action_priors_ref=_G1_TRACKING_PRIORS,
        ),
        TaskEntry(
            "g1_tracking_keypoints",
            "striata.envs.tasks.g1_tracking.env",
            "G1TrackingEnv",
            "G1TrackingConfig",
            "striata/G1TrackingKeypoints-v0",
            "G1 tracking with keypoint-weighted rewards (GenMimic)",
            (("keypoints", True),),
            symmetries_ref=_G1_TRACKING_SYMMETRIES,
            action_priors_ref=_G1_TRACKING_PRIORS,
        ),
        TaskEntry(
            "panda_pick",
            "striata.envs.tasks.panda.pick",
            "PandaPickEnv",
            "PandaPickConfig",
            "striata/PandaPick-v0",
            "Franka Panda + Robotiq 2F-85 lifts a cube (gym-hil scene)",
            progress_scene_ref="striata.envs.tasks.panda.progress_scene:PickProgressScene",
        ),
        TaskEntry(
            "panda_reach",
            "striata.envs.tasks.panda.reach",
            "PandaReachEnv",
            "PandaReachConfig",
            "striata/PandaReach-v0",
            "Franka Panda moves its gripper to a random target",
        ),
        TaskEntry(
            "so101_pick",
            "striata.envs.tasks.so101.pick",
            "So101PickEnv",
            "So101PickConfig",
            "striata/So101Pick-v0",
            "SO-101 arm lifts a 2.5 cm cube from the table (servo position targets)",
            progress_scene_ref="striata.envs.tasks.so101.progress_scene:So101PickProgressScene",
        ),
        TaskEntry(
            "so101_reach",
            "striata.envs.tasks.so101.reach",
            "So101ReachEnv",
            "So101ReachConfig",
            "striata/So101Reach-v0",
            "SO-101 arm moves its gripper to a random target (servo position targets)",
        ),
    )
}


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
