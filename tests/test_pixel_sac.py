"""Pixel SAC (DrQ, as SERL/HIL-SERL train from cameras): camera frames from a Panda env through chunks,
replay and updates, the encoder's gradients and target, augmentation, actors, checkpoints, ONNX export,
and the start-up checks (memory budget, missing cameras, bad settings)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from striata.actors.policy import make_acting_policy
from striata.learner.checkpoint import load_checkpoint, save_checkpoint
from striata.learner.chunk import ChunkBuilder, flatten_transitions
from striata.learner.config import LearnerSetupError, NetworkConfig, SACConfig
from striata.learner.encoders import frames_to_float, random_shift
from striata.learner.export import PolicyMetadata, export_policy, make_session, policy_inputs, read_metadata
from striata.learner.replay import DemoBuffer, ReplayBuffer
from striata.learner.sac import SAC
from striata.learner.trainer import SACTrainer, evaluate, transition_bytes

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # the Panda env's camera frames in these tests: 32x32 RGB
PANDA_STATE = 23  # panda_reach's state vector
SHAPES = {"front": (16, 16, 3)}  # synthetic frames where no env is needed


def pixel_cfg(**overrides: Any) -> SACConfig:
    settings: dict[str, Any] = {
        "actor": NetworkConfig(hidden=[32, 32]),
        "critic": NetworkConfig(hidden=[32, 32], layer_norm=True),
        "cameras": ["front"],
        "batch_size": 16,
        "device": "cpu",
    }
    return SACConfig(**{**settings, **overrides})


def observations(n: int, shapes: dict[str, tuple[int, int, int]] = SHAPES, seed: int = 0) -> dict:
    """Env-like dict observations: a float state [n, 5] and random uint8 frames per camera."""
    rng = np.random.default_rng(seed)
    obs: dict[str, np.ndarray] = {"state": rng.normal(size=(n, 5)).astype(np.float32)}
    for name, shape in shapes.items():
        obs[name] = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return obs


def filled(count: int = 64, shapes: dict[str, tuple[int, int, int]] = SHAPES) -> ReplayBuffer:
    rng = np.random.default_rng(1)
    buffer = ReplayBuffer(count)
    buffer.add(
        {
            "obs": observations(count, shapes, seed=2),
            "next_obs": observations(count, shapes, seed=3),
            "actions": rng.uniform(-1, 1, (count, 2)).astype(np.float32),
            "rewards": rng.normal(size=count).astype(np.float32),
            "terminated": rng.random(count) < 0.1,
            "intervention": np.zeros(count, bool),
        }
    )
    return buffer


@pytest.fixture(scope="module")
def panda() -> Iterator[tuple[Any, dict, Any]]:
    """A panda_reach env of 2 envs with a 32x32 front camera and 3-step episodes (so one chunk holds
    truncations), its first observation and a chunk of 5 random steps."""
    from striata.envs.registry import make_config, make_env

    config = make_config("panda_reach", {"cameras": ["front"], "image_size": SIZE, "episode_length_s": 0.3})
    env = make_env("panda_reach", num_envs=2, seed=0, config=config)
    rng = np.random.default_rng(0)
    builder = ChunkBuilder(env.num_envs)
    first = obs = env.reset()
    for _ in range(5):
        actions = rng.uniform(-1, 1, (env.num_envs, env.action_dim)).astype(np.float32)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        builder.add(obs, actions, reward, terminated, truncated, info, policy_version=0)
        obs = next_obs
    yield env, first, builder.build(obs)
    env.close()


def test_frames_go_from_a_panda_env_through_the_replay_into_updates(panda) -> None:
    env, first, chunk = panda
    assert first["front"].dtype == np.uint8 and first["front"].shape == (2, SIZE, SIZE, 3)
    assert chunk["obs"]["front"].shape == (5, 2, SIZE, SIZE, 3) and chunk["obs"]["front"].dtype == np.uint8
    assert chunk["truncated"].any() and chunk["final_obs"]["front"].dtype == np.uint8
    transitions = flatten_transitions(chunk)
    assert transitions["next_obs"]["front"].shape == (10, SIZE, SIZE, 3)

    trainer = SACTrainer(pixel_cfg(), first, env.action_dim, 100, learning_starts=0, updates_per_env_step=0.2)
    assert trainer.bytes_per_transition == 2 * (4 * PANDA_STATE + SIZE * SIZE * 3) + 4 * env.action_dim + 6
    metrics = trainer.consume(chunk)
    stored = trainer.online.transitions()
    assert sorted(stored["obs"]) == sorted(stored["next_obs"]) == ["front", "state"]
    assert stored["obs"]["front"].dtype == np.uint8 and stored["obs"]["state"].dtype == np.float32
    np.testing.assert_array_equal(stored["next_obs"]["front"], transitions["next_obs"]["front"])
    assert trainer.version == 2 and np.isfinite([metrics["critic_loss"], metrics["actor_loss"]]).all()

    batch = trainer.algo._tensors(trainer.algo.sample_batch(trainer.online, None))
    assert batch["obs"]["front"].shape == (16, 3, SIZE, SIZE) and batch["obs"]["front"].dtype == torch.float32
    assert batch["obs"]["state"].shape == (16, PANDA_STATE)
    actions = trainer.act_deterministic(first)
    assert actions.shape == (2, env.action_dim) and actions.dtype == np.float32
    # Deterministic evaluation reads the same dict observations.
    assert evaluate(trainer, env, num_episodes=2)["episodes"] >= 2


def test_actors_run_the_learners_encoder_on_their_observations(panda) -> None:
    env, first, chunk = panda
    cfg = pixel_cfg()
    trainer = SACTrainer(cfg, first, env.action_dim, 100, learning_starts=0, updates_per_env_step=0.2)
    trainer.consume(chunk)
    weights = trainer.policy_weights()
    assert any(key.startswith("encoder.encoders.front.") for key in weights)
    policy = make_acting_policy("sac", cfg.model_dump(mode="json"), first, env.action_dim, seed=3)
    policy.load(weights)
    np.testing.assert_array_equal(
        policy.act(first, explore=False)["actions"], trainer.act_deterministic(first)
    )
    explored = policy.act(first, explore=True)["actions"]
    assert explored.shape == (2, env.action_dim) and np.abs(explored).max() < 1


def test_a_trainer_resumes_with_its_frames_and_encoder(panda, tmp_path: Path) -> None:
    env, first, chunk = panda
    trainer = SACTrainer(pixel_cfg(), first, env.action_dim, 100, learning_starts=0, updates_per_env_step=0.2)
    trainer.consume(chunk)
    trainer.save(tmp_path / "ckpt_10.pt", extra={"env_steps": 10})
    resumed = SACTrainer(
        pixel_cfg(seed=4), first, env.action_dim, 100, learning_starts=0, updates_per_env_step=0.2
    )
    assert resumed.load(tmp_path / "ckpt_10.pt")["env_steps"] == 10
    stored, restored = trainer.online.transitions(), resumed.online.transitions()
    assert restored["obs"]["front"].dtype == np.uint8
    np.testing.assert_array_equal(restored["obs"]["front"], stored["obs"]["front"])
    np.testing.assert_array_equal(resumed.act_deterministic(first), trainer.act_deterministic(first))


def test_the_actor_loss_leaves_the_encoder_alone_and_the_critic_loss_trains_it() -> None:
    sac = SAC(pixel_cfg(), 5, 2, cameras=SHAPES)
    batch = sac._tensors(sac.sample_batch(filled(), None))
    actor_loss, _ = sac.actor_loss(batch)
    actor_loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in sac.encoder.parameters())
    assert all(p.grad is not None and p.grad.any() for p in sac.actor.parameters())
    critic_loss, _, _ = sac.critic_loss(batch)
    critic_loss.backward()
    assert all(p.grad is not None and p.grad.any() for p in sac.encoder.parameters())
    assert all(p.grad is None for p in sac.target_encoder.parameters())


def test_random_shift_moves_each_frame_by_at_most_pad_pixels_and_differently() -> None:
    pad, size = 4, 16
    x = torch.randint(0, 256, (32, size, size, 3), dtype=torch.uint8)
    shifted = random_shift(x, pad, torch.Generator().manual_seed(0)).permute(0, 3, 1, 2)
    padded = F.pad(x.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="replicate").to(torch.uint8)
    offsets = []
    for i in range(len(x)):
        # The crop of the padded frame it equals: offset (pad, pad) is the frame itself.
        found = [
            (dy - pad, dx - pad)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(shifted[i], padded[i, :, dy : dy + size, dx : dx + size])
        ]
        assert len(found) == 1, f"frame {i} is no crop of its padded frame"
        offsets.append(found[0])
    assert max(max(abs(dy), abs(dx)) for dy, dx in offsets) <= pad
    assert len(set(offsets)) > 8  # drawn per sample
    assert torch.equal(random_shift(x, 0), x)

    # SAC shifts training batches, never the frames it acts on.
    sac = SAC(pixel_cfg(), 5, 2, cameras=SHAPES)
    obs = observations(16)
    plain = frames_to_float(torch.from_numpy(obs["front"]))
    assert torch.equal(sac._obs(obs)["front"], plain)
    assert not torch.equal(sac._obs(obs, augment=True)["front"], plain)


def test_the_target_encoder_follows_the_encoder_by_polyak_averaging() -> None:
    sac = SAC(pixel_cfg(utd_ratio=1, tau=0.1), 5, 2, cameras=SHAPES)
    before = [p.clone() for p in sac.target_encoder.parameters()]
    sac.update(filled())
    for target, old, online in zip(
        sac.target_encoder.parameters(), before, sac.encoder.parameters(), strict=True
    ):
        torch.testing.assert_close(target, old + 0.1 * (online.detach() - old))
    assert not any(p.requires_grad for p in sac.target_encoder.parameters())
    assert not torch.equal(before[0], next(sac.target_encoder.parameters()))


def test_a_checkpoint_restores_the_encoders_and_identical_actions(tmp_path: Path) -> None:
    sac = SAC(pixel_cfg(), 5, 2, cameras=SHAPES)
    buffer = filled()
    for _ in range(3):
        sac.update(buffer)
    path = tmp_path / "sac.pt"
    save_checkpoint(path, sac, buffers={"online": buffer})
    obs = observations(4, seed=9)
    deterministic, explored = sac.act(obs, deterministic=True), sac.act(obs)
    metrics = sac.update(buffer)

    resumed = SAC(pixel_cfg(seed=7), 5, 2, cameras=SHAPES)
    loaded = load_checkpoint(path, resumed)
    assert loaded.buffers["online"].transitions()["obs"]["front"].dtype == np.uint8
    np.testing.assert_array_equal(resumed.act(obs, deterministic=True), deterministic)
    np.testing.assert_array_equal(resumed.act(obs), explored)
    assert resumed.update(loaded.buffers["online"]) == metrics  # the same shifts and noise drawn
    for name in ("encoder", "target_encoder"):
        for a, b in zip(getattr(sac, name).parameters(), getattr(resumed, name).parameters(), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(
        ValueError, match=r"checkpoint with an image encoder; this learner has sac.cameras \[\]"
    ):
        load_checkpoint(path, SAC(pixel_cfg(cameras=[]), 5, 2))


def test_onnx_export_takes_a_uint8_frame_per_camera_and_matches_torch(tmp_path: Path) -> None:
    shapes = {"front": (16, 16, 3), "wrist": (12, 20, 3)}
    sac = SAC(pixel_cfg(cameras=["front", "wrist"]), 5, 2, cameras=shapes)
    buffer = filled(shapes=shapes)
    for _ in range(3):
        sac.update(buffer)
    metadata = PolicyMetadata(
        task="panda_reach", robot="panda", algorithm="sac", action_type="ee_delta", joint_names=["j"],
        default_joint_pos=[0.0], action_scale=[1.0, 1.0], kp=[1.0], kd=[1.0], control_dt=0.1,
        observation_names=["state"], observation_sizes=[5], obs_dim=5, action_dim=2, policy_version=3,
        config_hash="0",
    )  # fmt: skip
    path = tmp_path / "pixels.onnx"
    report = export_policy(sac, metadata, path, recorded_obs=policy_inputs(sac, observations(8, shapes)))
    assert report.ok and report.recorded_samples == 8

    session = make_session(path)
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("obs", "tensor(float)", ["batch", 5]),
        ("front", "tensor(uint8)", ["batch", 16, 16, 3]),
        ("wrist", "tensor(uint8)", ["batch", 12, 20, 3]),
    ]
    read = read_metadata(path)
    assert read.cameras == ["front", "wrist"] and read.camera_sizes == [[16, 16, 3], [12, 20, 3]]
    assert read.camera_dtype == "uint8" and read.camera_layout == "NHWC"
    obs = observations(32, shapes, seed=5)
    feed = policy_inputs(sac, obs)
    assert sorted(feed) == ["front", "obs", "wrist"]
    onnx_actions = session.run(["actions"], feed)[0]
    assert np.abs(onnx_actions - sac.act(obs, deterministic=True)).max() < 1e-4

    # A state-only export carries no camera keys at all.
    plain = tmp_path / "state.onnx"
    export_policy(SAC(pixel_cfg(cameras=[]), 5, 2), metadata, plain)
    assert "cameras" not in make_session(plain).get_modelmeta().custom_metadata_map
    assert read_metadata(plain).cameras is None


def test_a_replay_whose_frames_exceed_the_memory_budget_is_refused() -> None:
    obs = {"state": np.zeros((2, PANDA_STATE)), "front": np.zeros((2, 64, 64, 3), np.uint8)}
    assert transition_bytes(pixel_cfg(), obs, 4) == 2 * (4 * PANDA_STATE + 64 * 64 * 3) + 4 * 4 + 6 == 24782
    with pytest.raises(
        LearnerSetupError,
        match=r"learner.replay_capacity 1000000 transitions x 24782 bytes = 24.78 GB exceeds "
        r"sac.replay_memory_gb 8 GB; at most 322814 transitions fit",
    ):
        SACTrainer(pixel_cfg(), obs, 4, 1_000_000, learning_starts=0, updates_per_env_step=1.0)
    SACTrainer(pixel_cfg(), obs, 4, 300_000, learning_starts=0, updates_per_env_step=1.0)  # 7.4 GB fits
    SACTrainer(pixel_cfg(replay_memory_gb=25), obs, 4, 1_000_000, learning_starts=0, updates_per_env_step=1.0)
    # The state alone: 1M transitions of 206 bytes are far inside the default budget.
    SACTrainer(pixel_cfg(cameras=[]), obs, 4, 1_000_000, learning_starts=0, updates_per_env_step=1.0)


def test_a_camera_the_env_does_not_render_is_named_with_the_keys_it_has() -> None:
    obs = {"state": np.zeros((2, PANDA_STATE)), "front": np.zeros((2, SIZE, SIZE, 3), np.uint8)}
    expected = (
        r"sac.cameras: 'wrist' is not in the env's observation; its observation keys are \['front', 'state'\]"
    )
    with pytest.raises(LearnerSetupError, match=expected):
        SACTrainer(pixel_cfg(cameras=["wrist"]), obs, 4, 100, learning_starts=0, updates_per_env_step=1.0)
    with pytest.raises(LearnerSetupError, match=expected):  # an actor's policy copy says the same
        make_acting_policy("sac", pixel_cfg(cameras=["wrist"]).model_dump(mode="json"), obs, 4, seed=0)
    with pytest.raises(
        LearnerSetupError, match=r"'front' is not in .*; its observation is one array, no cameras"
    ):
        SACTrainer(pixel_cfg(), obs["state"], 4, 100, learning_starts=0, updates_per_env_step=1.0)
    state_demos = DemoBuffer(10)  # what --demos loads: the state vector only
    state_demos.add({**filled(4).transitions(), "obs": np.zeros((4, 5)), "next_obs": np.zeros((4, 5))})
    with pytest.raises(LearnerSetupError, match=r"demonstrations hold no frames of sac.cameras \['front'\]"):
        SACTrainer(pixel_cfg(), obs, 2, 100, learning_starts=0, updates_per_env_step=1.0, demos=state_demos)
    floats = {**obs, "front": obs["front"].astype(np.float32)}
    with pytest.raises(LearnerSetupError, match=r"'front' holds float32 \(32, 32, 3\) rows; .* uint8"):
        SACTrainer(pixel_cfg(), floats, 4, 100, learning_starts=0, updates_per_env_step=1.0)


def test_the_replay_keeps_only_the_cameras_the_networks_read() -> None:
    rng = np.random.default_rng(0)
    obs = {
        "state": rng.normal(size=(2, 5)),
        "front": rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8),
        "wrist": rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8),
    }
    builder = ChunkBuilder(2)
    for _ in range(3):
        no = np.zeros(2, bool)
        builder.add(obs, np.zeros((2, 2), np.float32), np.zeros(2), no, no, {}, policy_version=0)
    chunk = builder.build(obs)
    pixels = SACTrainer(pixel_cfg(), obs, 2, 100, learning_starts=1000, updates_per_env_step=1.0)
    pixels.consume(chunk)
    assert sorted(pixels.online.transitions()["obs"]) == ["front", "state"]
    state_only = SACTrainer(
        pixel_cfg(cameras=[]), obs, 2, 100, learning_starts=1000, updates_per_env_step=1.0
    )
    state_only.consume(chunk)
    assert state_only.online.transitions()["obs"].shape == (6, 5)  # as before cameras: the state array


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"cameras": ["front", "front"]}, "cameras", "distinct"),
        ({"cameras": ["obs"]}, "cameras", "identifier other than obs, actions"),
        ({"cameras": ["front.left"]}, "cameras", "identifier"),
        ({"cameras": ["state"]}, "", "obs_key 'state' is the state vector"),
        ({"image_pad": -1}, "image_pad", "greater than or equal to 0"),
        ({"replay_memory_gb": 0}, "replay_memory_gb", "greater than 0"),
        ({"encoder": {"channels": [32, 0]}}, "encoder", "channels must be >= 1"),
        ({"encoder": {"feature_dim": 0}}, "encoder.feature_dim", "greater than or equal to 1"),
        ({"encoder": {"width": 3}}, "encoder.width", "Extra inputs are not permitted"),
    ],
)
def test_bad_pixel_settings_are_pydantic_errors_naming_the_field(
    settings: dict, field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SACConfig.model_validate(settings)
    error = caught.value.errors()[0]
    assert ".".join(str(part) for part in error["loc"]) == field
    assert message in error["msg"]


def test_the_pixel_config_fits_its_replay_budget_and_names_a_rendered_camera() -> None:
    from striata.experiment import load_experiment

    config = load_experiment(REPO / "configs" / "panda_reach_pixels.yaml", {})
    task = config.task_settings()
    assert config.sac.cameras == ["front"] and "front" in task.cameras and task.image_size == 64
    obs = {"state": np.zeros((1, PANDA_STATE)), "front": np.zeros((1, 64, 64, 3), np.uint8)}
    per_transition = transition_bytes(config.sac, obs, 4)
    assert config.learner.replay_capacity * per_transition <= config.sac.replay_memory_gb * 1e9


@pytest.mark.slow
def test_a_short_pixel_run_on_panda_reach_trains_checkpoints_and_exports(tmp_path: Path) -> None:
    from striata.deploy_cli import export_run

    small = {
        "task_config.cameras": "[front]", "task_config.image_size": SIZE, "task_config.episode_length_s": 2,
        "sac.cameras": "[front]", "sac.batch_size": 32, "actors.num_actors": 1, "actors.envs_per_actor": 4,
        "actors.chunk_length": 5, "learner.learning_starts": 40, "learner.replay_capacity": 5000,
        "total_env_steps": 160, "max_minutes": 5, "eval.every_s": 600, "eval.num_envs": 2, "eval.episodes": 2,
    }  # fmt: skip
    overrides = [arg for key, value in small.items() for arg in ("--set", f"{key}={value}")]
    striata = [sys.executable, "-m", "striata", "train", "configs/panda_reach.yaml", "--runs", str(tmp_path)]
    run = subprocess.run(
        [*striata, *overrides], cwd=REPO, capture_output=True, text=True, timeout=540, start_new_session=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout[run.stdout.index("{") :])
    assert summary["env_steps"] >= 160 and summary["replay_size"] > 0
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    assert list((run_dir / "checkpoints").glob("ckpt_*.pt"))

    result = export_run(run_dir, None, tmp_path / "pixels.onnx", recorded_steps=3)
    assert result["parity_ok"] and result["obs_dim"] == PANDA_STATE
    metadata = read_metadata(tmp_path / "pixels.onnx")
    assert metadata.cameras == ["front"] and metadata.camera_sizes == [[SIZE, SIZE, 3]]

    # Asking for a camera the env does not render: one line, exit 2, before any training.
    wrong = subprocess.run(
        [*striata, "--set", "sac.cameras=[front]", "--set", "actors.num_actors=1"],
        cwd=REPO, capture_output=True, text=True, timeout=240, start_new_session=True,
    )  # fmt: skip
    assert wrong.returncode == 2, wrong.stderr[-3000:]
    assert "error: sac.cameras: 'front' is not in the env's observation" in wrong.stderr
    assert "Traceback" not in wrong.stderr
