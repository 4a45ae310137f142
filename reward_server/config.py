"""The reward server's config schema (configs/reward_*.yaml): socket, client limits, batching, queue, cache,
backend.

Unknown keys and wrong types are errors that name the key (pydantic, ``extra="forbid"``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from striata.common.transport import TransportLimits
from striata.reward_server.protocol import MAX_HEADER_BYTES, Limits


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _device_name(name: str) -> str:
    # Spelling only: whether the device exists is known in the server's own process, which may run
    # on another node (``striata.reward_server.backends`` checks it there).
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError("expected auto, cpu, cuda or cuda:N")
    return name


Device = Annotated[
    str,
    AfterValidator(_device_name),
    Field(description="'auto' (CUDA when the server's process sees one, else CPU), 'cpu', 'cuda', 'cuda:N'"),
]


class TorchBackendConfig(Section):
    """striata's own progress model, in process (striata.reward_server.progress_model)."""

    kind: Literal["torch"] = "torch"
    checkpoint: Path | list[Path] | None = Field(
        default=None,
        description="trained model; a list = a pessimistic ensemble (lowest progress and success, spread as "
        "uncertainty); none = random weights",
    )
    random_init_seed: int = Field(default=0, description="seed of the random weights when no checkpoint")
    device: Device = "auto"

    @field_validator("checkpoint")
    @classmethod
    def _ensemble_size(cls, checkpoint: Path | list[Path] | None) -> Path | list[Path] | None:
        if isinstance(checkpoint, list) and len(checkpoint) < 2:
            raise ValueError(
                f"a list is an ensemble of 2 or more models, got {len(checkpoint)}; give one path"
            )
        return checkpoint


class OpenAIBackendConfig(Section):
    """A VLM behind an OpenAI-compatible chat completions endpoint (vLLM, SGLang)."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(default="http://127.0.0.1:8000/v1", description="ends before /chat/completions")
    model: str = Field(description="model name the endpoint serves")
    profile: Literal["roboreward", "robodopamine", "vlac", "progress"] = "progress"
    api_key_env: str | None = Field(default=None, description="environment variable holding the API key")
    concurrency: int = Field(default=8, ge=1, description="requests in flight to the endpoint at once")
    retries: int = Field(default=2, ge=0, description="extra attempts after a transport error, 429 or 5xx")
    backoff_s: float = Field(default=0.5, ge=0, description="first retry delay; doubles each retry")
    timeout_s: float = Field(default=30.0, gt=0, description="one HTTP request")
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    jpeg_quality: int = Field(default=90, ge=1, le=100, description="images go out as base64 JPEG")


class ClipBackendConfig(Section):
    """VLM-RM goal-baseline projection reward on a CLIP model from a local folder."""

    kind: Literal["clip"] = "clip"
    path: str = Field(description="local folder (transformers) or open_clip model name")
    library: Literal["transformers", "open_clip"] = "transformers"
    open_clip_pretrained: str | None = Field(default=None, description="open_clip: checkpoint file path")
    goal_prompt: str | None = Field(default=None, description="default: the request's task text")
    baseline_prompt: str = "a robot arm on a table"
    alpha: float = Field(default=1.0, ge=0, le=1, description="partial projection weight (VLM-RM alpha)")
    device: Device = "auto"


BackendConfig = Annotated[
    TorchBackendConfig | OpenAIBackendConfig | ClipBackendConfig, Field(discriminator="kind")
]


class RewardServerConfig(Section):
    host: str = Field(default="127.0.0.1", description="bind address; anything else is an explicit choice")
    port: int = Field(default=5790, ge=0, le=65535, description="0 = any free port")
    max_batch: int = Field(default=32, ge=1, description="most requests one model call takes")
    max_wait_ms: float = Field(default=5.0, ge=0, description="how long a batch waits to fill")
    max_queue: int = Field(default=1024, ge=1, description="queued requests before replies are 'overloaded'")
    cache_size: int = Field(default=4096, ge=0, description="LRU entries; 0 turns the cache off")
    max_images: int = Field(default=16, ge=1, description="images in one request (frames and references)")
    max_side: int = Field(default=1024, ge=1, description="largest image side accepted, pixels")
    max_image_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1, description="largest image frame accepted (a raw 1024^2 RGB is 3 MiB)"
    )
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="largest request, header and images together"
    )
    peer_messages_per_s: float = Field(
        default=2000.0, gt=0, description="requests one client may send per second, after a burst"
    )
    peer_burst_messages: int = Field(default=1024, ge=1, description="requests one client may send at once")
    bad_request_cost: int = Field(
        default=64,
        ge=1,
        description="requests of its client's rate that one bad_request costs: a client streaming garbage is "
        "answered a few dozen times a second and holds up no other client",
    )
    peer_bytes_per_s: float = Field(
        default=256e6, gt=0, description="bytes one client may send per second, after a burst"
    )
    peer_burst_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1,
        description="bytes one client may send at once (>= max_request_bytes)",
    )
    decode_threads: int = Field(
        default=2,
        ge=1,
        description="threads that decode images, fairly across clients, off the socket thread",
    )
    torch_threads: int = Field(default=1, ge=1, description="CPU threads for in-process models")
    backend: BackendConfig

    @model_validator(mode="after")
    def _a_request_can_pass(self) -> RewardServerConfig:
        if self.peer_burst_bytes < self.max_request_bytes:
            raise ValueError(
                f"peer_burst_bytes ({self.peer_burst_bytes}) < max_request_bytes ({self.max_request_bytes}): "
                "no request that large could ever pass"
            )
        return self

    def image_limits(self) -> Limits:
        """What one request may hold, checked when it is parsed and decoded."""
        return Limits(
            max_images=self.max_images, max_side=self.max_side, max_image_bytes=self.max_image_bytes
        )

    def transport_limits(self) -> TransportLimits:
        """Bounds on what a client sends, applied before a message is parsed: a header frame and at most
        ``max_images`` image frames of at most ``max_image_bytes`` each."""
        return TransportLimits(
            max_frames=1 + self.max_images,
            max_frame_bytes=max(self.max_image_bytes, MAX_HEADER_BYTES),
            max_message_bytes=self.max_request_bytes,
            peer_bytes_per_s=self.peer_bytes_per_s,
            peer_burst_bytes=self.peer_burst_bytes,
            peer_messages_per_s=self.peer_messages_per_s,
            peer_burst_messages=self.peer_burst_messages,
            bad_message_cost=self.bad_request_cost,
        )

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "*") else self.host
        return f"tcp://{host}:{self.port}"


class RewardConfigError(ValueError):
    """A reward server config file that cannot be read as YAML."""


def load_server_config(path: Path, overrides: dict[str, Any] | None = None) -> RewardServerConfig:
    """Read a YAML config and apply ``--set`` overrides (nested dicts) on top."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise RewardConfigError(f"config: {path} is not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise RewardConfigError(f"config: {path} must hold a mapping, got {type(data).__name__}")
    return RewardServerConfig.model_validate(_merge(data, overrides or {}))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
