"""``striata bench warp``: g1_tracking on MuJoCo Warp with the PPO learner on the same device.

Thousands of G1s in one ``mujoco_warp.Data`` (``striata.envs.tasks.g1_tracking.device_env``), PPO acting
and updating on the same device from device-tensor rollouts (``striata.learner.device_rollout``): env
steps/s with training (collect + update), env steps/s while collecting, and PPO update samples/s,
timed with the device synchronised at each boundary. Warp's CPU device runs it too (small
``num_envs``: that is what the tests do); the figures that matter come from a CUDA device.
"""

from __future__ import annotations

from typing import Any

import torch

from striata.errors import ConfigFileError
from striata.experiment import ExperimentConfig


def bench_warp(
    config: ExperimentConfig, num_envs: int, device: str, updates: int, steps: int | None = None
) -> dict[str, Any]:
    """Train for ``updates`` PPO iterations of ``steps`` env steps (default: the actors' chunk length)."""
    import warp as wp

    from striata.envs.tasks.g1_tracking.device_env import G1TrackingDeviceEnv
    from striata.learner.device_rollout import DeviceRollout, train
    from striata.learner.ppo import PPO
    from striata.learner.trainer import ppo_input_dims

    if config.task != "g1_tracking" or config.algo != "ppo":
        raise ConfigFileError(
            f"config: task/algo: bench warp runs g1_tracking with ppo, got {config.task} / {config.algo}"
        )
    wp.config.quiet = True
    task = config.task_settings()
    env = G1TrackingDeviceEnv(
        task, num_envs, device=device, seed=config.seed, nconmax=task.warp.nconmax, njmax=task.warp.njmax
    )
    torch_device = env.device
    ppo_cfg = config.ppo.model_copy(update={"device": str(torch_device), "seed": config.seed})
    obs = env.reset()
    dims = ppo_input_dims(ppo_cfg, obs)
    ppo = PPO(
        ppo_cfg,
        *dims,
        env.action_dim,
        device=torch_device,
        symmetry=config.ppo_symmetry(),
        action_prior=config.ppo_action_prior(),
    )
    rollout = DeviceRollout(env, ppo, steps or config.actors.chunk_length)
    train(rollout, 1)  # compiles kernels and warms the allocator: not timed
    result = train(rollout, updates)
    history = result.pop("history")
    on_cuda = torch_device.type == "cuda"
    name = torch.cuda.get_device_name(torch_device) if on_cuda else "cpu (Warp CPU device)"
    env.close()
    return {
        "device": name,
        "num_envs": num_envs,
        "steps_per_update": rollout.steps,
        "updates": updates,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()},
        "mean_episode_length": [round(h.get("mean_length", float("nan")), 1) for h in history],
        "mean_episode_return": [round(h.get("mean_return", float("nan")), 3) for h in history],
        "value_loss": [round(h["value_loss"], 4) for h in history],
    }
