"""SAC/RLPD pieces: 50/50 online/demo batches, ensemble targets, Polyak averaging, temperature, weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from striata.learner.config import NetworkConfig, SACConfig
from striata.learner.replay import ReplayBuffer
from striata.learner.sac import SAC

torch.set_num_threads(1)


def cfg(**overrides) -> SACConfig:
    net = NetworkConfig(hidden=[32, 32])
    return SACConfig(
        actor=net, critic=NetworkConfig(hidden=[32, 32], layer_norm=True), device="cpu", **overrides
    )


def filled(value: float, count: int = 300, obs_dim: int = 3, action_dim: int = 2) -> ReplayBuffer:
    """A buffer whose every observation entry equals ``value`` (so a batch row tells its source)."""
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(count)
    buffer.add(
        {
            "obs": np.full((count, obs_dim), value, np.float32),
            "next_obs": np.full((count, obs_dim), value, np.float32),
            "actions": rng.uniform(-1, 1, (count, action_dim)).astype(np.float32),
            "rewards": rng.normal(size=count).astype(np.float32),
            "terminated": rng.random(count) < 0.1,
            "intervention": np.zeros(count, bool),
        }
    )
    return buffer


def test_rlpd_batches_are_exactly_half_demo() -> None:
    sac = SAC(cfg(), 3, 2)
    online, demo = filled(0.0), filled(1.0)
    for _ in range(3):
        batch = sac.sample_batch(online, demo)
        assert batch["obs"].shape == (256, 3)
        assert (batch["obs"][:, 0] == 1.0).sum() == 128 and (batch["obs"][:, 0] == 0.0).sum() == 128
    assert (sac.sample_batch(online, None)["obs"] == 0.0).all()
    assert (sac.sample_batch(online, ReplayBuffer(10))["obs"] == 0.0).all()  # empty demo buffer: all online
    quarter = SAC(cfg(demo_ratio=0.25, batch_size=64), 3, 2).sample_batch(online, demo)
    assert (quarter["obs"][:, 0] == 1.0).sum() == 16


def test_update_with_a_redq_ensemble_moves_targets_by_tau() -> None:
    sac = SAC(cfg(ensemble_size=10, num_min_qs=2, utd_ratio=1, tau=0.1), 3, 2)
    target_before = [p.clone() for p in sac.target_critic.parameters()]
    metrics = sac.update(filled(0.0), filled(1.0))
    assert sac.version == 1 and metrics["policy_version"] == 1.0
    assert np.isfinite([metrics[k] for k in ("critic_loss", "actor_loss", "temperature", "entropy")]).all()
    # One critic step, then target <- target + tau (critic - target); the actor step leaves the critic.
    for target, before, online in zip(
        sac.target_critic.parameters(), target_before, sac.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(target, before + 0.1 * (online.detach() - before))
    assert not any(p.requires_grad for p in sac.target_critic.parameters())
    assert not torch.equal(target_before[0], next(sac.target_critic.parameters()))


def test_temperature_falls_while_entropy_is_above_target() -> None:
    sac = SAC(cfg(init_temperature=1.0, temperature_lr=1e-2), 3, 2)
    online = filled(0.0)
    for _ in range(20):
        metrics = sac.update(online)
    assert metrics["entropy"] > sac.target_entropy == -2.0
    assert metrics["temperature"] < 1.0


def test_act_and_actor_copies() -> None:
    learner = SAC(cfg(), 3, 2)
    learner.update(filled(0.0))
    actor = SAC(cfg(seed=5), 3, 2)
    actor.load_policy_state(learner.policy_state())
    obs = {
        "state": np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32),
        "front": np.zeros((4, 8, 8, 3)),
    }
    a = actor.act(obs)
    assert a.shape == (4, 2) and a.dtype == np.float32 and np.abs(a).max() < 1
    np.testing.assert_array_equal(actor.act(obs, deterministic=True), learner.act(obs, deterministic=True))
    assert actor.version == 1
    with pytest.raises(KeyError, match="SAC reads 'state'"):
        actor.act({"policy": obs["state"]})


def test_config_rejects_a_subset_larger_than_the_ensemble() -> None:
    with pytest.raises(ValueError, match="num_min_qs 3 must be <= ensemble_size 2"):
        SACConfig(num_min_qs=3)
