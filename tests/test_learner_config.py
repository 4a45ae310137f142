"""Learner configs: the documented defaults, unknown keys refused by name, device resolution."""

from __future__ import annotations

import pydantic
import pytest
import torch

from striata.learner.config import NetworkConfig, PPOConfig, SACConfig
from striata.learner.device import resolve_device


def test_ppo_defaults_are_rsl_rl_g1_tracking() -> None:
    cfg = PPOConfig()
    assert cfg.actor.hidden == cfg.critic.hidden == [512, 256, 128] and cfg.actor.activation == "elu"
    assert (cfg.learning_rate, cfg.clip_param, cfg.num_learning_epochs, cfg.num_mini_batches) == (
        1e-3,
        0.2,
        5,
        4,
    )
    assert (cfg.gamma, cfg.lam, cfg.entropy_coef, cfg.desired_kl) == (0.99, 0.95, 0.005, 0.01)
    assert (cfg.max_grad_norm, cfg.init_noise_std, cfg.schedule) == (1.0, 1.0, "adaptive")


def test_sac_defaults_are_hil_serl_rlpd() -> None:
    cfg = SACConfig()
    assert cfg.actor.hidden == cfg.critic.hidden == [256, 256] and cfg.critic.layer_norm
    assert (cfg.actor_lr, cfg.tau, cfg.gamma, cfg.batch_size, cfg.utd_ratio) == (3e-4, 0.005, 0.97, 256, 2)
    assert (cfg.ensemble_size, cfg.num_min_qs, cfg.demo_ratio) == (2, 2, 0.5)


def test_unknown_keys_are_errors_naming_the_key() -> None:
    with pytest.raises(pydantic.ValidationError, match="learning_rat"):
        PPOConfig.model_validate({"learning_rat": 1e-3})
    with pytest.raises(pydantic.ValidationError, match="hiden"):
        SACConfig.model_validate({"critic": {"hiden": [64]}})
    with pytest.raises(pydantic.ValidationError, match="hidden sizes must be >= 1"):
        NetworkConfig(hidden=[64, 0])


def test_device_resolution() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda:0' requested but CUDA is not available"):
            resolve_device("cuda:0")
