"""PPO in one file (after rsl_rl's): GAE with time-out bootstrapping, clipped surrogate and value
losses, entropy bonus, KL-adaptive learning rate, optional left/right symmetry.

Learner side::

    ppo = PPO(PPOConfig(), obs_dim=160, critic_obs_dim=286, action_dim=29)
    metrics = ppo.update(chunks)          # chunks: list of trajectory chunks (learner/chunk.py)
    weights = ppo.policy_state()          # numpy dict, one object-store put per version

With ``cfg.symmetry`` asking for augmentation or a mirror loss, the learner is given the task's mirror
maps: ``PPO(cfg, ..., symmetry=task_entry(task).symmetry(cfg.symmetry.mirror))`` (the composition
root does it; the learner knows no task). Actor copies, which never update, need none.

Actor side (a CPU copy; each actor seeds its own sampling noise)::

    policy = PPO(cfg.model_copy(update={"device": "cpu", "seed": actor_seed}), 160, 286, 29)
    policy.load_policy_state(weights)     # whenever newer weights arrive
    actions, log_prob, value = policy.act(obs)   # obs: the env's obs (array or dict), numpy out
    builder.add(obs, actions, ..., policy_version=policy.version, log_prob=log_prob, value=value)

``update`` per call: (1) checks every chunk (``log_prob`` required; rewards must not be pending),
(2) updates the observation normalisers with the chunks' observations, (3) computes V(obs),
V(last_obs), V(final_obs) with the current critic (``recompute_values``; otherwise the chunk's
``value`` for V(obs)), (4) adds gamma * V(final_obs) to the reward of truncated steps and runs
GAE(lambda) with ``done = terminated | truncated``, (5) runs ``num_learning_epochs`` x
``num_mini_batches`` Adam steps. The ratio is taken against the chunk's ``log_prob`` (the acting
policy, so a lagging actor is corrected for); steps where a human acted (``intervention``) carry
no policy gradient, since their actions were not drawn from any policy, but still train the critic.
The KL for the adaptive schedule is measured against the policy as it was at the start of the
update (rsl_rl's rollout policy when there is no lag). ``version`` counts updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from striata.envs.action_prior import ActionPrior
from striata.envs.symmetry import Symmetry
from striata.learner.chunk import Chunk, ChunkError, validate_chunk
from striata.learner.config import PPOConfig
from striata.learner.device import resolve_device, to_device
from striata.learner.networks import GaussianActorCritic
from striata.learner.symmetry import TensorSymmetry


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    last_values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(lambda) over [T, N]: returns (advantages, returns = advantages + values).

    ``dones[t]`` cuts the recursion after step t (terminated or truncated); a truncated step's reward
    must already include gamma * V(final_obs). ``last_values`` [N] is V of the observation after T-1.
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    not_done = 1.0 - dones.float()
    for t in reversed(range(steps)):
        next_values = last_values if t == steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_values * not_done[t] - values[t]
        running = delta + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


def adaptive_learning_rate(lr: float, kl: float, desired_kl: float, min_lr: float, max_lr: float) -> float:
    """rsl_rl's schedule: divide by 1.5 when KL > 2 x desired, multiply by 1.5 when KL < desired / 2."""
    if kl > 2.0 * desired_kl:
        return max(min_lr, lr / 1.5)
    if 0.0 < kl < 0.5 * desired_kl:
        return min(max_lr, lr * 1.5)
    return lr


