"""Builds the configured backend; each backend's heavy imports happen only when it is chosen."""

from __future__ import annotations

from striata.reward_server.backend import RewardBackend, backend_device
from striata.reward_server.config import (
    BackendConfig,
    ClipBackendConfig,
    OpenAIBackendConfig,
    TorchBackendConfig,
)


def make_backend(config: BackendConfig) -> RewardBackend:
    if isinstance(config, OpenAIBackendConfig):
        from striata.reward_server.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if isinstance(config, ClipBackendConfig):
        from striata.reward_server.clip_backend import ClipBackend

        return ClipBackend.load(config)
    if isinstance(config, TorchBackendConfig):
        from striata.reward_server.progress_model.backend import ProgressEnsembleBackend, ProgressModelBackend

        device = backend_device(config.device)
        if config.checkpoint is None:
            return ProgressModelBackend.random_init(seed=config.random_init_seed, device=device)
        if isinstance(config.checkpoint, list):
            return ProgressEnsembleBackend.load(config.checkpoint, device=device)
        return ProgressModelBackend.load(config.checkpoint, device=device)
    raise TypeError(f"backend: unknown config type {type(config).__name__}")
