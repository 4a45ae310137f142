"""Config schemas of the learner: ``NetworkConfig``, ``PPOConfig``, ``SACConfig`` (and ``SymmetryConfig``).

Every model forbids unknown keys, so a typo in a YAML file fails with the key's name. Defaults:

- ``PPOConfig`` follows rsl_rl's G1 motion-tracking runner (BeyondMimic / mjlab): actor and critic
  [512, 256, 128] ELU, Adam lr 1e-3 with the KL-adaptive schedule (desired KL 0.01), clip 0.2,
  5 epochs x 4 minibatches, gamma 0.99, lambda 0.95, entropy 0.005, grad norm 1.0, initial std 1.0,
  empirical observation normalisation on.
- ``SACConfig`` follows RLPD / HIL-SERL: [256, 256] networks, critic ensemble with LayerNorm,
  lr 3e-4, tau 0.005, gamma 0.97, batch 256 drawn 50/50 from online and demo data, UTD 2,
  initial temperature 0.1 (between HIL-SERL's 0.01 and RLPD's 1.0), target entropy -|A|.
  RLPD proper: ``ensemble_size=10, num_min_qs=2``; HIL-SERL's own runs: ``backup_entropy=False``.
  Image observations (``cameras``, off by default): DrQ's recipe, see ``striata.learner.encoders``:
  one conv encoder per camera (``EncoderConfig``: four 3x3 stride-2 convs of 32 channels, then 50
  features through LayerNorm and tanh), random-shift augmentation by ``image_pad`` = 4 pixels.

Replay memory: a transition stores ``obs`` and ``next_obs`` in full, so it costs
``2 * (4 * state_dim + sum over cameras of H * W * C) + 4 * action_dim + 6`` bytes (frames as uint8,
floats as float32). One 64x64 RGB camera with Panda reach's 23-wide state: 24,782 bytes, so 100,000
transitions take 2.5 GB; the learner refuses a ``learner.replay_capacity`` whose buffer would exceed
``sac.replay_memory_gb``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Activation = Literal["elu", "relu", "tanh", "silu", "gelu", "leaky_relu"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NetworkConfig(StrictModel):
    """An MLP: hidden layer sizes, activation, and LayerNorm after each hidden linear layer."""

    hidden: list[int] = Field(default_factory=lambda: [256, 256], min_length=1)
    activation: Activation = "relu"
    layer_norm: bool = False

    @model_validator(mode="after")
    def _positive(self) -> NetworkConfig:
        if any(size < 1 for size in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
        return self


def _ppo_net() -> NetworkConfig:
    return NetworkConfig(hidden=[512, 256, 128], activation="elu")


class SymmetryConfig(StrictModel):
    """Left/right symmetry for PPO (rsl_rl's symmetry options).

    ``mirror`` names one of the task's mirror maps (``striata.envs.registry.TaskEntry.symmetry``, e.g.
    ``"g1_tracking"``), which the composition root hands to the learner.
    ``data_augmentation`` adds the mirrored copy of every minibatch sample to the PPO losses;
    ``mirror_loss`` adds ``mirror_loss_coef * ||mu(mirror(o)) - mirror(mu(o))||^2``.
    """

    mirror: str | None = None
    data_augmentation: bool = False
    mirror_loss: bool = False
    mirror_loss_coef: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _needs_mirror(self) -> SymmetryConfig:
        if (self.data_augmentation or self.mirror_loss) and self.mirror is None:
            raise ValueError("symmetry.data_augmentation / mirror_loss need symmetry.mirror to name a map")
        return self


class PPOConfig(StrictModel):
    actor: NetworkConfig = Field(default_factory=_ppo_net)
    critic: NetworkConfig = Field(default_factory=_ppo_net)
    init_noise_std: float = Field(default=1.0, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    schedule: Literal["adaptive", "fixed"] = "adaptive"
    desired_kl: float = Field(default=0.01, gt=0)
    min_learning_rate: float = Field(default=1e-5, gt=0)
    max_learning_rate: float = Field(default=1e-2, gt=0)
    clip_param: float = Field(default=0.2, gt=0)
    value_loss_coef: float = Field(default=1.0, ge=0)
    use_clipped_value_loss: bool = True
    entropy_coef: float = Field(default=0.005, ge=0)
    num_learning_epochs: int = Field(default=5, ge=1)
    num_mini_batches: int = Field(default=4, ge=1)
    gamma: float = Field(default=0.99, ge=0, le=1)
    lam: float = Field(default=0.95, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    normalize_advantage: bool = True
    empirical_normalization: bool = True
    normalizer_clip: float = Field(default=5.0, gt=0)
    recompute_values: bool = Field(
        default=True,
        description="recompute V(obs) with the learner's critic before GAE (actors' values may lag); "
        "False uses the chunk's 'value' as rsl_rl does",
    )
    actor_obs_key: str = Field(default="policy", description="key of the actor's input when obs is a dict")
    critic_obs_key: str = Field(default="critic", description="key of the critic's input when obs is a dict")
    symmetry: SymmetryConfig = Field(default_factory=SymmetryConfig)
    action_prior: str | None = Field(
        default=None,
        description="one of the task's action priors (e.g. g1_tracking's 'reference_joint_pos'), added to "
        "the policy's mean: the network learns a correction to it (striata.envs.action_prior)",
    )
    init_policy: str | None = Field(
        default=None,
        description="a new run starts from this exported policy (striata export): its actor, observation "
        "normaliser and action prior; the critic starts untrained (striata.learner.warm_start)",
    )
    critic_warmup_updates: int = Field(
        default=0,
        ge=0,
        description="the first updates train the critic alone (a warm-started actor waits for values to "
        "judge its actions by)",
    )
    device: str = Field(default="auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda:0'")
    mixed_precision: Literal["off", "bf16"] = Field(
        default="off",
        description="bf16 autocast of the minibatch passes (CUDA); off: float32 losses and KL",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _lr_bounds(self) -> PPOConfig:
        if self.min_learning_rate > self.max_learning_rate:
            raise ValueError("min_learning_rate must be <= max_learning_rate")
        return self


def _sac_critic() -> NetworkConfig:
    return NetworkConfig(hidden=[256, 256], activation="relu", layer_norm=True)


class LearnerSetupError(ValueError):
    """A learner config this env's observations cannot serve (a camera it lacks, a replay too big for the
    memory budget): one line naming the setting, its value and what the env has."""


# Names a camera may not take: they are the exported ONNX policy's other input and its output.
_RESERVED_INPUT_NAMES = ("obs", "actions")


class EncoderConfig(StrictModel):
    """One camera's conv encoder (DrQ / SERL): a 3x3 conv of ``channels[i]`` outputs, stride 2 and ReLU
    per entry, then a linear projection to ``feature_dim`` with LayerNorm and tanh."""

    channels: list[int] = Field(default_factory=lambda: [32, 32, 32, 32], min_length=1)
    feature_dim: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _positive(self) -> EncoderConfig:
        if any(size < 1 for size in self.channels):
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        return self


class SACConfig(StrictModel):
    actor: NetworkConfig = Field(default_factory=NetworkConfig)
    critic: NetworkConfig = Field(default_factory=_sac_critic)
    actor_lr: float = Field(default=3e-4, gt=0)
    critic_lr: float = Field(default=3e-4, gt=0)
    temperature_lr: float = Field(default=3e-4, gt=0)
    init_temperature: float = Field(default=0.1, gt=0, description="RLPD starts at 1.0, HIL-SERL at 0.01")
    target_entropy: float | None = Field(default=None, description="None: -action_dim")
    backup_entropy: bool = Field(default=True, description="subtract alpha * log pi(a'|s') in the target")
    tau: float = Field(default=0.005, gt=0, le=1)
    gamma: float = Field(default=0.97, ge=0, le=1)
    batch_size: int = Field(default=256, ge=2)
    utd_ratio: int = Field(default=2, ge=1, description="critic updates per update() call (actor: one)")
    ensemble_size: int = Field(default=2, ge=1)
    num_min_qs: int = Field(default=2, ge=1, description="size of the random subset of target critics (min)")
    demo_ratio: float = Field(default=0.5, ge=0, lt=1, description="share of each batch drawn from demos")
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    max_grad_norm: float | None = Field(default=None, gt=0)
    obs_key: str = Field(default="state", description="key of the networks' input when obs is a dict")
    cameras: list[str] = Field(
        default_factory=list,
        description="observation keys of uint8 [N, H, W, C] camera frames the networks also see (an encoder "
        "each, features beside the state vector); empty: state only",
    )
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    image_pad: int = Field(
        default=4, ge=0, description="random-shift augmentation (DrQ): pad frames by this many pixels, crop "
        "back at a random offset; 0: off",
    )  # fmt: skip
    replay_memory_gb: float = Field(
        default=8.0, gt=0, description="largest online replay buffer in GB (1e9 bytes), checked at startup "
        "from the bytes a transition costs",
    )  # fmt: skip
    device: str = "auto"
    seed: int = 0

    @field_validator("cameras")
    @classmethod
    def _camera_names(cls, cameras: list[str]) -> list[str]:
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must be distinct, got {cameras}")
        for name in cameras:
            # Camera names name encoder modules and ONNX inputs: identifiers, and not the other inputs.
            if not name.isidentifier() or name in _RESERVED_INPUT_NAMES:
                raise ValueError(
                    f"camera {name!r} must be an identifier other than {', '.join(_RESERVED_INPUT_NAMES)}"
                )
        return cameras

    @model_validator(mode="after")
    def _subset(self) -> SACConfig:
        if self.obs_key in self.cameras:
            raise ValueError(f"obs_key {self.obs_key!r} is the state vector; it cannot be one of cameras")
        if self.num_min_qs > self.ensemble_size:
            raise ValueError(f"num_min_qs {self.num_min_qs} must be <= ensemble_size {self.ensemble_size}")
        if self.log_std_min >= self.log_std_max:
            raise ValueError("log_std_min must be < log_std_max")
        return self
