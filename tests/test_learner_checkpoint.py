"""Checkpoints: atomic writes, weights-only loading, and resuming to bit-identical updates."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from striata.common.files import atomic_write
from striata.learner import checkpoint as ckpt
from striata.learner.checkpoint import buffer_path, load_checkpoint, save_checkpoint
from striata.learner.config import NetworkConfig, PPOConfig, SACConfig
from striata.learner.ppo import PPO
from striata.learner.replay import DemoBuffer, ReplayBuffer
from striata.learner.sac import SAC

torch.set_num_threads(1)
NET = NetworkConfig(hidden=[32, 32])


def chunk(seed: int, t: int = 6, n: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    truncated = np.zeros((t, n), bool)
    truncated[2, 1] = True
    return {
        "obs": rng.normal(size=(t, n, 5)).astype(np.float32),
        "last_obs": rng.normal(size=(n, 5)).astype(np.float32),
        "final_obs": rng.normal(size=(1, 5)).astype(np.float32),
        "actions": rng.normal(size=(t, n, 2)).astype(np.float32),
        "rewards": rng.normal(size=(t, n)).astype(np.float32),
        "terminated": np.zeros((t, n), bool),
        "truncated": truncated,
        "log_prob": np.full((t, n), -2.0, np.float32),
        "value": np.zeros((t, n), np.float32),
        "policy_version": np.zeros((t, n), np.int64),
        "intervention": np.zeros((t, n), bool),
        "reward_pending": np.zeros((t, n), bool),
        "frame_ids": np.full((t, n), -1, np.int64),
    }


def transitions(seed: int, count: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "obs": {"state": rng.normal(size=(count, 5)).astype(np.float32)},
        "next_obs": {"state": rng.normal(size=(count, 5)).astype(np.float32)},
        "actions": rng.uniform(-1, 1, (count, 2)).astype(np.float32),
        "rewards": rng.normal(size=count).astype(np.float32),
        "terminated": rng.random(count) < 0.1,
        "intervention": np.zeros(count, bool),
    }


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_ppo_resumes_to_identical_updates(tmp_path) -> None:
    cfg = PPOConfig(actor=NET, critic=NET, device="cpu")
    ppo = PPO(cfg, 5, None, 2)
    ppo.update(chunk(0))
    path = tmp_path / "ppo.pt"
    save_checkpoint(path, ppo, extra={"env_steps": 1234, "wall_s": 5.5})
    expected_global = (np.random.rand(), torch.rand(1))

    # Run A continues; run B is a fresh learner (another seed) restored from the checkpoint.
    obs = chunk(1)["last_obs"]
    actions_a = ppo.act(obs)[0]
    metrics_a = ppo.update(chunk(2))

    resumed = PPO(cfg.model_copy(update={"seed": 99}), 5, None, 2)
    loaded = load_checkpoint(path, resumed)
    assert loaded.extra == {"env_steps": 1234, "wall_s": 5.5} and loaded.buffers == {}
    assert (np.random.rand(), torch.rand(1)) == expected_global
    assert resumed.version == 1
    np.testing.assert_array_equal(resumed.act(obs)[0], actions_a)
    metrics_b = resumed.update(chunk(2))
    assert metrics_a == metrics_b
    for a, b in zip(params(ppo.model), params(resumed.model), strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(resumed.model.actor_normalizer.mean, ppo.model.actor_normalizer.mean)


def test_sac_resumes_with_its_buffers_to_identical_updates(tmp_path) -> None:
    cfg = SACConfig(
        actor=NET, critic=NetworkConfig(hidden=[32, 32], layer_norm=True), device="cpu", batch_size=32
    )
    sac = SAC(cfg, 5, 2)
    online, demo = ReplayBuffer(500), DemoBuffer(100)
    online.add(transitions(0, 300))
    demo.add(transitions(1, 50))
    for _ in range(3):
        sac.update(online, demo)
    path = tmp_path / "sac.pt"
    save_checkpoint(path, sac, buffers={"online": online, "demo": demo}, extra={"env_steps": 300})
    assert buffer_path(path, "online").exists() and buffer_path(path, "demo").exists()

    metrics_a = [sac.update(online, demo) for _ in range(3)]
    resumed = SAC(cfg.model_copy(update={"seed": 7}), 5, 2)
    loaded = load_checkpoint(path, resumed)
    assert isinstance(loaded.buffers["demo"], DemoBuffer) and len(loaded.buffers["online"]) == 300
    metrics_b = [resumed.update(loaded.buffers["online"], loaded.buffers["demo"]) for _ in range(3)]
    assert metrics_a == metrics_b
    for module in ("actor", "critic", "target_critic"):
        for a, b in zip(params(getattr(sac, module)), params(getattr(resumed, module)), strict=True):
            assert torch.equal(a, b)
    assert resumed.alpha == sac.alpha and resumed.version == sac.version == 6


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    ppo = PPO(PPOConfig(actor=NET, critic=NET, device="cpu"), 5, None, 2)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, ppo, extra={"step": 1})
    before = path.read_bytes()

    def crash(obj, f) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    ppo.update(chunk(0))
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, ppo, extra={"step": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
    fresh = PPO(PPOConfig(actor=NET, critic=NET, device="cpu"), 5, None, 2)
    assert load_checkpoint(path, fresh).extra == {"step": 1} and fresh.version == 0


class Payload:
    """An object a weights-only load must refuse to rebuild."""


def test_loading_is_weights_only_and_checks_the_algorithm(tmp_path) -> None:
    ppo = PPO(PPOConfig(actor=NET, critic=NET, device="cpu"), 5, None, 2)
    evil = tmp_path / "evil.pt"
    atomic_write(evil, lambda f: torch.save({"format": 1, "algorithm": "PPO", "state": Payload()}, f))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(evil, ppo)
    save_checkpoint(tmp_path / "ppo.pt", ppo)
    with pytest.raises(ValueError, match="holds a PPO checkpoint, not SAC"):
        load_checkpoint(tmp_path / "ppo.pt", SAC(SACConfig(device="cpu"), 5, 2))
