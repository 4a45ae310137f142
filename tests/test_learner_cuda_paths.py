"""Learner transfer paths: ``to_device`` and PPO acting on device tensors (CUDA parts where CUDA exists)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from striata.learner.config import PPOConfig
from striata.learner.device import to_device
from striata.learner.ppo import PPO


def test_to_device_keeps_device_tensors_without_a_copy():
    cpu = torch.device("cpu")
    tensor = torch.arange(6.0).reshape(2, 3)
    assert to_device(tensor, cpu).data_ptr() == tensor.data_ptr()
    array = np.arange(6, dtype=np.float64).reshape(2, 3)
    out = to_device(array, cpu)
    assert out.dtype == torch.float32 and out.tolist() == array.tolist()


def test_to_device_copies_a_read_only_array_without_a_warning():
    # Ray hands chunk arrays out of its object store read-only; torch warns on a tensor over them.
    array = np.arange(6, dtype=np.float32)
    array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_device(array, torch.device("cpu"))
    out += 1.0
    assert array.tolist() == list(range(6)) and out.tolist() == list(range(1, 7))


def test_act_tensors_matches_act_and_stays_on_device():
    ppo = PPO(PPOConfig(device="cpu", seed=3), obs_dim=5, critic_obs_dim=7, action_dim=2)
    obs = {"policy": torch.randn(4, 5), "critic": torch.randn(4, 7)}
    actions, log_prob, value = ppo.act_tensors(obs, deterministic=True)
    ref_actions, ref_log_prob, ref_value = ppo.act({k: v.numpy() for k, v in obs.items()}, deterministic=True)
    assert isinstance(actions, torch.Tensor) and actions.device == ppo.device
    np.testing.assert_allclose(actions.numpy(), ref_actions, atol=1e-6)
    np.testing.assert_allclose(log_prob.numpy(), ref_log_prob, atol=1e-5)
    np.testing.assert_allclose(value.numpy(), ref_value, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_pinned_transfer_to_cuda():
    device = torch.device("cuda")
    out = to_device(np.ones((3, 2)), device)
    assert out.is_cuda and out.dtype == torch.float32 and float(out.sum()) == 6.0
