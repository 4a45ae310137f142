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

Pixels (DrQ, as SERL/HIL-SERL train from cameras): with ``cfg.cameras``, ``SAC(cfg, obs_dim, action_dim,
cameras={"front": (64, 64, 3)})`` adds a ``PixelEncoder`` (learner/encoders.py) whose features go beside
the state vector into the actor and the critics. Where gradients flow:

- the critic loss trains the encoder (it is in the critic's optimiser), on frames of ``obs`` and
  ``next_obs`` each shifted at random (``random_shift``, ``cfg.image_pad``) every time a batch is drawn;
- the actor reads the encoder's features detached: its loss moves the actor only;
- the target critics read a target encoder, Polyak-averaged with the same ``tau`` (DrQ);
- acting and evaluation run the encoder on unshifted frames, and ``policy_state()`` carries its
  weights (keys ``encoder.*``) beside the actor's, so actors run the same encoder.

Without cameras nothing of this exists and SAC is exactly the state-only learner.
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
from striata.learner.encoders import CameraShapes, PixelEncoder, frames_to_float, random_shift
from striata.learner.networks import CriticEnsemble, TanhGaussianActor
from striata.learner.replay import ReplayBuffer

_ENCODER = "encoder."  # prefix of the encoder's weights in policy_state()


@torch.no_grad()
def _polyak(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- target + tau (online - target), parameter by parameter."""
    for target_param, param in zip(target.parameters(), online.parameters(), strict=True):
        target_param.lerp_(param, tau)


class SAC:
    """SAC/RLPD learner and, on actors, the acting policy copy (see the module docstring)."""

    def __init__(
        self,
        cfg: SACConfig,
        obs_dim: int,
        action_dim: int,
        device: str | torch.device | None = None,
        cameras: CameraShapes | None = None,
    ) -> None:
        """``obs_dim``: width of the state vector; ``cameras``: (H, W, C) of each of ``cfg.cameras``."""
        cameras = dict(cameras or {})
        if list(cameras) != list(cfg.cameras):
            raise ValueError(f"sac.cameras is {cfg.cameras}; frame shapes given for {list(cameras)}")
        self.cfg = cfg
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        # Own RNG streams (torch for the policy noise and critic subsets, numpy for batch sampling):
        # checkpoints restore exactly these, and actors seeded apart never share noise.
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.encoder: PixelEncoder | None = None
        self.target_encoder: PixelEncoder | None = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            width = obs_dim
            if cameras:
                self.encoder = PixelEncoder(cameras, cfg.encoder).to(self.device)
                width += self.encoder.feature_dim
            self.actor = TanhGaussianActor(width, action_dim, cfg.actor, cfg.log_std_min, cfg.log_std_max)
            self.critic = CriticEnsemble(width, action_dim, cfg.ensemble_size, cfg.critic)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # The encoder learns from the critic's loss only, in the critic's optimiser (DrQ).
        self._critic_params = list(self.critic.parameters())
        if self.encoder is not None:
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            self._critic_params += list(self.encoder.parameters())
        self.log_alpha = torch.tensor(np.log(cfg.init_temperature), dtype=torch.float32, device=self.device)
        self.log_alpha.requires_grad_(True)
        self.target_entropy = -float(action_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self._critic_params, lr=cfg.critic_lr)
        self.temperature_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.temperature_lr)
        self.version = 0

    @property
    def alpha(self) -> float:
        return self.log_alpha.detach().exp().item()

    def _obs(self, obs: Any, augment: bool = False) -> Any:
        """The state tensor [B, obs_dim]; with cameras, a dict of it and float NCHW frames per camera.

        ``augment`` shifts every frame at random (training batches; never when acting).
        """
        if isinstance(obs, dict):
            missing = [key for key in (self.cfg.obs_key, *self.cfg.cameras) if key not in obs]
            if missing:
                cameras = f" and cameras {self.cfg.cameras}" if self.cfg.cameras else ""
                raise KeyError(f"obs has keys {sorted(obs)}, SAC reads {self.cfg.obs_key!r}{cameras}")
            state = obs[self.cfg.obs_key]
        else:
            if self.cfg.cameras:
                raise KeyError(
                    f"obs is one array; SAC reads {self.cfg.obs_key!r} and cameras {self.cfg.cameras}"
                )
            state = obs
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device)
        if not self.cfg.cameras:
            return state
        pad = self.cfg.image_pad if augment else 0
        # uint8 to the device and shifted there (4x fewer bytes than float), then float.
        frames = {
            name: frames_to_float(
                random_shift(torch.as_tensor(obs[name], device=self.device), pad, self.generator)
            )
            for name in self.cfg.cameras
        }
        return {self.cfg.obs_key: state, **frames}

    def _input(self, obs: Any, encoder: PixelEncoder | None) -> torch.Tensor:
        """The networks' input: the state itself, or the state and ``encoder``'s camera features."""
        if encoder is None:
            return obs
        return encoder(obs[self.cfg.obs_key], obs)

    def _noise(self, shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    # ----------------------------------------------------------------- acting
    @torch.inference_mode()
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        """Actions [N, A] in (-1, 1) (float32 numpy) for env observations [N, ...]."""
        x = self._input(self._obs(obs), self.encoder)
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

    def _tensors(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {
            "obs": self._obs(batch["obs"], augment=True),
            "next_obs": self._obs(batch["next_obs"], augment=True),
            "actions": torch.as_tensor(batch["actions"], dtype=torch.float32, device=self.device),
            "rewards": torch.as_tensor(batch["rewards"], dtype=torch.float32, device=self.device),
            "not_done": torch.as_tensor(~batch["terminated"], dtype=torch.float32, device=self.device),
        }

    def _step(
        self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter] | None
    ) -> None:
        optimizer.zero_grad()
        loss.backward()
        if params is not None and self.cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        optimizer.step()

    def critic_loss(self, b: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The critics' TD loss on a batch of ``_tensors``, their Q [E, B] and the networks' input of
        ``obs`` detached (the actor step reuses it rather than run the encoder again)."""
        cfg = self.cfg
        with torch.no_grad():
            # The next action comes from the actor on the online encoder's features, its value from
            # the target critics on the target encoder's (DrQ).
            next_x = self._input(b["next_obs"], self.encoder)
            next_actions, next_log_prob = self.actor(next_x, noise=self._noise(b["actions"].shape))
            next_q = self.target_critic(self._input(b["next_obs"], self.target_encoder), next_actions)
            subset = torch.randperm(cfg.ensemble_size, generator=self.generator, device=self.device)[
                : cfg.num_min_qs
            ]
            next_q = next_q[subset].min(dim=0).values
            if cfg.backup_entropy:
                next_q = next_q - self.log_alpha.exp() * next_log_prob
            target = b["rewards"] + cfg.gamma * b["not_done"] * next_q
        # The encoder's features are not detached here: the critic loss is what trains the encoder.
        x = self._input(b["obs"], self.encoder)
        q = self.critic(x, b["actions"])
        # Each member regresses on the shared target; summing member losses keeps each member's
        # gradient independent of the ensemble size.
        return (q - target).square().mean(dim=1).sum(), q, x.detach()

    def _critic_step(self, b: dict[str, Any]) -> tuple[dict[str, float], torch.Tensor]:
        loss, q, x = self.critic_loss(b)
        self._step(self.critic_optimizer, loss, self._critic_params)
        _polyak(self.target_critic, self.critic, self.cfg.tau)
        if self.target_encoder is not None and self.encoder is not None:
            _polyak(self.target_encoder, self.encoder, self.cfg.tau)
        return {"critic_loss": loss.item(), "q_mean": q.mean().item()}, x

    def actor_loss(
        self, b: dict[str, Any], x: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's loss on a batch of ``_tensors`` and the log-probabilities [B] of its actions.

        ``x``: the networks' input of ``b["obs"]`` when the caller has it (the critic step's, whose
        encoder is one optimiser step older: on a CPU the encoder pass is most of an update's cost).
        """
        # Detached features: the actor's loss must not move the encoder, which the critics read.
        if x is None:
            with torch.no_grad():
                x = self._input(b["obs"], self.encoder)
        x = x.detach()
        actions, log_prob = self.actor(x, noise=self._noise(b["actions"].shape))
        # RLPD's actor maximises the mean over the ensemble (the min is for targets only). The critic
        # is frozen meanwhile: its gradients would be wasted work (the next critic step zeroes them).
        self.critic.requires_grad_(False)
        q = self.critic(x, actions).mean(dim=0)
        self.critic.requires_grad_(True)
        return (self.log_alpha.exp().detach() * log_prob - q).mean(), log_prob

    def _actor_step(self, b: dict[str, Any], x: torch.Tensor) -> dict[str, float]:
        actor_loss, log_prob = self.actor_loss(b, x)
        self._step(self.actor_optimizer, actor_loss, list(self.actor.parameters()))
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
            step, x = self._critic_step(batch)
            for key, value in step.items():
                critic[key] += value / self.cfg.utd_ratio
        metrics = {**critic, **self._actor_step(batch, x)}
        self.version += 1
        metrics.update(
            online_size=float(len(online)),
            demo_size=float(len(demo)) if demo is not None else 0.0,
            policy_version=float(self.version),
        )
        return metrics

    # ----------------------------------------------------------------- state
    def policy_state(self) -> dict[str, np.ndarray]:
        """Actor weights as numpy, the encoder's under ``encoder.*``, plus ``policy_version``: what actors
        need to act."""
        state = {key: value.detach().cpu().numpy() for key, value in self.actor.state_dict().items()}
        if self.encoder is not None:
            for key, value in self.encoder.state_dict().items():
                state[f"{_ENCODER}{key}"] = value.detach().cpu().numpy()
        state["policy_version"] = np.array(self.version, dtype=np.int64)
        return state

    def load_policy_state(self, state: dict[str, np.ndarray]) -> None:
        # Copies: arrays from Ray's object store are read-only views.
        weights = {k: torch.tensor(v) for k, v in state.items() if k != "policy_version"}
        encoder = {k.removeprefix(_ENCODER): v for k, v in weights.items() if k.startswith(_ENCODER)}
        if bool(encoder) != (self.encoder is not None):
            raise ValueError(
                f"policy weights {'with' if encoder else 'without'} an image encoder; "
                f"this policy has sac.cameras {self.cfg.cameras}"
            )
        self.actor.load_state_dict({k: v for k, v in weights.items() if not k.startswith(_ENCODER)})
        if self.encoder is not None:
            self.encoder.load_state_dict(encoder)
        self.version = int(state["policy_version"])

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume except the buffers (saved beside, see learner/checkpoint.py)."""
        state = {
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
        if self.encoder is not None and self.target_encoder is not None:
            state["encoder"] = self.encoder.state_dict()
            state["target_encoder"] = self.target_encoder.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if ("encoder" in state) != (self.encoder is not None):
            raise ValueError(
                f"checkpoint {'with' if 'encoder' in state else 'without'} an image encoder; "
                f"this learner has sac.cameras {self.cfg.cameras}"
            )
        if self.encoder is not None and self.target_encoder is not None:
            self.encoder.load_state_dict(state["encoder"])
            self.target_encoder.load_state_dict(state["target_encoder"])
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
