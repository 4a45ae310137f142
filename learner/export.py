"""ONNX export of a trained policy: the policy artifact contract (DESIGN.md) on the writing side.

``export_policy(algo, metadata, path, recorded_obs=...)`` writes ``path`` (ONNX, opset 18): input
``obs`` float32 [B, obs_dim] of raw observations, output ``actions`` float32 [B, action_dim]. PPO's
``GaussianActorCritic.forward`` (normalisers inside, mean action) is exported as is; SAC exports
its deterministic actor, ``tanh(mean)``. ``PolicyMetadata`` travels in the ONNX metadata_props, one
key per field with a JSON value (``read_metadata`` reads it back), so the file alone tells a
controller the joint order, gains, rates and observation layout it was trained with. A tracking
policy's reference motion goes in a side file ``<stem>.motion.npz`` named, with its SHA-256, in
the metadata (``load_motion`` checks it). The export ends with a parity check: the largest
|torch - onnxruntime| difference on random and on recorded observations.

A SAC policy that sees cameras (``sac.cameras``) has one more input per camera, named after the camera
(``SACConfig`` keeps those names apart from ``obs`` and ``actions``), in ``sac.cameras`` order after
``obs``: uint8 [B, H, W, C] frames (NHWC, RGB), exactly as the env renders them; the conv encoder,
its ``x / 255 - 0.5`` scaling and the NHWC -> NCHW transpose are inside the graph. The metadata then
says so: ``cameras`` (names in input order), ``camera_sizes`` ([H, W, C] each), ``camera_dtype``
("uint8") and ``camera_layout`` ("NHWC"); a state-only policy's file has none of these keys (they
read back as None). ``policy_inputs(algo, obs)`` picks from an env observation what the exported policy
reads (the ``obs`` array, or a dict of ``obs`` and the frames keyed by input name: an onnxruntime
feed), ``stack_inputs`` joins steps of them into the ``recorded_obs`` of ``export_policy``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # torch is imported where a policy is exported, not where one is only read
    from torch import nn

METADATA_FORMAT = 1
PARITY_TOLERANCE = 1e-5
MOTION_ARRAYS = ("joint_pos", "joint_vel", "anchor_pos_w", "anchor_quat_w")
# The clip itself, in the GMR layout ``envs.motion.load_motion`` reads (root_rot x, y, z, w): with these
# the side file is a clip a tracking env can be built on (``striata eval``).
CLIP_ARRAYS = ("fps", "root_pos", "root_rot", "dof_pos")
CAMERA_FIELDS = ("cameras", "camera_sizes", "camera_dtype", "camera_layout")


class PolicyArtifactError(ValueError):
    """A policy file that is missing pieces, or does not match its side files."""


class PolicyMetadata(BaseModel):
    """What a controller needs to run the policy; arrays in ``joint_names`` order (the policy's)."""

    model_config = ConfigDict(extra="forbid")

    format: int = METADATA_FORMAT
    task: str
    robot: str
    algorithm: str
    # joint_position: target = default + scale * action; ee_delta: end-effector moves (Panda);
    # joint_delta_gripper_target: arm targets move by scale * action from the last targets, the gripper's
    # command in [-1, 1] is a target opening between gripper_open and its joint's lower limit (SO-101).
    action_type: Literal["joint_position", "ee_delta", "joint_delta_gripper_target"]
    joint_names: list[str]
    default_joint_pos: list[float]
    action_scale: list[float]
    kp: list[float]
    kd: list[float]
    standby_kp: list[float] | None = None
    standby_kd: list[float] | None = None
    effort_limit: list[float] | None = None
    joint_limits: list[list[float]] | None = None  # [lower, upper] per joint: where targets are clipped
    gripper_open: float | None = None  # joint_delta_gripper_target: the gripper's target at command -1
    control_dt: float
    # The physics step the policy trained at (s): `striata eval` simulates at it. A tracking policy is
    # tuned to its step's contact and PD dynamics (one trained at 5 ms fell at 2 ms). None: not recorded.
    physics_dt: float | None = None
    # G1 tracking: whether training clipped joint targets into the bridge's soft limits (as deploy does);
    # None: exported before it did, so `striata eval` runs the env without clipping, as it trained.
    clip_targets: bool | None = None
    observation_names: list[str]
    observation_sizes: list[int]
    obs_dim: int
    action_dim: int
    policy_version: int
    config_hash: str
    anchor_body: str | None = None
    motion_file: str | None = None
    motion_sha256: str | None = None
    motion_fps: float | None = None
    motion_source: str | None = None  # the clip the policy was trained on, as its config named it
    motion_segment_s: list[float] | None = None  # [start, end] seconds of that clip the side file holds
    cameras: list[str] | None = None
    camera_sizes: list[list[int]] | None = None
    camera_dtype: Literal["uint8"] | None = None
    camera_layout: Literal["NHWC"] | None = None

    def to_props(self) -> dict[str, str]:
        # A state-only policy's file carries no camera keys at all: it is the file it was before cameras.
        unused = {key for key in CAMERA_FIELDS if getattr(self, key) is None}
        return {key: json.dumps(value) for key, value in self.model_dump(exclude=unused).items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> PolicyMetadata:
        fields = set(cls.model_fields)
        missing = sorted(k for k in ("format", "joint_names", "observation_names") if k not in props)
        if missing:
            raise PolicyArtifactError(f"ONNX metadata lacks {missing}: not a striata policy export")
        return cls.model_validate({k: json.loads(v) for k, v in props.items() if k in fields})


@dataclass
class ParityReport:
    random_max_abs_diff: float
    recorded_max_abs_diff: float | None
    recorded_samples: int

    @property
    def max_abs_diff(self) -> float:
        return max(self.random_max_abs_diff, self.recorded_max_abs_diff or 0.0)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_TOLERANCE


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of a resolved config (canonical JSON), to tie a policy file to its run."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


PolicyInputs = np.ndarray | dict[str, np.ndarray]  # ``obs``, or ``obs`` and frames by ONNX input name


def policy_cameras(algo: Any) -> dict[str, tuple[int, int, int]]:
    """The exported policy's camera inputs: (H, W, C) by name, in input order; empty for state-only."""
    encoder = getattr(algo, "encoder", None)
    if encoder is None:
        return {}
    return {name: encoder.encoders[name].shape for name in encoder.cameras}


def policy_inputs(algo: Any, obs: Any) -> PolicyInputs:
    """What the exported policy of ``algo`` reads from an env observation ``obs`` (batched)."""
    from striata.learner.ppo import PPO

    key = algo.cfg.actor_obs_key if isinstance(algo, PPO) else algo.cfg.obs_key
    state = obs[key] if isinstance(obs, dict) else obs
    cameras = policy_cameras(algo)
    if not cameras:
        return state
    return {"obs": state, **{name: obs[name] for name in cameras}}


def stack_inputs(steps: list[PolicyInputs]) -> PolicyInputs:
    """``policy_inputs`` of several steps joined along the batch axis (recorded observations)."""
    first = steps[0]
    if isinstance(first, dict):
        return {key: np.concatenate([step[key] for step in steps]) for key in first}  # type: ignore[index]
    return np.concatenate(steps)


def policy_module(algo: Any) -> nn.Module:
    """The deployable policy of a PPO or SAC learner, on the CPU in eval mode: obs (, frames) -> actions."""
    import copy

    import torch

    from striata.learner.encoders import frames_to_float
    from striata.learner.ppo import PPO
    from striata.learner.sac import SAC

    class DeterministicActor(torch.nn.Module):
        """SAC's actor without sampling: tanh of the mean."""

        def __init__(self, actor: torch.nn.Module) -> None:
            super().__init__()
            self.actor = actor

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            mean, _ = self.actor.net(obs).chunk(2, dim=-1)
            return torch.tanh(mean)

    class DeterministicPixelActor(torch.nn.Module):
        """SAC's actor on its encoder's features of uint8 NHWC frames (one argument per camera)."""

        def __init__(self, encoder: torch.nn.Module, actor: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder
            self.actor = DeterministicActor(actor)

        def forward(self, obs: torch.Tensor, *frames: torch.Tensor) -> torch.Tensor:
            views = {name: frames_to_float(f) for name, f in zip(self.encoder.cameras, frames, strict=True)}
            return self.actor(self.encoder(obs, views))

    if isinstance(algo, PPO):
        module = copy.deepcopy(algo.model)
    elif isinstance(algo, SAC) and algo.encoder is not None:
        module = DeterministicPixelActor(copy.deepcopy(algo.encoder), copy.deepcopy(algo.actor))
    elif isinstance(algo, SAC):
        module = DeterministicActor(copy.deepcopy(algo.actor))
    else:
        raise TypeError(f"cannot export a {type(algo).__name__}; expected PPO or SAC")
    return module.cpu().eval()


def motion_path(policy_path: str | Path) -> Path:
    path = Path(policy_path)
    return path.with_name(f"{path.stem}.motion.npz")


def export_policy(
    algo: Any,
    metadata: PolicyMetadata,
    path: str | Path,
    recorded_obs: PolicyInputs | None = None,
    motion: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> ParityReport:
    """Write the ONNX policy (+ motion side file) and return the torch/onnxruntime parity report."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = policy_module(algo)
    if motion is not None:
        missing = [k for k in MOTION_ARRAYS if k not in motion]
        if missing:
            raise PolicyArtifactError(f"motion lacks arrays {missing}")
        side = motion_path(path)
        kept = [k for k in (*MOTION_ARRAYS, *CLIP_ARRAYS) if k in motion]
        np.savez(side, **{k: np.asarray(motion[k], dtype=np.float64) for k in kept})
        metadata = metadata.model_copy(
            update={"motion_file": side.name, "motion_sha256": hashlib.sha256(side.read_bytes()).hexdigest()}
        )
    cameras = policy_cameras(algo)
    if cameras:
        metadata = metadata.model_copy(
            update={
                "cameras": list(cameras),
                "camera_sizes": [list(shape) for shape in cameras.values()],
                "camera_dtype": "uint8",
                "camera_layout": "NHWC",
            }
        )
    batch = torch.export.Dim("batch")
    inputs = {"obs": torch.zeros(2, metadata.obs_dim)}
    inputs.update({name: torch.zeros(2, *shape, dtype=torch.uint8) for name, shape in cameras.items()})
    # The exporter logs a warning per optional torchvision op it cannot register; none is used here.
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # With cameras all inputs share the batch axis; the exporter says it keeps one name for it.
            warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
            torch.onnx.export(
                module,
                tuple(inputs.values()),
                str(path),
                input_names=list(inputs),
                output_names=["actions"],
                # forward(obs, *frames): the frames' shapes go as one tuple, the varargs' structure.
                dynamic_shapes=({0: batch}, tuple({0: batch} for _ in cameras)) if cameras else ({0: batch},),
                opset_version=18,
                dynamo=True,
                external_data=False,  # one self-contained file: weights inside, no .onnx.data beside it
                verbose=False,
            )
    finally:
        onnx_logger.setLevel(level)
    model = onnx.load(str(path))
    for key, value in metadata.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return parity_check(module, path, metadata.obs_dim, recorded_obs, seed, cameras)


def parity_check(
    module: nn.Module,
    path: str | Path,
    obs_dim: int,
    recorded_obs: PolicyInputs | None,
    seed: int = 0,
    cameras: dict[str, tuple[int, int, int]] | None = None,
) -> ParityReport:
    """Largest |torch - onnxruntime| action difference on random and recorded observations.

    ``cameras`` (H, W, C by input name) are the policy's frame inputs: random frames are uniform uint8.
    """
    import torch

    cameras = cameras or {}
    session = make_session(path)
    rng = np.random.default_rng(seed)
    random_inputs = {"obs": rng.normal(size=(256, obs_dim)).astype(np.float32) * 2.0}
    random_inputs.update(
        {name: rng.integers(0, 256, size=(256, *shape), dtype=np.uint8) for name, shape in cameras.items()}
    )

    def diff(inputs: dict[str, np.ndarray]) -> float:
        with torch.inference_mode():
            expected = module(*(torch.from_numpy(array) for array in inputs.values())).numpy()
        got = session.run(["actions"], inputs)[0]
        return float(np.abs(expected - got).max())

    recorded, samples = None, 0
    if recorded_obs is not None:
        given = recorded_obs if isinstance(recorded_obs, dict) else {"obs": recorded_obs}
        samples = len(given["obs"])
        if samples:
            inputs = {"obs": np.ascontiguousarray(given["obs"], dtype=np.float32).reshape(-1, obs_dim)}
            inputs.update({name: np.ascontiguousarray(given[name], dtype=np.uint8) for name in cameras})
            recorded = diff(inputs)
    return ParityReport(diff(random_inputs), recorded, samples)


def make_session(path: str | Path) -> Any:
    """An onnxruntime CPU session for low-latency single-observation inference (1 thread, sequential)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_metadata(path: str | Path) -> PolicyMetadata:
    """The metadata of a policy file written by ``export_policy``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy file {path} does not exist")
    session = make_session(path)
    return PolicyMetadata.from_props(dict(session.get_modelmeta().custom_metadata_map))


def load_motion(policy_path: str | Path, metadata: PolicyMetadata) -> dict[str, np.ndarray] | None:
    """The reference motion beside a tracking policy, checked against the hash in its metadata."""
    if metadata.motion_file is None:
        return None
    side = Path(policy_path).with_name(metadata.motion_file)
    if not side.is_file():
        raise PolicyArtifactError(f"{policy_path}: its reference motion {side} is missing")
    if hashlib.sha256(side.read_bytes()).hexdigest() != metadata.motion_sha256:
        raise PolicyArtifactError(f"{side}: SHA-256 differs from the one in {policy_path} (another export?)")
    with np.load(side, allow_pickle=False) as data:
        return {k: data[k] for k in MOTION_ARRAYS}