def gaussian_kl(
    mean_old: torch.Tensor, std_old: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """KL(old || new) of diagonal Gaussians, summed over action dims: [B]."""
    return torch.sum(
        torch.log(std / std_old)
        + (std_old.square() + (mean_old - mean).square()) / (2.0 * std.square())
        - 0.5,
        dim=-1,
    )


class PPO:
    """PPO learner and, on actors, the acting policy copy (see the module docstring)."""

    def __init__(
        self,
        cfg: PPOConfig,
        obs_dim: int,
        critic_obs_dim: int | None,
        action_dim: int,
        device: str | torch.device | None = None,
        symmetry: Symmetry | None = None,
        action_prior: ActionPrior | None = None,
    ) -> None:
        self.cfg = cfg
        self.autocast_bf16 = cfg.mixed_precision == "bf16"
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        self.obs_dim = obs_dim
        self.critic_obs_dim = obs_dim if critic_obs_dim is None else critic_obs_dim
        self.action_dim = action_dim
        # An own generator instead of the global RNG: actors in one process seeded apart never share
        # noise, and a checkpoint restores exactly the stream the learner used. Initial weights
        # depend on cfg.seed alone (fork_rng keeps the global RNG untouched).
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = GaussianActorCritic(
                obs_dim,
                self.critic_obs_dim,
                action_dim,
                cfg.actor,
                cfg.critic,
                cfg.init_noise_std,
                cfg.empirical_normalization,
                cfg.normalizer_clip,
                action_prior=cfg.action_prior is not None,
            ).to(self.device)
        if action_prior is not None:
            self._set_action_prior(action_prior)
        self.learning_rate = cfg.learning_rate
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.learning_rate)
        self.version = 0
        self.symmetry: TensorSymmetry | None = None
        if symmetry is not None:
            for what, mirror, dim in (
                ("actions", symmetry.actions, action_dim),
                ("policy_obs", symmetry.policy_obs, obs_dim),
                ("critic_obs", symmetry.critic_obs, self.critic_obs_dim),
            ):
                if mirror.dim != dim:
                    raise ValueError(
                        f"symmetry {cfg.symmetry.mirror!r}: the {what} mirror has dim {mirror.dim}, not {dim}"
                    )
            self.symmetry = TensorSymmetry(symmetry, self.device)

    def _set_action_prior(self, prior: ActionPrior) -> None:
        """Fill the model's prior layer (an acting copy without one gets the prior with the weights)."""
        if self.model.action_prior is None:
            raise ValueError("an action prior was given but ppo.action_prior names none")
        if prior.action_dim != self.action_dim or int(prior.index.max()) >= self.obs_dim:
            raise ValueError(
                f"action prior {self.cfg.action_prior!r} maps {int(prior.index.max()) + 1}+ observation "
                f"entries to {prior.action_dim} actions; this policy has {self.obs_dim} and {self.action_dim}"
            )
        self.model.action_prior.set(prior)

    # ----------------------------------------------------------------- observations
    def _split(self, obs: Any) -> tuple[Any, Any]:
        """(actor obs, critic obs) of an env observation; a dict without the critic key feeds both."""
        if isinstance(obs, dict):
            if self.cfg.actor_obs_key not in obs:
                raise KeyError(f"obs has keys {sorted(obs)}, the actor reads {self.cfg.actor_obs_key!r}")
            return obs[self.cfg.actor_obs_key], obs.get(self.cfg.critic_obs_key, obs[self.cfg.actor_obs_key])
        return obs, obs

    def _tensor(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        return to_device(x, self.device)

    # ----------------------------------------------------------------- acting
    @torch.inference_mode()
    def act(self, obs: Any, deterministic: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Actions [N, A], their log-probabilities [N] and values [N] (float32 numpy) of env obs [N, ...]."""
        actor_obs, critic_obs = self._split(obs)
        dist = self.model.distribution(self._tensor(actor_obs))
        if deterministic:
            actions = dist.mean
        else:
            noise = torch.randn(dist.mean.shape, generator=self.generator, device=self.device)
            actions = dist.mean + dist.stddev * noise
        log_prob = dist.log_prob(actions).sum(dim=-1)
        value = self.model.value(self._tensor(critic_obs))
        return actions.cpu().numpy(), log_prob.cpu().numpy(), value.cpu().numpy()

    @torch.inference_mode()
    def act_tensors(
        self, obs: Any, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``act`` for a GPU env backend: device obs tensors in, device tensors out, no host copy."""
        actor_obs, critic_obs = self._split(obs)
        dist = self.model.distribution(self._tensor(actor_obs))
        actions = dist.mean
        if not deterministic:
            actions = actions + dist.stddev * torch.randn(
                actions.shape, generator=self.generator, device=self.device
            )
        return actions, dist.log_prob(actions).sum(dim=-1), self.model.value(self._tensor(critic_obs))

    # ----------------------------------------------------------------- learning
    def _batch(self, chunks: Sequence[Chunk]) -> dict[str, torch.Tensor]:
        """Flat training samples of the chunks, with advantages and returns."""
        require = ("log_prob",) if self.cfg.recompute_values else ("log_prob", "value")
        for i, chunk in enumerate(chunks):
            if isinstance(chunk["rewards"], torch.Tensor):
                # A device rollout (learner.device_rollout) built on this device: checked by its builder.
                continue
            validate_chunk(chunk, require=require)
            pending = int(chunk["reward_pending"].sum())
            if pending:
                raise ChunkError(
                    f"chunk {i} has {pending} steps with reward_pending; relabel them before PPO"
                )
        size = sum(int(np.prod(c["rewards"].shape)) for c in chunks)
        if size < max(2, self.cfg.num_mini_batches):
            raise ValueError(f"{size} samples cannot fill {self.cfg.num_mini_batches} minibatches")
        split = [
            (self._split(c["obs"]), self._split(c["last_obs"]), self._split(c["final_obs"])) for c in chunks
        ]
        for (actor_obs, critic_obs), _, _ in split:
            self.model.update_normalizers(self._tensor(actor_obs), self._tensor(critic_obs))

        parts: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            for chunk, ((actor_obs, critic_obs), (_, last_critic), (_, final_critic)) in zip(
                chunks, split, strict=True
            ):
                t, n = chunk["rewards"].shape
                critic_obs = self._tensor(critic_obs)
                if self.cfg.recompute_values:
                    values = self.model.value(critic_obs.reshape(t * n, -1)).reshape(t, n)
                else:
                    values = self._tensor(chunk["value"])
                rewards = self._tensor(chunk["rewards"]).clone()
                truncated = torch.tensor(chunk["truncated"], device=self.device)  # a copy: read-only from Ray
                if truncated.any():
                    # Time-outs are not failures: credit the value of the state the episode was cut in.
                    rewards[truncated] += self.cfg.gamma * self.model.value(self._tensor(final_critic))
                dones = torch.as_tensor(chunk["terminated"] | chunk["truncated"], device=self.device)
                last_values = self.model.value(self._tensor(last_critic))
                advantages, returns = compute_gae(
                    rewards, values, last_values, dones, self.cfg.gamma, self.cfg.lam
                )
                sample = {
                    "obs": self._tensor(actor_obs).reshape(t * n, -1),
                    "critic_obs": critic_obs.reshape(t * n, -1),
                    "actions": self._tensor(chunk["actions"]).reshape(t * n, -1),
                    "old_log_prob": self._tensor(chunk["log_prob"]).reshape(-1),
                    "old_values": values.reshape(-1),
                    "advantages": advantages.reshape(-1),
                    "returns": returns.reshape(-1),
                    "policy_mask": self._tensor(~chunk["intervention"]).reshape(-1),
                }
                for key, value in sample.items():
                    parts.setdefault(key, []).append(value)
            batch = {key: torch.cat(value) for key, value in parts.items()}
            if self.cfg.normalize_advantage:
                adv = batch["advantages"]
                batch["advantages"] = (adv - adv.mean()) / (adv.std() + 1e-8)
            # The distribution before this update: the reference of the KL that drives the lr schedule.
            dist = self.model.distribution(batch["obs"])
            batch["old_mean"], batch["old_std"] = dist.mean, dist.stddev
        return batch

    def update(self, chunks: Chunk | Sequence[Chunk]) -> dict[str, float]:
        """One PPO update on ``chunks`` (a chunk or a list of chunks, any T and N); returns metrics."""
        chunks = [chunks] if isinstance(chunks, dict) else list(chunks)
        if not chunks:
            raise ValueError("PPO.update needs at least one chunk")
        if (self.cfg.symmetry.data_augmentation or self.cfg.symmetry.mirror_loss) and self.symmetry is None:
            raise ValueError(
                f"symmetry.data_augmentation / mirror_loss: this PPO has no mirror maps; build the learner "
                f"with symmetry= the task's {self.cfg.symmetry.mirror!r} (TaskEntry.symmetry)"
            )
        batch = self._batch(chunks)
        lags = np.concatenate([self.version - _host(c["policy_version"]).reshape(-1) for c in chunks])
        cfg = self.cfg
        if cfg.schedule == "adaptive" and 0 < cfg.critic_warmup_updates == self.version:
            # The warm-started actor's first update starts at the schedule's floor and the KL rule raises
            # the rate: at the run's initial rate, one update undid the shipped policy (success 0.8 -> 0.2).
            self._set_learning_rate(cfg.min_learning_rate)
        size = batch["advantages"].shape[0]
        minibatch = size // cfg.num_mini_batches
        # Metrics are summed on the device and read once per update: no host sync per minibatch for them.
        names = ["surrogate_loss", "value_loss", "entropy", "kl", "clip_fraction"]
        if cfg.symmetry.mirror_loss:
            names.append("mirror_loss")
        sums = torch.zeros(len(names), dtype=torch.float64, device=self.device)
        steps = 0
        for _ in range(cfg.num_learning_epochs):
            order = torch.randperm(size, generator=self.generator, device=self.device)
            for start in range(0, minibatch * cfg.num_mini_batches, minibatch):
                idx = order[start : start + minibatch]
                losses = self._minibatch_step({key: value[idx] for key, value in batch.items()})
                sums += torch.stack([losses[key] for key in names]).double()
                steps += 1
        self.version += 1
        metrics = {key: value / steps for key, value in zip(names, sums.tolist(), strict=True)}
        metrics.update(
            learning_rate=self.learning_rate,
            noise_std=self.model.log_std.detach().exp().mean().item(),
            num_samples=float(size),
            intervention_fraction=float(1.0 - batch["policy_mask"].mean()),
            policy_lag_mean=float(lags.mean()),
            policy_lag_max=float(lags.max()),
            policy_version=float(self.version),
        )
        return metrics

    def _minibatch_step(self, mb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One Adam step on a minibatch; returns its detached loss terms as device scalars."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            return self._minibatch_losses_and_step(mb)

    def _minibatch_losses_and_step(self, mb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        original = mb["obs"].shape[0]
        if cfg.symmetry.data_augmentation:
            assert self.symmetry is not None
            sym = self.symmetry
            mirrored = {
                "obs": sym.policy_obs(mb["obs"]),
                "critic_obs": sym.critic_obs(mb["critic_obs"]),
                "actions": sym.actions(mb["actions"]),
            }
            # A mirrored sample has the original's probability, advantage and return (rsl_rl's rule).
            mb = {key: torch.cat([value, mirrored.get(key, value)]) for key, value in mb.items()}

        dist = self.model.distribution(mb["obs"])
        log_prob = dist.log_prob(mb["actions"]).sum(dim=-1)
        entropy = dist.entropy().sum(dim=-1).mean()
        values = self.model.value(mb["critic_obs"])

        with torch.no_grad():
            kl = gaussian_kl(
                mb["old_mean"][:original],
                mb["old_std"][:original],
                dist.mean[:original],
                dist.stddev[:original],
            ).mean()
        # A warming critic leaves the actor alone: no surrogate, no mirror loss, and no KL to adapt to.
        warming = self.version < cfg.critic_warmup_updates
        if cfg.schedule == "adaptive" and not warming:
            self._set_learning_rate(
                adaptive_learning_rate(
                    self.learning_rate,
                    kl.item(),
                    cfg.desired_kl,
                    cfg.min_learning_rate,
                    cfg.max_learning_rate,
                )
            )

        ratio = torch.exp(log_prob - mb["old_log_prob"])
        adv = mb["advantages"]
        surrogate = -torch.min(
            ratio * adv, torch.clamp(ratio, 1.0 - cfg.clip_param, 1.0 + cfg.clip_param) * adv
        )
        mask = mb["policy_mask"]
        surrogate_loss = (surrogate * mask).sum() / mask.sum().clamp(min=1.0)

        returns = mb["returns"]
        if cfg.use_clipped_value_loss:
            old = mb["old_values"]
            clipped = old + (values - old).clamp(-cfg.clip_param, cfg.clip_param)
            value_loss = torch.max((values - returns).square(), (clipped - returns).square()).mean()
        else:
            value_loss = (values - returns).square().mean()

        loss = cfg.value_loss_coef * value_loss
        if not warming:
            loss = loss + surrogate_loss - cfg.entropy_coef * entropy
        out: dict[str, torch.Tensor] = {}
        if cfg.symmetry.mirror_loss:
            assert self.symmetry is not None
            obs = mb["obs"][:original]
            mean = dist.mean[:original]
            mirrored_mean = self.model(self.symmetry.policy_obs(obs))
            mirror_loss = (mirrored_mean - self.symmetry.actions(mean).detach()).square().mean()
            if not warming:
                loss = loss + cfg.symmetry.mirror_loss_coef * mirror_loss
            out["mirror_loss"] = mirror_loss.detach()

        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        clip_fraction = ((ratio - 1.0).abs() > cfg.clip_param).float().mean()
        out.update(
            surrogate_loss=surrogate_loss.detach(),
            value_loss=value_loss.detach(),
            entropy=entropy.detach(),
            kl=kl,
            clip_fraction=clip_fraction,
        )
        return out

    def _set_learning_rate(self, lr: float) -> None:
        self.learning_rate = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # ----------------------------------------------------------------- state
    def policy_state(self) -> dict[str, np.ndarray]:
        """Weights for actors (actor, critic, log-std, normalisers) as numpy, plus ``policy_version``."""
        state = {key: value.detach().cpu().numpy() for key, value in self.model.state_dict().items()}
        state["policy_version"] = np.array(self.version, dtype=np.int64)
        return state

    def load_policy_state(self, state: dict[str, np.ndarray]) -> None:
        # Copies: arrays from Ray's object store are read-only views.
        weights = {key: torch.tensor(value) for key, value in state.items() if key != "policy_version"}
        self.model.load_state_dict(weights)
        self.version = int(state["policy_version"])

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model (with normalisers), optimiser, lr, version, sampling RNG."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "learning_rate": self.learning_rate,
            "version": self.version,
            "generator": self.generator.get_state(),
            "config": self.cfg.model_dump_json(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._set_learning_rate(float(state["learning_rate"]))
        self.version = int(state["version"])
        self.generator.set_state(state["generator"])


def _host(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A small per-update array on the host (one read per update, never per step)."""
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
