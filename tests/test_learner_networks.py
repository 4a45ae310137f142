"""Networks and the observation normaliser: shapes, statistics, squashed log-probabilities, state dicts."""

from __future__ import annotations

import torch

from striata.learner.config import NetworkConfig
from striata.learner.networks import CriticEnsemble, GaussianActorCritic, TanhGaussianActor, mlp
from striata.learner.normalizer import EmpiricalNormalizer

torch.set_num_threads(1)


def test_normalizer_merges_batches_exactly_and_round_trips() -> None:
    torch.manual_seed(0)
    x = torch.randn(1000, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([3.0, -2.0, 0.0])
    norm = EmpiricalNormalizer(3, clip=5.0)
    for part in (x[:7], x[7:400], x[400:]):
        norm.update(part)
    torch.testing.assert_close(norm.mean, x.mean(0))
    torch.testing.assert_close(norm.var, x.var(0, unbiased=False))
    assert int(norm.count) == 1000
    y = norm(x)
    assert y.abs().max() <= 5.0
    assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-2)

    copy = EmpiricalNormalizer(3)
    copy.load_state_dict(norm.state_dict())
    torch.testing.assert_close(copy(x), y)


def test_mlp_follows_the_config() -> None:
    net = mlp(4, 2, NetworkConfig(hidden=[8, 6], activation="elu", layer_norm=True))
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "LayerNorm", "ELU", "Linear", "LayerNorm", "ELU", "Linear"]
    assert net(torch.zeros(5, 4)).shape == (5, 2)


def test_actor_critic_has_a_state_independent_std_and_a_privileged_critic() -> None:
    model = GaussianActorCritic(
        6, 10, 3, NetworkConfig(hidden=[16]), NetworkConfig(hidden=[16]), init_noise_std=0.5
    )
    dist = model.distribution(torch.randn(4, 6))
    torch.testing.assert_close(dist.stddev, torch.full((4, 3), 0.5))
    assert model.value(torch.randn(4, 10)).shape == (4,)
    assert {"actor_normalizer.mean", "critic_normalizer.mean", "log_std"} <= set(model.state_dict())


def test_tanh_gaussian_log_prob_matches_the_change_of_variables() -> None:
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, NetworkConfig(hidden=[16]))
    obs = torch.randn(5, 3)
    noise = torch.randn(5, 2)
    action, log_prob = actor(obs, noise)
    mean, log_std = actor.net(obs).chunk(2, dim=-1)
    u = mean + log_std.exp() * noise
    gaussian = torch.distributions.Normal(mean, log_std.exp()).log_prob(u)
    expected = (gaussian - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    torch.testing.assert_close(log_prob, expected, atol=1e-4, rtol=1e-4)
    assert action.abs().max() < 1.0
    deterministic, _ = actor(obs)
    torch.testing.assert_close(deterministic, torch.tanh(mean))
    # Saturated pre-activations stay finite.
    assert torch.isfinite(actor(obs, torch.full((5, 2), 1e4))[1]).all()


def test_critic_ensemble_members_are_independent() -> None:
    torch.manual_seed(0)
    critic = CriticEnsemble(4, 2, members=10, cfg=NetworkConfig(hidden=[32, 32], layer_norm=True))
    obs, act = torch.randn(7, 4), torch.randn(7, 2)
    q = critic(obs, act)
    assert q.shape == (10, 7)
    assert q.std(dim=0).min() > 0  # different initialisations
    q[3].sum().backward()
    grads = critic.net[0].weight.grad
    assert grads[3].abs().sum() > 0
    assert grads[torch.arange(10) != 3].abs().sum() == 0
    assert critic.net[1].weight.shape == (10, 1, 32)  # LayerNorm with an affine transform per member
