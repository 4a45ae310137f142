"""The actors' copy of the policy: built on CPU from the algorithm's config, fed weights by version.

A SAC policy with ``sac.cameras`` runs the learner's image encoder (its weights come with the actor's in
every version) on the camera frames of the actor's dict observations, as the learner does.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from striata.learner.config import PPOConfig, SACConfig
from striata.learner.ppo import PPO
from striata.learner.sac import SAC
from striata.learner.trainer import ppo_input_dims, sac_cameras, sac_input_dim


class ActingPolicy(Protocol):
    def load(self, weights: dict[str, np.ndarray]) -> None: ...

    def act(self, obs: Any, explore: bool) -> dict[str, np.ndarray]:
        """``actions`` [N, A], plus ``log_prob`` and ``value`` [N] where the algorithm needs them."""
        ...


class PPOPolicy:
    def __init__(self, cfg: PPOConfig, obs: Any, action_dim: int) -> None:
        self.algo = PPO(cfg, *ppo_input_dims(cfg, obs), action_dim, device="cpu")

    def load(self, weights: dict[str, np.ndarray]) -> None:
        self.algo.load_policy_state(weights)

    def act(self, obs: Any, explore: bool) -> dict[str, np.ndarray]:
        actions, log_prob, value = self.algo.act(obs, deterministic=not explore)
        return {"actions": actions, "log_prob": log_prob, "value": value}

    @torch.inference_mode()
    def log_prob(self, obs: Any, actions: np.ndarray) -> np.ndarray:
        """log pi(actions | obs) [N] of this policy: what a chunk stores for actions a person chose."""
        actor_obs = obs[self.algo.cfg.actor_obs_key] if isinstance(obs, dict) else obs
        dist = self.algo.model.distribution(torch.as_tensor(actor_obs, dtype=torch.float32))
        return dist.log_prob(torch.as_tensor(actions, dtype=torch.float32)).sum(dim=-1).numpy()


class SACPolicy:
    def __init__(self, cfg: SACConfig, obs: Any, action_dim: int) -> None:
        self.algo = SAC(cfg, sac_input_dim(cfg, obs), action_dim, device="cpu", cameras=sac_cameras(cfg, obs))

    def load(self, weights: dict[str, np.ndarray]) -> None:
        self.algo.load_policy_state(weights)

    def act(self, obs: Any, explore: bool) -> dict[str, np.ndarray]:
        return {"actions": self.algo.act(obs, deterministic=not explore)}


def make_acting_policy(
    algo: str, algo_config: dict[str, Any], obs: Any, action_dim: int, seed: int
) -> ActingPolicy:
    """A CPU policy for observations like ``obs``; ``seed`` keeps the exploration noise of actors apart."""
    if algo == "ppo":
        return PPOPolicy(PPOConfig.model_validate({**algo_config, "seed": seed}), obs, action_dim)
    if algo == "sac":
        return SACPolicy(SACConfig.model_validate({**algo_config, "seed": seed}), obs, action_dim)
    raise ValueError(f"algo: unknown {algo!r}; allowed: ppo, sac")
