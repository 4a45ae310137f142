"""Networks of the learner: MLPs, PPO's Gaussian actor-critic, SAC's tanh-Gaussian actor and critic ensemble.

- ``mlp(in_dim, out_dim, cfg)``: hidden sizes, activation and optional LayerNorm from ``NetworkConfig``.
- ``GaussianActorCritic``: PPO's policy (mean from an MLP, state-independent learned log-std) and
  value function; the critic may read a different, privileged observation (G1: ``"critic"``).
  Observation normalisers live inside, so ``forward(obs) -> mean action`` is the whole deployable
  policy (what ONNX export traces); so does an optional ``ActionPriorLayer``, a task's fixed affine
  map of the raw observation added to the mean.
- ``TanhGaussianActor``: SAC's squashed Gaussian policy with state-dependent, clamped log-std.
- ``CriticEnsemble``: E Q-networks evaluated as one batched matmul per layer (no Python loop over
  members), LayerNorm after each hidden layer as in RLPD; ``forward(obs, action) -> [E, B]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

from striata.envs.action_prior import ActionPrior
from striata.learner.config import NetworkConfig
from striata.learner.normalizer import EmpiricalNormalizer

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


def mlp(in_dim: int, out_dim: int, cfg: NetworkConfig) -> nn.Sequential:
    """Linear -> [LayerNorm] -> activation for each hidden size, then a linear output layer."""
    layers: list[nn.Module] = []
    last = in_dim
    for size in cfg.hidden:
        layers.append(nn.Linear(last, size))
        if cfg.layer_norm:
            layers.append(nn.LayerNorm(size))
        layers.append(ACTIVATIONS[cfg.activation]())
        last = size
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


class ActionPriorLayer(nn.Module):
    """A task's ``ActionPrior`` on tensors. Its arrays are buffers, not parameters: they travel with the
    weights to actors, into checkpoints and into the ONNX graph, and no gradient changes them."""

    def __init__(self, action_dim: int) -> None:
        super().__init__()
        self.register_buffer("index", torch.zeros(action_dim, dtype=torch.long))
        self.register_buffer("gain", torch.zeros(action_dim))
        self.register_buffer("offset", torch.zeros(action_dim))

    @torch.no_grad()
    def set(self, prior: ActionPrior) -> None:
        for name in ("index", "gain", "offset"):
            buffer = getattr(self, name)
            buffer.copy_(torch.as_tensor(getattr(prior, name), dtype=buffer.dtype))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[..., self.index] * self.gain + self.offset


class GaussianActorCritic(nn.Module):
    """PPO policy pi(a|o) = N(mu(o), diag(exp(log_std))^2) and value V(o_critic)."""

    def __init__(
        self,
        obs_dim: int,
        critic_obs_dim: int,
        action_dim: int,
        actor: NetworkConfig,
        critic: NetworkConfig,
        init_noise_std: float = 1.0,
        normalize: bool = True,
        normalizer_clip: float = 5.0,
        action_prior: bool = False,
    ) -> None:
        super().__init__()
        self.action_prior = ActionPriorLayer(action_dim) if action_prior else None
        self.actor_normalizer: nn.Module = (
            EmpiricalNormalizer(obs_dim, normalizer_clip) if normalize else nn.Identity()
        )
        self.critic_normalizer: nn.Module = (
            EmpiricalNormalizer(critic_obs_dim, normalizer_clip) if normalize else nn.Identity()
        )
        self.actor = mlp(obs_dim, action_dim, actor)
        self.critic = mlp(critic_obs_dim, 1, critic)
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(init_noise_std)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action (the mean) of raw, unnormalised observations."""
        mean = self.actor(self.actor_normalizer(obs))
        return mean if self.action_prior is None else mean + self.action_prior(obs)

    def distribution(self, obs: torch.Tensor) -> Normal:
        mean = self.forward(obs)
        return Normal(mean, self.log_std.exp().expand_as(mean))

    @torch.no_grad()
    def update_normalizers(self, obs: torch.Tensor, critic_obs: torch.Tensor) -> None:
        """Merge a batch of raw observations into the normalisers' statistics (no-op when disabled)."""
        for normalizer, x in ((self.actor_normalizer, obs), (self.critic_normalizer, critic_obs)):
            if isinstance(normalizer, EmpiricalNormalizer):
                normalizer.update(x)

    def value(self, critic_obs: torch.Tensor) -> torch.Tensor:
        """V [B] of raw critic observations [B, critic_obs_dim]."""
        return self.critic(self.critic_normalizer(critic_obs)).squeeze(-1)


class TanhGaussianActor(nn.Module):
    """SAC policy: a = tanh(u), u ~ N(mu(o), sigma(o)), actions in (-1, 1)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        cfg: NetworkConfig,
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 2 * action_dim, cfg)
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def forward(
        self, obs: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Action [B, A] and its log-probability [B] (the change of variables through tanh included).

        ``noise`` [B, A] holds standard normal draws (the caller owns the RNG); None gives the mean action.
        """
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        std = log_std.exp()
        u = mean if noise is None else mean + std * noise
        # log(1 - tanh(u)^2) written with softplus: stable where tanh saturates.
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return torch.tanh(u), (Normal(mean, std).log_prob(u) - log_det).sum(dim=-1)


class EnsembleLinear(nn.Module):
    """E independent linear layers applied to [E, B, in] with one batched matmul."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default initialisation range, per member
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over features with a separate affine transform per ensemble member."""

    def __init__(self, members: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


class CriticEnsemble(nn.Module):
    """E Q-functions Q_i(o, a); ``forward`` returns [E, B]."""

    def __init__(self, obs_dim: int, action_dim: int, members: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.members = members
        layers: list[nn.Module] = []
        last = obs_dim + action_dim
        for size in cfg.hidden:
            layers.append(EnsembleLinear(members, last, size))
            if cfg.layer_norm:
                layers.append(EnsembleLayerNorm(members, size))
            layers.append(ACTIVATIONS[cfg.activation]())
            last = size
        layers.append(EnsembleLinear(members, last, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        return self.net(x.unsqueeze(0).expand(self.members, *x.shape)).squeeze(-1)
