"""Isaac Lab adapter: task mapping and tensor conversions on CPU; the env itself where isaaclab imports."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from striata.envs.isaaclab_adapter import (
    ISAACLAB_TASKS,
    IsaacLabTaskError,
    isaaclab_task_id,
    policy_observation,
    split_dones,
)

HAS_ISAACLAB = importlib.util.find_spec("isaaclab") is not None


def test_task_names_map_to_isaaclab_ids():
    assert isaaclab_task_id("g1_velocity_flat") == "Isaac-Velocity-Flat-G1-v0"
    assert isaaclab_task_id("Isaac-Velocity-Rough-H1-v0") == "Isaac-Velocity-Rough-H1-v0"
    assert all(task_id.startswith("Isaac-") for task_id in ISAACLAB_TASKS.values())
    with pytest.raises(IsaacLabTaskError, match="g1_tracking"):
        isaaclab_task_id("g1_tracking")


def test_time_outs_and_terminations_stay_apart():
    terminated, truncated = split_dones(torch.tensor([1, 0, 1, 0]), torch.tensor([False, True, True, False]))
    assert terminated.tolist() == [True, False, True, False]
    # A time-out in the same step as a failure is a failure: no bootstrap from it.
    assert truncated.tolist() == [False, True, False, False]


def test_observation_groups():
    policy = torch.arange(12.0).reshape(4, 3)
    assert policy_observation({"policy": policy}) is policy
    groups = policy_observation({"policy": policy, "critic": policy * 2})
    assert groups["critic"][3].tolist() == [18.0, 20.0, 22.0]
    with pytest.raises(ValueError, match="no tensor groups"):
        policy_observation({"note": "x"})


@pytest.mark.skipif(not HAS_ISAACLAB, reason="isaaclab is not installed (Isaac Sim + Isaac Lab, GPU)")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="Isaac Lab needs a CUDA GPU")
def test_isaaclab_env_steps_on_gpu_tensors():
    from striata.envs.isaaclab_adapter import IsaacLabEnv
    from striata.learner.config import PPOConfig
    from striata.learner.device_rollout import DeviceRollout, train
    from striata.learner.ppo import PPO

    env = IsaacLabEnv("g1_velocity_flat", num_envs=8)
    obs = env.reset()
    assert obs.shape[0] == 8 and obs.is_cuda
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(8, env.action_dim, device=env.device))
        assert reward.shape == (8,) and not (terminated & truncated).any()
        assert info["success"].shape == (8,) and info["final_obs"].shape == obs.shape
    # PPO on the same GPU from device-tensor rollouts, as with the MuJoCo Warp backend.
    ppo = PPO(PPOConfig(device=str(env.device)), obs.shape[1], None, env.action_dim, device=env.device)
    figures = train(DeviceRollout(env, ppo, steps=24), updates=2)
    assert figures["env_steps"] == 2 * 24 * 8 and figures["ppo_update_samples_per_s"] > 0
    env.close()
