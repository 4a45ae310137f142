"""SAC with RLPD's recipe (Ball et al. 2023), as HIL-SERL trains manipulation policies.

- critic: an ensemble of ``ensemble_size`` Q-networks with LayerNorm; the target takes the min over a
  random subset of ``num_min_qs`` target critics (2 of 2 is clipped double Q; 2 of 10 is REDQ/RLPD);
- ``utd_ratio`` critic updates per ``update()`` call, then one actor and one temperature update;
- each batch of ``batch_size`` is drawn ``demo_ratio`` from the demo buffer and the rest from the
  online buffer (RLPD's symmetric sampling, 50/50 by default); without demos, all online;
- automatic entropy tuning towards ``target_entropy`` (default -|A|); Polyak-averaged targets (tau).

Learner side::

    sac = SAC(SACConfig(), obs_dim=23, action_dim=3)
    add_transitions(online, demo, flatten_transitions(chunk))   # learner/replay.py, learner/chunk.py
    metrics = sac.update(online, demo)                          # demo may be None
    weights = sac.policy_state()

Actor side: ``SAC(cfg.model_copy(update={"device": "cpu", "seed": s}), obs_dim, action_dim)``,
``load_policy_state(weights)``, then ``actions = sac.act(obs)`` (numpy [N, A] in (-1, 1)) and
``builder.add(obs, actions, ..., policy_version=sac.version)``. Dict observations are read at
``cfg.obs_key`` (e.g. ``"state"``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import torch
from torch import nn

from striata.learner.config import SACConfig
from striata.learner.device import resolve_device
from striata.learner.networks import CriticEnsemble, TanhGaussianActor
from striata.learner.replay import ReplayBuffer


class SAC:
    """SAC/RLPD learner and, on actors, the acting policy copy (see the module docstring)."""

    def __init__(
        self, cfg: SACConfig, obs_dim: int, action_dim: int, device: str | torch.device | None = None
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        # Own RNG streams (torch for the policy noise and critic subsets, numpy for batch sampling):
        # checkpoints restore exactly these, and actors seeded apart never share noise.
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.actor = TanhGaussianActor(obs_dim, action_dim, cfg.actor, cfg.log_std_min, cfg.log_std_max)
            self.critic = CriticEnsemble(obs_dim, action_dim, cfg.ensemble_size, cfg.critic)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(np.log(cfg.init_temperature), dtype=torch.float32, device=self.device)
        self.log_alpha.requires_grad_(True)
        self.target_entropy = -float(action_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.temperature_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.temperature_lr)
        self.version = 0

    @property
    def alpha(self) -> float:
        return self.log_alpha.detach().exp().item()

    def _obs(self, obs: Any) -> torch.Tensor:
        if isinstance(obs, dict):
            if self.cfg.obs_key not in obs:
                raise KeyError(f"obs has keys {sorted(obs)}, SAC reads {self.cfg.obs_key!r}")
            obs = obs[self.cfg.obs_key]
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device)

    def _noise(self, shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    # ----------------------------------------------------------------- acting
    @torch.inference_mode()
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        """Actions [N, A] in (-1, 1) (float32 numpy) for env observations [N, ...]."""
        x = self._obs(obs)
        actions, _ = self.actor(
            x, noise=None if deterministic else self._noise((x.shape[0], self.action_dim))
        )
        return actions.cpu().numpy()

    # ----------------------------------------------------------------- learning
    def sample_batch(self, online: ReplayBuffer, demo: ReplayBuffer | None) -> dict[str, Any]:
        """One training batch (numpy): ``round(batch_size * demo_ratio)`` demo rows, then online rows.

        Without a demo buffer, or with an empty one, the whole batch is online.
        """
        if demo is None or len(demo) == 0:
            return online.sample(self.cfg.batch_size, self.rng)
        n_demo = round(self.cfg.batch_size * self.cfg.demo_ratio)
        first = demo.sample(n_demo, self.rng)
        second = online.sample(self.cfg.batch_size - n_demo, self.rng)

        def join(a: Any, b: Any) -> Any:
            if isinstance(a, dict):
                return {key: np.concatenate([a[key], b[key]]) for key in a}
            return np.concatenate([a, b])

        return {key: join(first[key], second[key]) for key in first}

    def _tensors(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {
            "obs": self._obs(batch["obs"]),
            "next_obs": self._obs(batch["next_obs"]),
            "actions": torch.as_tensor(batch["actions"], dtype=torch.float32, device=self.device),
            "rewards": torch.as_tensor(batch["rewards"], dtype=torch.float32, device=self.device),
            "not_done": torch.as_tensor(~batch["terminated"], dtype=torch.float32, device=self.device),
        }

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module | None) -> None:
        optimizer.zero_grad()
        loss.backward()
        if module is not None and self.cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.max_grad_norm)
        optimizer.step()

    def _critic_step(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            next_actions, next_log_prob = self.actor(b["next_obs"], noise=self._noise(b["actions"].shape))
            next_q = self.target_critic(b["next_obs"], next_actions)
            subset = torch.randperm(cfg.ensemble_size, generator=self.generator, device=self.device)[
                : cfg.num_min_qs
            ]
            next_q = next_q[subset].min(dim=0).values
            if cfg.backup_entropy:
                next_q = next_q - self.log_alpha.exp() * next_log_prob
            target = b["rewards"] + cfg.gamma * b["not_done"] * next_q
        q = self.critic(b["obs"], b["actions"])
        # Each member regresses on the shared target; summing member losses keeps each member's
        # gradient independent of the ensemble size.
        loss = (q - target).square().mean(dim=1).sum()
        self._step(self.critic_optimizer, loss, self.critic)
        with torch.no_grad():
            for target_param, param in zip(
                self.target_critic.parameters(), self.critic.parameters(), strict=True
            ):
                target_param.lerp_(param, cfg.tau)
        return {"critic_loss": loss.item(), "q_mean": q.mean().item()}

    def _actor_step(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        actions, log_prob = self.actor(b["obs"], noise=self._noise(b["actions"].shape))
        # RLPD's actor maximises the mean over the ensemble (the min is for targets only). The critic
        # is frozen meanwhile: its gradients would be wasted work (the next critic step zeroes them).
        self.critic.requires_grad_(False)
        q = self.critic(b["obs"], actions).mean(dim=0)
        self.critic.requires_grad_(True)
        actor_loss = (self.log_alpha.exp().detach() * log_prob - q).mean()
        self._step(self.actor_optimizer, actor_loss, self.actor)
        temperature_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self._step(self.temperature_optimizer, temperature_loss, None)
        return {
            "actor_loss": actor_loss.item(),
            "temperature_loss": temperature_loss.item(),
            "entropy": -log_prob.mean().item(),
            "temperature": self.alpha,
        }

    def update(self, online: ReplayBuffer, demo: ReplayBuffer | None = None) -> dict[str, float]:
        """``utd_ratio`` critic steps on fresh batches, then one actor and temperature step; metrics."""
        critic: dict[str, float] = {"critic_loss": 0.0, "q_mean": 0.0}
        for _ in range(self.cfg.utd_ratio):
            batch = self._tensors(self.sample_batch(online, demo))
            for key, value in self._critic_step(batch).items():
                critic[key] += value / self.cfg.utd_ratio
        metrics = {**critic, **self._actor_step(batch)}
        self.version += 1
        metrics.update(
            online_size=float(len(online)),
            demo_size=float(len(demo)) if demo is not None else 0.0,
            policy_version=float(self.version),
        )
        return metrics

    # ----------------------------------------------------------------- state
    def policy_state(self) -> dict[str, np.ndarray]:
        """Actor weights as numpy, plus ``policy_version``: what actors need to act."""
        state = {key: value.detach().cpu().numpy() for key, value in self.actor.state_dict().items()}
        state["policy_version"] = np.array(self.version, dtype=np.int64)
        return state

    def load_policy_state(self, state: dict[str, np.ndarray]) -> None:
        # Copies: arrays from Ray's object store are read-only views.
        self.actor.load_state_dict({k: torch.tensor(v) for k, v in state.items() if k != "policy_version"})
        self.version = int(state["policy_version"])

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume except the buffers (saved beside, see learner/checkpoint.py)."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "temperature_optimizer": self.temperature_optimizer.state_dict(),
            "version": self.version,
            "generator": self.generator.get_state(),
            # JSON, since PCG64's state holds 128-bit integers; loading stays weights-only.
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "config": self.cfg.model_dump_json(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.temperature_optimizer.load_state_dict(state["temperature_optimizer"])
        self.version = int(state["version"])
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
