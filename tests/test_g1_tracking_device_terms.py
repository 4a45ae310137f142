"""The tracking task's terms on torch tensors: one MDP definition for the CPU backend (numpy) and the
MuJoCo Warp backend (device tensors), checked term by term on the same state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from striata.envs import make_config, make_env
from striata.envs.arrays import bincount
from striata.envs.tasks.g1_tracking import events, terminations
from striata.envs.tasks.g1_tracking.config import SamplingConfig
from striata.envs.tasks.g1_tracking.sampling import AdaptiveStartSampler


def _as_torch(frame):
    values = {
        f.name: torch.as_tensor(getattr(frame, f.name), dtype=torch.float32)
        if isinstance(getattr(frame, f.name), np.ndarray)
        else getattr(frame, f.name)
        for f in dataclasses.fields(frame)
    }
    return type(frame)(**values)


@pytest.fixture(scope="module")
def env():
    cfg = make_config(
        "g1_tracking", {"observation_noise": {"enabled": False}, "rewards": {"limit_envelope": -1.0}}
    )
    env = make_env("g1_tracking", num_envs=6, seed=3, config=cfg)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):  # off the reference, so every error term is non-zero
        env.step(rng.normal(0.0, 0.5, (6, env.action_dim)))
    return env


def _torch_mdp(env):
    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32 if np.issubdtype(x.dtype, np.floating) else torch.int64)

    return env.mdp.map_arrays(tensor)


def test_observations_rewards_and_terminations_agree_on_numpy_and_torch(env) -> None:
    frame = env._gather()
    tframe = _as_torch(frame)
    rel, trel = frame.relative_reference(), tframe.relative_reference()
    for a, b in zip(rel, trel, strict=True):
        np.testing.assert_allclose(b.numpy(), a, atol=1e-5)

    mdp, tmdp = env.mdp, _torch_mdp(env)
    obs, tobs = mdp.observe(frame, env.rng), tmdp.observe(tframe, torch.Generator())
    assert tobs["policy"].dtype == torch.float32
    for group in ("policy", "critic"):
        np.testing.assert_allclose(tobs[group].numpy(), obs[group], atol=1e-5, err_msg=group)

    reward, terms = mdp.reward(frame, rel)
    treward, tterms = tmdp.reward(tframe, trel)
    assert list(tterms) == list(terms) == list(env.cfg.rewards)
    for name, value in terms.items():
        np.testing.assert_allclose(tterms[name].numpy(), value, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(treward.numpy(), reward, atol=1e-6)
    assert float(terms["body_pos"].min()) < 1.0  # the state is off the reference: a real comparison
    cfg = env.cfg
    flags = terminations.terminations(frame, cfg.terminations, rel[0], mdp.end_effectors)
    tflags = terminations.terminations(tframe, cfg.terminations, trel[0], tmdp.end_effectors)
    for name, value in flags.items():
        np.testing.assert_array_equal(tflags[name].numpy(), value, err_msg=name)
    np.testing.assert_array_equal(tmdp.terminated(tframe, trel[0]).numpy(), mdp.terminated(frame, rel[0]))


def test_every_array_of_the_mdp_converts_and_resets_sample_on_torch(env) -> None:
    tmdp = _torch_mdp(env)
    assert isinstance(tmdp.motion.table, torch.Tensor) and tmdp.motion.layout == env.mdp.motion.layout
    rng = torch.Generator().manual_seed(0)
    frames = tmdp.start_sampler(rng).sample(5)
    qpos, qvel = tmdp.reset_state(frames, rng)
    assert qpos.shape == (5, env.model.nq) and qvel.shape == (5, env.model.nv)
    joints = qpos[:, tmdp.joint_qpos_adr]
    assert (joints >= tmdp.soft_lower - 1e-6).all() and (joints <= tmdp.soft_upper + 1e-6).all()
    assert torch.allclose(qpos[:, 3:7].norm(dim=1), torch.ones(5))
    pose = tmdp.default_joint_pos(rng, 3)
    assert pose.shape == (3, 29) and not torch.equal(pose[0], pose[1])  # per-env calibration offsets


def test_randomisation_draws_from_a_torch_generator_within_the_same_bounds(env) -> None:
    rng = torch.Generator().manual_seed(0)
    rand = env.cfg.randomization
    kicks = events.push_velocities(rng, 1000, rand)
    assert kicks.shape == (1000, 6)
    bounds = torch.as_tensor(np.concatenate((rand.push_lin_vel, rand.push_ang_vel)), dtype=torch.float32)
    assert (kicks.abs() <= bounds).all() and (kicks.abs().amax(0) > 0.9 * bounds).all()
    qpos, qvel = torch.as_tensor(env.qpos[:2].copy()), torch.as_tensor(env.qvel[:2].copy())
    before = qpos.clone()
    scales = torch.as_tensor(env.mdp.reset_noise)
    events.perturb_reset_state(rng, qpos, qvel, scales, torch.as_tensor(env.mdp.joint_qpos_adr))
    assert torch.allclose(qpos[:, 3:7].norm(dim=1), torch.ones(2, dtype=qpos.dtype))
    assert not torch.equal(qpos, before)
    friction = events.sample_friction(rng, 4, 2, (0.3, 1.6))
    assert friction.shape == (4, 2) and torch.equal(friction[:, 0], friction[:, 1])


def test_adaptive_sampler_is_the_same_on_numpy_and_torch() -> None:
    cfg = SamplingConfig()
    cpu = AdaptiveStartSampler(500, 10, cfg, np.random.default_rng(0))
    like = torch.zeros(0, dtype=torch.float64)
    dev = AdaptiveStartSampler(500, 10, cfg, torch.Generator().manual_seed(0), like)
    fails = np.array([100, 101, 300, 499])
    cpu.record_failures(fails)
    # The device form counts by mask (no host-side index list): only the masked frames count.
    mask = torch.tensor([True, True, True, True, False])
    dev.record_failures(torch.as_tensor([100, 101, 300, 499, 7]), weights=mask)
    cpu.update()
    dev.update()
    np.testing.assert_allclose(dev.probabilities().numpy(), cpu.probabilities(), rtol=1e-12)
    assert cpu.probabilities()[cpu.bin_of(np.array([100]))[0]] > 1.5 / cpu.num_bins  # failures raise odds
    frames = dev.sample(2000)
    assert frames.dtype == torch.int64 and int(frames.min()) >= 0 and int(frames.max()) < 500
    np.testing.assert_array_equal(bincount(np.array([0, 2, 2]), 4, np.float64), [1, 0, 2, 0])


def test_bench_warp_without_cuda_is_one_line() -> None:
    pytest.importorskip("warp", reason="warp-lang is not installed")
    pytest.importorskip("mujoco_warp", reason="mujoco-warp is not installed")
    import warp as wp
    from typer.testing import CliRunner

    from striata.cli import app

    if wp.is_cuda_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(app, ["bench", "warp", "configs/g1_tracking_warp.yaml", "--num-envs", "2"])
    assert result.exit_code == 2
    assert "no CUDA device" in result.output and "Traceback" not in result.output


def test_device_runner_refuses_what_it_cannot_train_in_one_line() -> None:
    from typer.testing import CliRunner

    from striata.cli import app

    result = CliRunner().invoke(app, ["train", "configs/panda_reach.yaml", "--set", "runner=device"])
    assert result.exit_code == 2
    assert "runner" in result.output and "Traceback" not in result.output
