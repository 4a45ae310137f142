"""The experiment config: one YAML per experiment (configs/*.yaml), validated as a whole.

Sections: the task and its overrides, the algorithm and its config, how many Ray actors with how
many envs and which Ray resources, where the learner runs, how long to train, when to evaluate and
checkpoint, the reward model and human-in-the-loop ports (both off by default). Unknown keys, wrong
types and unknown tasks are errors that name the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from striata.common.intervention_port import HilConfig
from striata.envs.action_prior import ActionPrior
from striata.envs.registry import TASKS, UnknownActionPriorError, UnknownSymmetryError, make_config
from striata.envs.symmetry import Symmetry
from striata.envs.tasks.base import TaskConfig
from striata.errors import ConfigFileError, format_validation_error
from striata.learner.config import PPOConfig, SACConfig
from striata.learner.relabel import Shaping
from striata.reward_server.config import RewardServerConfig, TorchBackendConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ActorsConfig(Section):
    num_actors: int = Field(default=2, ge=1)
    envs_per_actor: int = Field(default=16, ge=1)
    chunk_length: int = Field(default=32, ge=1, description="env steps per trajectory chunk")
    num_cpus: float = Field(default=1.0, gt=0, description="Ray CPUs reserved per actor")
    resources: dict[str, float] = Field(default_factory=dict, description="Ray custom resources per actor")
    physics_threads: int = Field(default=1, ge=1, description="MuJoCo threads inside each actor")
    in_flight: int = Field(
        default=2,
        ge=1,
        le=4,
        description="rollout calls queued per actor: 2 keeps actors stepping while the learner updates "
        "(PPO's chunks then act with weights 2-3 updates old); 1 = synchronous PPO (policy lag 0)",
    )


class LearnerConfig(Section):
    """Where the learner runs and, for off-policy learning, how much it learns per env step."""

    num_gpus: float = Field(
        default=0.0, ge=0, description="GPUs to reserve; >0 places the learner on a GPU node"
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources of the learner's node (striata launch)"
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
    torch_threads: int = Field(
        default=1,
        ge=1,
        description="CPU threads of the learner's torch ops; 1 leaves the other cores to the actors (beside "
        "busy actors, more threads cost CPU-seconds, not time)",
    )


class EvalConfig(Section):
    every_s: float = Field(default=60.0, gt=0)
    every_env_steps: int | None = Field(
        default=None, ge=1, description="also evaluate every this many env steps (step-exact learning curves)"
    )
    num_envs: int = Field(default=16, ge=1)
    episodes: int = Field(default=32, ge=1)
    stop_at_success: float | None = Field(
        default=None, gt=0, le=1, description="end the run once an evaluation reaches this success rate"
    )


class RewardModelSection(Section, Shaping):
    """Rewards from a reward server: potential-based shaping on its progress, its success as a bonus.

    ``r = env_reward_weight * r_env + shaping_lambda * (gamma * phi(s') - phi(s)) + success_reward *
    [done_prob > success_threshold]`` with phi the model's progress (see learner/relabel.py).
    """

    enabled: bool = False
    server: RewardServerConfig | None = Field(
        default=None, description="start a reward server with this config (serve-reward's schema)"
    )
    endpoint: str | None = Field(
        default=None, description="or connect to a running one, e.g. tcp://host:5790"
    )
    placement: Literal["process", "ray"] = Field(
        default="process", description="a started server runs as a subprocess here, or as a Ray actor"
    )
    num_gpus: float = Field(default=0.0, ge=0, description="ray placement: GPUs for the server")
    resources: dict[str, float] = Field(default_factory=dict, description="ray placement: custom resources")
    task_text: str = Field(default="", description="the instruction the model scores frames against")
    camera: str | list[str] = Field(
        default="front",
        description="camera name the model reads (the request's key); a list sends one frame of each",
    )
    render_camera: str | list[str] | None = Field(
        default=None, description="env camera (one per camera) to render; default: camera"
    )
    height: int = Field(default=96, ge=8)
    width: int = Field(default=96, ge=8)
    shadows: bool = Field(default=True, description="render shadows and reflections (match the model's data)")
    every_k: int = Field(default=1, ge=1, description="label every k-th step (and every episode's end)")
    deadline_ms: float = Field(default=2000.0, gt=0, description="per-request deadline at the server")
    label_timeout_s: float = Field(
        default=10.0, gt=0, description="learner: longest wait for a chunk's labels before dropping/masking"
    )
    audit_every_s: float = Field(
        default=30.0, gt=0, description="how often reward_model/* audit figures go out"
    )

    @property
    def cameras(self) -> tuple[str, ...]:
        return _names(self.camera)

    @property
    def render_cameras(self) -> tuple[str, ...] | None:
        return None if self.render_camera is None else _names(self.render_camera)

    @model_validator(mode="after")
    def _cameras(self) -> RewardModelSection:
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"reward_model.camera: a list must name distinct cameras, got {self.camera}")
        if self.render_cameras is not None and len(self.render_cameras) != len(self.cameras):
            raise ValueError(
                f"reward_model.render_camera: {self.render_camera} does not name one env camera for each "
                f"of camera {self.camera}"
            )
        return self

    @model_validator(mode="after")
    def _source(self) -> RewardModelSection:
        if self.enabled:
            if (self.server is None) == (self.endpoint is None):
                raise ValueError("give exactly one of reward_model.server and reward_model.endpoint")
            if not self.task_text.strip():
                raise ValueError("reward_model.task_text: empty; the model needs the task's instruction")
        return self


def _names(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


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
    reward_model: RewardModelSection = Field(default_factory=RewardModelSection)
    hil: HilConfig = Field(default_factory=HilConfig, description="human-in-the-loop intervention ports")
    demos: list[str] = Field(
        default_factory=list, description="SAC/RLPD demonstrations: session folders or .npz buffers (--demos)"
    )
    total_env_steps: int = Field(default=1_000_000, ge=1)
    max_minutes: float | None = Field(default=None, gt=0, description="stop after this wall time")
    checkpoint_every_s: float = Field(default=120.0, gt=0)
    seed: int = 0
    runner: Literal["actors", "device"] = Field(
        default="actors",
        description="actors: Ray actors step the envs and send chunks to the learner; device: g1_tracking "
        "on MuJoCo Warp and PPO on one device in this process, no copies through the host",
    )

    @model_validator(mode="after")
    def _task_exists(self) -> ExperimentConfig:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; allowed: {', '.join(TASKS)}")
        return self

    @model_validator(mode="after")
    def _device_runner(self) -> ExperimentConfig:
        if self.runner == "device":
            backend = self.task_config.get("backend", "cpu")
            if (self.task, self.algo, backend) != ("g1_tracking", "ppo", "warp"):
                raise ValueError(
                    "runner: 'device' trains g1_tracking with ppo on task_config.backend 'warp'; "
                    f"got {self.task} / {self.algo} / {backend!r}"
                )
            if self.ppo.init_policy is not None:
                raise ValueError("ppo.init_policy: the device runner does not warm-start; use runner: actors")
        return self

    def ppo_symmetry(self) -> Symmetry | None:
        """The task's mirror maps that ``ppo.symmetry.mirror`` names, for the PPO learner (None: none named;
        ConfigFileError naming the key, the value and the task's names)."""
        name = self.ppo.symmetry.mirror
        if name is None:
            return None
        try:
            return TASKS[self.task].symmetry(name)
        except UnknownSymmetryError as exc:
            raise ConfigFileError(f"config: ppo.symmetry.mirror: {exc}") from None

    def ppo_action_prior(self) -> ActionPrior | None:
        """The task's action prior that ``ppo.action_prior`` names, for the PPO learner (None: none named;
        ConfigFileError naming the key, the value and the task's names)."""
        name = self.ppo.action_prior
        if name is None:
            return None
        try:
            return TASKS[self.task].action_prior(name)
        except UnknownActionPriorError as exc:
            raise ConfigFileError(f"config: ppo.action_prior: {exc}") from None

    def task_settings(self) -> TaskConfig:
        """The task's own config with ``task_config`` applied (raises ConfigFileError naming the key)."""
        try:
            return make_config(self.task, self.task_config)
        except ValidationError as exc:
            model = TASKS[self.task].config_type()
            raise ConfigFileError(format_validation_error(exc, model, prefix="config: task_config")) from None


def check_reward_model_files(config: ExperimentConfig) -> None:
    """A reward server to start with a checkpoint that is not there fails here, naming what makes it."""
    reward = config.reward_model
    if (
        not reward.enabled
        or reward.server is None
        or not isinstance(reward.server.backend, TorchBackendConfig)
    ):
        return
    checkpoint = reward.server.backend.checkpoint
    for path in checkpoint if isinstance(checkpoint, list) else [checkpoint]:
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(
                f"reward_model.server.backend.checkpoint: {path} does not exist; make it with "
                f"`striata train-reward --config configs/reward_model_{config.task}.yaml`"
            )


def check_cameras(config: ExperimentConfig) -> None:
    """The cameras that hil and reward_model name are cameras of the task (ConfigFileError naming the key)."""
    reward = config.reward_model
    named = {}
    if config.hil.enabled and config.hil.camera is not None:
        named["hil.camera"] = [config.hil.camera]
    if reward.enabled:
        field = "render_camera" if reward.render_camera is not None else "camera"
        named[f"reward_model.{field}"] = list(reward.render_cameras or reward.cameras)
    if not named:
        return
    from striata.envs import make_env  # compiles the task's model: only when a camera is named

    env = make_env(config.task, num_envs=1, config=config.task_settings())
    cameras = env.camera_names
    env.close()
    for key, names in named.items():
        missing = [name for name in names if name not in cameras]
        if missing:
            raise ConfigFileError(
                f"config: {key}: {', '.join(map(repr, missing))} is not a camera of {config.task}; "
                f"cameras: {cameras}"
            )


def check_experiment(config: ExperimentConfig) -> None:
    """What the schema cannot check alone: the task's config and mirror maps, model files, camera names."""
    config.task_settings()
    if config.algo == "ppo":
        config.ppo_symmetry()
        config.ppo_action_prior()
    check_reward_model_files(config)
    check_cameras(config)


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML experiment and apply ``--set`` overrides (nested dicts) on top."""
    config = ExperimentConfig.model_validate(merge_overrides(read_yaml_mapping(path), overrides or {}))
    check_experiment(config)
    return config


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A config file's top-level mapping; a missing file, bad YAML or a non-mapping is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def merge_overrides(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, section by section."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out
