"""The MuJoCo Warp path on Warp's CPU device: the backend (envs/warp_batch.py) tracks MuJoCo's CPU batch,
the device env (g1_tracking/device_env.py) scores like the CPU env through the same MDP, and
``striata train`` / ``striata bench warp`` train PPO with it (learner/device_rollout.py,
striata/train_device.py). ``pytest -m warp`` runs just these: about 75 s on 2 cores the first time,
which compiles mujoco-warp's kernels into ~/.cache/warp, and 25 to 35 s after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from striata.envs import make_config, make_env

# Out of the default suite: the first run compiles mujoco-warp's kernels for the G1 (a minute on 2 cores).
pytestmark = [pytest.mark.slow, pytest.mark.warp]
wp = pytest.importorskip("warp", reason="warp-lang is not installed")
pytest.importorskip("mujoco_warp", reason="mujoco-warp is not installed")
wp.config.quiet = True

DETERMINISTIC = {"randomization": {"enabled": False}}
# The default constraint budget of mujoco-warp (64 rows per world) overflows once both feet touch.
WARP_CPU = {"backend": "warp", "warp": {"device": "cpu", "nconmax": 64, "njmax": 400}}


def _pair(num_envs: int, **overrides):
    cpu = make_env("g1_tracking", num_envs=num_envs, seed=0, config=make_config("g1_tracking", overrides))
    cfg = make_config("g1_tracking", {**overrides, **WARP_CPU})
    return cpu, make_env("g1_tracking", num_envs=num_envs, seed=0, config=cfg)


def test_warp_backend_tracks_the_cpu_backend_from_the_same_state():
    cpu, warp_env = _pair(4, **DETERMINISTIC)
    cpu.reset()
    warp_env.reset()
    warp_env.restore(cpu.snapshot())
    assert np.abs(warp_env.xpos - cpu.xpos).max() < 1e-5
    assert np.abs(warp_env.sensordata - cpu.sensordata).max() < 1e-4
    rng = np.random.default_rng(0)
    for _ in range(6):
        actions = rng.normal(0.0, 0.3, (4, cpu.action_dim))
        obs_c, rew_c, term_c, trunc_c, _ = cpu.step(actions)
        obs_w, rew_w, term_w, trunc_w, _ = warp_env.step(actions)
        # float32 physics against float64: contacts make small differences grow, so a loose bound.
        assert np.abs(warp_env.qpos - cpu.qpos).max() < 1e-3
        np.testing.assert_allclose(rew_w, rew_c, atol=1e-3)
        np.testing.assert_array_equal(term_w, term_c)
        np.testing.assert_array_equal(trunc_w, trunc_c)
        np.testing.assert_allclose(obs_w["policy"], obs_c["policy"], atol=5e-2)


def test_g1_tracking_runs_end_to_end_on_warp_with_auto_reset():
    cfg = make_config("g1_tracking", {"episode_length_s": 0.2, **WARP_CPU})
    env = make_env("g1_tracking", num_envs=3, seed=1, config=cfg)
    obs = env.reset()
    assert obs["policy"].shape == (3, env.observation_dim)
    saw_truncation = False
    for _ in range(env.max_episode_steps + 1):
        obs, reward, _, truncated, info = env.step(np.zeros((3, env.action_dim)))
        assert np.isfinite(obs["policy"]).all() and np.isfinite(reward).all()
        assert info["success"].shape == (3,)
        if truncated.any():
            saw_truncation = True
            assert info["final_obs"]["policy"].shape == (len(info["final_ids"]), env.observation_dim)
            assert (env.episode_step[truncated] == 0).all()
    assert saw_truncation


def test_warp_state_rows_are_set_per_env():
    cfg = make_config("g1_tracking", {**DETERMINISTIC, **WARP_CPU})
    env = make_env("g1_tracking", num_envs=3, seed=0, config=cfg)
    env.reset()
    before = env.batch.state.copy()
    qpos = env.qpos.copy()
    qpos[1, 2] += 0.1
    env.set_state(qpos[[1]], env.qvel[[1]].copy(), ids=np.array([1]))
    after = env.batch.state.copy()
    assert after.shape == before.shape == env.batch.state.shape
    np.testing.assert_allclose(after[[0, 2]], before[[0, 2]], atol=1e-6)
    assert abs(env.qpos[1, 2] - qpos[1, 2]) < 1e-6
    env.restore(before)
    np.testing.assert_allclose(env.batch.state.copy(), before, atol=1e-6)


def test_backend_field_is_checked():
    with pytest.raises(ValidationError, match="backend"):
        make_config("g1_tracking", {"backend": "jax"})
    assert make_config("g1_tracking").backend == "cpu"


def _device_env(num_envs: int, **overrides):
    import torch

    from striata.envs.tasks.g1_tracking.device_env import G1TrackingDeviceEnv

    cfg = make_config("g1_tracking", overrides)
    env = G1TrackingDeviceEnv(cfg, num_envs, device="cpu", seed=0, nconmax=64, njmax=400)
    return env, torch


def test_device_env_scores_like_the_cpu_env_without_leaving_the_device(monkeypatch):
    from striata.envs.tasks.g1_tracking.mdp import TrackingMDP

    # Each env's new actions wait its own number of physics steps, the same on both backends.
    monkeypatch.setattr(TrackingMDP, "action_delays", lambda self, rng, n: np.array([0, 1, 2, 1]))
    quiet = {**DETERMINISTIC, "observation_noise": {"enabled": False}, "action_delay_ticks": (0, 2)}
    dev, torch = _device_env(4, **quiet)
    cpu = make_env("g1_tracking", num_envs=4, seed=0, config=make_config("g1_tracking", quiet))
    dev.reset()
    cpu.reset()
    # The env's tensors are the Warp arrays themselves (no copies): writing one moves the simulation.
    assert dev.qpos.data_ptr() == dev.batch.data.qpos.ptr
    dev.qpos.copy_(torch.as_tensor(cpu.qpos, dtype=torch.float32))
    dev.qvel.copy_(torch.as_tensor(cpu.qvel, dtype=torch.float32))
    dev.ctrl.copy_(torch.as_tensor(cpu.ctrl, dtype=torch.float32))
    dev.frame_index = torch.as_tensor(cpu.frame_index)
    dev._physics(0)  # kinematics and sensors of the copied state
    rng = np.random.default_rng(0)
    for _ in range(6):
        actions = rng.normal(0.0, 0.3, (4, cpu.action_dim))
        obs_c, rew_c, term_c, trunc_c, info_c = cpu.step(actions)
        obs_d, rew_d, term_d, trunc_d, info_d = dev.step(torch.as_tensor(actions, dtype=torch.float32))
        assert isinstance(rew_d, torch.Tensor) and rew_d.device == dev.device
        np.testing.assert_allclose(rew_d.numpy(), rew_c, atol=1e-5)
        for name, value in info_c["reward_terms"].items():
            np.testing.assert_allclose(info_d["reward_terms"][name].numpy(), value, atol=1e-4, err_msg=name)
        np.testing.assert_array_equal(term_d.numpy(), term_c)
        np.testing.assert_array_equal(trunc_d.numpy(), trunc_c)
        np.testing.assert_array_equal(info_d["success"].numpy(), info_c["success"])
        for group in ("policy", "critic"):
            np.testing.assert_allclose(obs_d[group].numpy(), obs_c[group], atol=1e-3, err_msg=group)


def test_device_env_resets_ended_episodes_by_mask_with_randomisation():
    dev, torch = _device_env(3, episode_length_s=0.2)
    dev.reset()
    ended = torch.zeros(3, dtype=torch.bool)
    for _ in range(dev.max_episode_steps + 1):
        obs, reward, terminated, truncated, info = dev.step(torch.zeros(3, dev.action_dim))
        assert torch.isfinite(obs["policy"]).all() and torch.isfinite(reward).all()
        done = terminated | truncated
        assert (dev.episode_step[done] == 0).all() and (dev.episode_step[~done] > 0).all()
        assert info["final_obs"]["critic"].shape == obs["critic"].shape
        ended |= done
    assert ended.all()
    assert not torch.equal(dev.default_joint_pos[0], dev.default_joint_pos[1])  # per-env offsets
    # Per-env foot friction, as on the CPU backend, in the model the device steps with.
    friction = wp.to_torch(dev.batch.model.geom_friction)[:, dev.mdp.foot_geoms, 0]
    low, high = dev.cfg.randomization.friction
    assert friction.shape == (3, len(dev.mdp.foot_geoms)) and friction[0, 0] != friction[1, 0]
    assert ((friction >= low) & (friction <= high)).all() and (friction == friction[:, :1]).all()


def test_bench_warp_trains_g1_tracking_with_ppo_on_the_warp_device():
    import json

    from typer.testing import CliRunner

    from striata.cli import app

    args = ["bench", "warp", "configs/g1_tracking_warp.yaml", "--device", "cpu", "--num-envs", "4"]
    result = CliRunner().invoke(app, [*args, "--updates", "2", "--json", "--set", "ppo.device=cpu"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["env_steps"] == 2 * 24 * 4
    for key in ("env_steps_per_s_with_training", "env_steps_per_s_collecting", "ppo_update_samples_per_s"):
        assert figures[key] > 0
    assert len(figures["value_loss"]) == 2 and all(np.isfinite(figures["value_loss"]))


def test_train_with_the_device_runner_checkpoints_resumes_and_exports(tmp_path):
    import json

    from typer.testing import CliRunner

    from striata.cli import app

    small = [
        "--set", "runner=device", "--set", "task_config.warp.device=cpu", "--set", "ppo.device=cpu",
        "--set", "actors.envs_per_actor=4", "--set", "eval.num_envs=2", "--set", "eval.episodes=2",
    ]  # fmt: skip
    runs = tmp_path / "runs"
    args = ["train", "configs/g1_tracking_warp.yaml", "--runs", str(runs), *small]
    first = CliRunner().invoke(app, [*args, "--set", "total_env_steps=200"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output[first.output.index("{") :])
    per_update = 24 * 4
    assert summary["runner"] == "device" and summary["env_steps"] == 3 * per_update  # >= 200
    assert summary["evaluations"] and list(runs.glob("*/tb/events.*"))
    tags = _scalar_tags(summary["run_dir"])
    assert {f"reward_terms/{name}" for name in ("body_pos", "action_rate")} <= tags, tags
    run_dir = summary["run_dir"]
    second = CliRunner().invoke(app, ["train", "--resume", run_dir, "--set", "total_env_steps=400"])
    assert second.exit_code == 0, second.output
    resumed = json.loads(second.output[second.output.index("{") :])
    assert resumed["env_steps"] == 5 * per_update and resumed["policy_version"] == 5
    exported = CliRunner().invoke(app, ["export", run_dir, "-o", str(tmp_path / "policy.onnx")])
    assert exported.exit_code == 0, exported.output


def _scalar_tags(run_dir: str) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run_dir) / "tb"))
    events.Reload()
    return set(events.Tags()["scalars"])
