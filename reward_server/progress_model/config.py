"""Config schema of ``striata train-reward``: data set, model and training sections (unknown keys fail)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_MISMATCHED_TEXTS = (
    "open the top drawer",
    "push the green button",
    "move the gripper to the red target",
    "stack the blue block on the yellow block",
    "close the cabinet door",
    "wipe the table with the sponge",
    "turn the faucet handle",
    "pour water into the cup",
    "fold the towel",
    "walk forward and wave the left arm",
)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


CameraName = Literal["front", "wrist", "workspace", "side"]


class PolicyMix(StrictModel):
    """How many envs of every rollout round run each kind of policy (the rest of the negatives are texts)."""

    scripted: int = Field(default=6, ge=0, description="scripted IK pick with action noise: successes")
    drop: int = Field(
        default=2, ge=0, description="scripted pick that opens the gripper mid-lift: regression"
    )
    put_down: int = Field(default=2, ge=0, description="lifts, lowers the cube and lets go: regression")
    miss: int = Field(default=2, ge=0, description="grasps beside the cube: failure")
    stall: int = Field(default=2, ge=0, description="scripted, then frozen from a random step: stall")
    random: int = Field(default=2, ge=0, description="uniform random actions: failure")
    learned: int = Field(
        default=0, ge=0, description="a policy RL trained (dataset.learned_policies), with action noise"
    )

    @property
    def total(self) -> int:
        return self.scripted + self.drop + self.put_down + self.miss + self.stall + self.random + self.learned


class DatasetConfig(StrictModel):
    task: Literal["panda_pick", "so101_pick"] = Field(
        default="panda_pick", description="a task with a progress scene (striata.envs.registry)"
    )
    task_text: str = "pick up the cube and lift it"
    paraphrases: list[str] = Field(
        default_factory=lambda: ["lift the cube", "grasp the cube and raise it off the floor"],
        description="other wordings of the task, used for training rows (same labels)",
    )
    mismatched_texts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MISMATCHED_TEXTS),
        description="other tasks' texts: frames paired with them are labelled progress 0, success 0",
    )
    mismatched_per_frame: int = Field(default=1, ge=0, description="mismatched-text rows added per frame")
    camera: CameraName | list[CameraName] = Field(
        default="workspace",
        description="workspace: the scene camera framed on the pick area (the cube spans many pixels); "
        "a list is several views of each state (e.g. [workspace, side]), each image_size^2",
    )
    image_size: int = Field(default=80, ge=16, le=256)
    shadows: bool = Field(
        default=False,
        description="render with shadows and reflections, as BatchedEnv.render does by default (4x slower)",
    )
    policies: PolicyMix = Field(default_factory=PolicyMix)
    episode_steps: int = Field(default=45, ge=2, description="control steps per rollout episode (10 Hz)")
    frame_every: int = Field(default=3, ge=1, description="render one frame every this many steps")
    boundary_frames: bool = Field(
        default=True,
        description="also render, between those, the states within 1 cm of the success lift and those "
        "where success begins or ends: a training actor labels an episode's first success, at the boundary",
    )
    train_rounds: int = Field(
        default=4, ge=1, description="rollout rounds (one episode per env) for training"
    )
    eval_rounds: int = Field(default=2, ge=1, description="held-out rollout rounds, on other seeds")
    seed: int = 0
    eval_seed: int = Field(default=10_000, description="first seed of the held-out rounds")
    noise: tuple[float, float] = Field(default=(0.05, 0.5), description="scripted action-noise range")
    learned_policies: list[Path] = Field(
        default_factory=list,
        description="ONNX policies from `striata export` of the task's runs; round r uses file r % len",
    )
    folder: Path = Field(default=Path("runs/reward_data/panda_pick"), description="where NPZ shards go")

    @property
    def views(self) -> tuple[str, ...]:
        """The cameras of every state, in the order their frames sit side by side in the data set."""
        return (self.camera,) if isinstance(self.camera, str) else tuple(self.camera)

    @model_validator(mode="after")
    def _check(self) -> DatasetConfig:
        if not self.views or len(set(self.views)) != len(self.views):
            raise ValueError(f"camera: a list must name distinct cameras, got {self.camera}")
        if self.policies.total < 1:
            raise ValueError("policies: at least one env must run a policy")
        if self.policies.learned and not self.learned_policies:
            raise ValueError("policies.learned > 0 needs dataset.learned_policies (ONNX files)")
        if self.mismatched_per_frame and not self.mismatched_texts:
            raise ValueError("mismatched_texts: empty, but mismatched_per_frame > 0")
        if self.task_text in self.mismatched_texts:
            raise ValueError(f"mismatched_texts: contains the task text {self.task_text!r}")
        train = range(self.seed, self.seed + self.train_rounds)
        held_out = range(self.eval_seed, self.eval_seed + self.eval_rounds)
        if set(train) & set(held_out):
            # The same seed is the same rollouts: held-out frames would be trained on.
            raise ValueError(f"seeds: train rounds {train} overlap the held-out rounds {held_out}")
        return self


class ModelConfig(StrictModel):
    channels: tuple[int, ...] = Field(default=(16, 32, 64, 64), min_length=1)
    hidden: int = Field(default=256, ge=8)
    text_dim: int = Field(default=384, ge=1, description="size of the sentence embedding")
    use_reference: bool = Field(
        default=False, description="also feed the episode's first frame (channels stacked with the frame)"
    )
    max_batch: int = Field(default=64, ge=1, description="most inputs one backend score call takes")


class TrainConfig(StrictModel):
    epochs: int = Field(default=15, ge=1)
    batch_size: int = Field(default=32, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    success_weight: float = Field(default=1.0, ge=0, description="weight of the success BCE in the loss")
    shift_pixels: int = Field(default=3, ge=0, description="random-shift augmentation (pixels, per frame)")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads; default: torch's")
    seed: int = 0


class RewardModelConfig(StrictModel):
    """What ``striata train-reward`` reads from its YAML."""

    name: str = "progress_panda_pick"
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    out: Path = Field(default=Path("runs/reward_model"), description="checkpoint folder")
