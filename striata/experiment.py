"""The experiment config: one YAML per experiment (configs/*.yaml), validated as a whole.

Sections: the task and its overrides, the algorithm and its config, how many Ray actors with how
many envs and which Ray resources, where the learner runs, how long to train, and when to
evaluate and checkpoint. Unknown keys, wrong types and unknown tasks are errors that name the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from envs.registry import TASKS, make_config
from envs.tasks.base import TaskConfig
from learner.config import PPOConfig, SACConfig
from striata.errors import ConfigFileError, format_validation_error


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ActorsConfig(Section):
    num_actors: int = Field(default=2, ge=1)
    envs_per_actor: int = Field(default=16, ge=1)
    chunk_length: int = Field(default=32, ge=1, description="env steps per trajectory chunk")
    num_cpus: float = Field(default=1.0, gt=0, description="Ray CPUs reserved per actor")
    resources: dict[str, float] = Field(default_factory=dict, description="Ray custom resources per actor")
    physics_threads: int = Field(default=1, ge=1, description="MuJoCo threads inside each actor")


class LearnerConfig(Section):
    """Where the learner runs and, for off-policy learning, how much it learns per env step."""

    num_gpus: float = Field(
        default=0.0, ge=0, description="GPUs to reserve; >0 places the learner on a GPU node"
    )
    chunk_timeout_s: float = Field(default=60.0, gt=0, description="longest wait for any actor's chunk")
    replay_capacity: int = Field(default=1_000_000, ge=1, description="SAC: online replay size (transitions)")
    learning_starts: int = Field(default=5_000, ge=0, description="SAC: transitions before the first update")
    updates_per_env_step: float = Field(
        default=0.25,
        gt=0,
        description="SAC: update() calls per transition received (each runs utd_ratio critic steps)",
    )
    ppo_steps_per_update: int = Field(
        default=0, ge=0, description="PPO: transitions per update; 0 = one chunk from every actor"
    )


class EvalConfig(Section):
    every_s: float = Field(default=60.0, gt=0)
    num_envs: int = Field(default=16, ge=1)
    episodes: int = Field(default=32, ge=1)


class ExperimentConfig(Section):
    name: str = "experiment"
    task: str
    task_config: dict[str, Any] = Field(default_factory=dict, description="overrides of the task's config")
    algo: Literal["ppo", "sac"]
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    sac: SACConfig = Field(default_factory=SACConfig)
    actors: ActorsConfig = Field(default_factory=ActorsConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    total_env_steps: int = Field(default=1_000_000, ge=1)
    max_minutes: float | None = Field(default=None, gt=0, description="stop after this wall time")
    checkpoint_every_s: float = Field(default=120.0, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _task_exists(self) -> ExperimentConfig:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; allowed: {', '.join(TASKS)}")
        return self

    def task_settings(self) -> TaskConfig:
        """The task's own config with ``task_config`` applied (raises ConfigFileError naming the key)."""
        try:
            return make_config(self.task, self.task_config)
        except ValidationError as exc:
            model = TASKS[self.task].config_type()
            raise ConfigFileError(format_validation_error(exc, model, prefix="config: task_config")) from None


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML experiment and apply ``--set`` overrides (nested dicts) on top."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    config = ExperimentConfig.model_validate(merge_overrides(data, overrides or {}))
    config.task_settings()
    return config


def merge_overrides(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, section by section."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out
