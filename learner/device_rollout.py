"""PPO with a GPU env backend on the learner's device: rollouts are device tensors from end to end.

``DeviceRollout`` steps an env whose ``step`` takes and returns torch tensors on the learner's
device (``striata.envs.tasks.g1_tracking.device_env.G1TrackingDeviceEnv`` on MuJoCo Warp, or
``striata.envs.isaaclab_adapter.IsaacLabEnv``; observations a tensor or a dict of them), acts with
``PPO.act_tensors`` and stacks ``T`` steps into a chunk of the trajectory contract
(``striata.learner.chunk``) whose arrays are tensors on that device; ``PPO.update`` takes it as it is.
Nothing crosses to the host per step; per rollout, one boolean gather picks the final
observations of the time-outs (its size is data-dependent) and the update reads its metrics once.
This is rsl_rl's on-policy runner shape, for the single-GPU case where Ray actors would only add
copies; the multi-node path stays the actor/learner pipeline of ``striata train``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from striata.learner.ppo import PPO


class DeviceRollout:
    """Collect ``steps`` env steps per chunk from a device env with ``ppo``'s current policy."""

    def __init__(self, env: Any, ppo: PPO, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.env, self.ppo, self.steps = env, ppo, steps
        self.obs = env.reset()
        self.episode_return = torch.zeros(env.num_envs, device=ppo.device)
        self.finished_returns: list[torch.Tensor] = []
        self.finished_lengths: list[torch.Tensor] = []
        # Per reward term, the sum over steps of its mean over envs (as the actors report it), on the device.
        self.term_sums: dict[str, torch.Tensor] = {}
        self.term_steps = 0

    @torch.no_grad()
    def collect(self) -> dict[str, Any]:
        """One chunk [T, N] of device tensors (``obs``, ``last_obs`` and ``final_obs`` as dicts)."""
        env, ppo = self.env, self.ppo
        plain = isinstance(self.obs, torch.Tensor)  # one observation tensor instead of groups

        def groups(x: Any) -> dict[str, torch.Tensor]:
            return {"obs": x} if plain else x

        def ungroup(x: dict[str, torch.Tensor]) -> Any:
            return x["obs"] if plain else x

        keys = list(groups(self.obs))
        obs: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        final: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        steps: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("actions", "rewards", "terminated", "truncated", "log_prob", "value")
        }
        for _ in range(self.steps):
            actions, log_prob, value = ppo.act_tensors(self.obs)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            for k in keys:
                obs[k].append(groups(self.obs)[k])
                final[k].append(groups(info["final_obs"])[k])
            for name, x in zip(steps, (actions, reward, terminated, truncated, log_prob, value), strict=True):
                steps[name].append(x)
            self.episode_return += reward
            done = terminated | truncated
            self.finished_returns.append(torch.where(done, self.episode_return, torch.nan))
            self.finished_lengths.append(torch.where(done, info["episode_length"], 0))
            self.episode_return = torch.where(done, 0.0, self.episode_return)
            for name, value in info.get("reward_terms", {}).items():
                self.term_sums[name] = self.term_sums.get(name, 0.0) + value.float().mean()
            self.term_steps += 1
            self.obs = next_obs
        chunk: dict[str, Any] = {name: torch.stack(values) for name, values in steps.items()}
        t, n = chunk["rewards"].shape
        truncated = chunk["truncated"]
        chunk.update(
            obs=ungroup({k: torch.stack(v) for k, v in obs.items()}),
            last_obs=self.obs,
            final_obs=ungroup({k: torch.stack(v)[truncated] for k, v in final.items()}),
            policy_version=torch.full((t, n), ppo.version, dtype=torch.int64, device=ppo.device),
            intervention=torch.zeros((t, n), dtype=torch.bool, device=ppo.device),
            reward_pending=torch.zeros((t, n), dtype=torch.bool, device=ppo.device),
            frame_ids=torch.full((t, n), -1, dtype=torch.int64, device=ppo.device),
        )
        return chunk

    def episode_stats(self) -> dict[str, float]:
        """Mean return and length of the episodes finished since the last call (one host read)."""
        if not self.finished_returns:
            return {"episodes": 0.0}
        returns = torch.stack(self.finished_returns)
        lengths = torch.stack(self.finished_lengths)
        self.finished_returns.clear()
        self.finished_lengths.clear()
        done = ~torch.isnan(returns)
        count = int(done.sum())
        if not count:
            return {"episodes": 0.0}
        return {
            "episodes": float(count),
            "mean_return": float(returns[done].mean()),
            "mean_length": float(lengths[done].float().mean()),
        }

    def reward_terms(self) -> dict[str, float]:
        """Each reward term's mean per env step since the last call (one host read)."""
        if not self.term_sums:
            return {}
        means = (torch.stack(list(self.term_sums.values())) / self.term_steps).tolist()
        names = list(self.term_sums)
        self.term_sums.clear()
        self.term_steps = 0
        return dict(zip(names, means, strict=True))


def train(rollout: DeviceRollout, updates: int, sync: bool = True) -> dict[str, Any]:
    """``updates`` PPO iterations (collect, then update); timings of each part, synchronised."""
    device = rollout.ppo.device

    def now() -> float:
        if sync and device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    collect_s = update_s = 0.0
    history = []
    for _ in range(updates):
        began = now()
        chunk = rollout.collect()
        collected = now()
        metrics = rollout.ppo.update(chunk)
        done = now()
        collect_s += collected - began
        update_s += done - collected
        history.append({**metrics, **rollout.episode_stats()})
    samples = updates * rollout.steps * rollout.env.num_envs
    return {
        "env_steps": samples,
        "collect_s": collect_s,
        "update_s": update_s,
        "env_steps_per_s_with_training": samples / (collect_s + update_s),
        "env_steps_per_s_collecting": samples / collect_s,
        "ppo_update_samples_per_s": samples / update_s,
        "history": history,
    }
