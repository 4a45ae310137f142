"""ONNX export: parity with torch, metadata round trip, the motion side file, and the observation
the deploy controller builds equals the training env's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from striata.learner.export import (
    PARITY_TOLERANCE,
    PolicyArtifactError,
    PolicyMetadata,
    export_policy,
    load_motion,
    make_session,
    read_metadata,
)


@pytest.fixture(scope="module")
def g1_run(tmp_path_factory) -> Path:
    """A run folder of the G1 standing config with a checkpoint of a freshly built PPO learner."""
    from striata.envs.registry import make_env
    from striata.experiment import load_experiment
    from striata.run_dir import new_run_dir
    from striata.train import build_trainer

    root = tmp_path_factory.mktemp("runs")
    config = load_experiment(Path("configs/g1_stand.yaml"), {})
    run_dir = new_run_dir(config, root)
    trainer = build_trainer(config, make_env(config.task, num_envs=2, seed=0, config=config.task_settings()))
    trainer.algo.version = 7  # type: ignore[attr-defined]
    trainer.save(run_dir / "checkpoints" / "ckpt_4096.pt", extra={})
    return run_dir


def test_export_cli_parity_and_metadata_round_trip(g1_run: Path, tmp_path: Path) -> None:
    from striata.cli import app
    from striata.envs.motion.loaders import load_motion as load_clip
    from striata.envs.robots.g1 import G1

    out = tmp_path / "policy.onnx"
    result = CliRunner().invoke(app, ["export", str(g1_run), "-o", str(out), "--checkpoint", "4096"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["parity_ok"] and report["recorded_observations"] > 0
    assert max(report["parity_max_abs_diff"].values()) <= PARITY_TOLERANCE

    assert not out.with_name("policy.onnx.data").exists()  # one self-contained file
    md = read_metadata(out)
    assert md.joint_names == list(G1.joint_names)
    np.testing.assert_allclose(md.default_joint_pos, G1.default_pos)
    np.testing.assert_allclose(md.action_scale, G1.action_scale)
    np.testing.assert_allclose(md.kp, G1.kp)
    np.testing.assert_allclose(md.kd, G1.kd)
    np.testing.assert_allclose(md.standby_kp, G1.standby_kp_kd[0])
    assert md.control_dt == pytest.approx(0.02) and md.physics_dt == pytest.approx(0.005)
    assert md.clip_targets is True  # trained as it deploys
    assert md.observation_names == [
        "command_joint_pos",
        "command_joint_vel",
        "motion_anchor_ori_b",
        "base_ang_vel",
        "joint_pos",
        "joint_vel",
        "actions",
    ]
    assert sum(md.observation_sizes) == md.obs_dim == 154
    assert (md.task, md.algorithm, md.policy_version, md.action_type) == (
        "g1_tracking",
        "ppo",
        7,
        "joint_position",
    )
    assert len(md.config_hash) == 64

    session = make_session(out)
    assert [i.name for i in session.get_inputs()] == ["obs"]
    assert [o.name for o in session.get_outputs()] == ["actions"]
    assert session.run(["actions"], {"obs": np.zeros((3, 154), np.float32)})[0].shape == (3, 29)

    motion = load_motion(out, md)
    assert motion is not None and motion["joint_pos"].shape[1] == 29
    np.testing.assert_allclose(motion["joint_pos"][0], G1.default_pos, atol=1e-9)  # builtin:stand
    # The side file is a clip in its own right (what `striata eval` builds its env on).
    clip = load_clip(tmp_path / "policy.motion.npz", G1.joint_names)
    assert clip.fps == pytest.approx(1 / md.control_dt)
    np.testing.assert_allclose(clip.joint_pos, motion["joint_pos"])

    (tmp_path / "policy.motion.npz").write_bytes(b"tampered")
    with pytest.raises(PolicyArtifactError, match="SHA-256"):
        load_motion(out, md)


def test_export_refuses_an_unknown_checkpoint(g1_run: Path, tmp_path: Path) -> None:
    from striata.cli import app

    result = CliRunner().invoke(
        app, ["export", str(g1_run), "-o", str(tmp_path / "p.onnx"), "--checkpoint", "5"]
    )
    assert result.exit_code == 2
    assert "--checkpoint 5" in result.output and "4096" in result.output


def test_sac_exports_its_deterministic_tanh_actor(tmp_path: Path) -> None:
    import torch

    from striata.learner.config import SACConfig
    from striata.learner.sac import SAC

    sac = SAC(SACConfig(), obs_dim=18, action_dim=4, device="cpu")
    metadata = PolicyMetadata(
        task="panda_reach",
        robot="franka_panda_2f85",
        algorithm="sac",
        action_type="ee_delta",
        joint_names=[f"joint{i}" for i in range(1, 8)],
        default_joint_pos=[0.0] * 7,
        action_scale=[1.0] * 4,
        kp=[1.0] * 7,
        kd=[1.0] * 7,
        control_dt=0.1,
        observation_names=["state"],
        observation_sizes=[18],
        obs_dim=18,
        action_dim=4,
        policy_version=0,
        config_hash="0" * 64,
    )
    recorded = np.random.default_rng(1).normal(size=(64, 18))
    report = export_policy(sac, metadata, tmp_path / "sac.onnx", recorded_obs=recorded)
    assert report.ok and report.recorded_max_abs_diff is not None
    obs = recorded[:5].astype(np.float32)
    with torch.inference_mode():
        expected = sac.actor(torch.from_numpy(obs))[0].numpy()
    got = make_session(tmp_path / "sac.onnx").run(["actions"], {"obs": obs})[0]
    np.testing.assert_allclose(got, expected, atol=PARITY_TOLERANCE)
    assert np.abs(got).max() < 1.0
    assert read_metadata(tmp_path / "sac.onnx") == metadata


def test_controller_observation_equals_the_training_env_observation() -> None:
    """The deploy observer, fed only what a robot measures, rebuilds the env's policy observation."""
    from striata.deploy.observers import Measured, TrackingObserver
    from striata.deploy_cli import _robot_facts, _tracking_motion
    from striata.envs.registry import make_config, make_env
    from striata.envs.robots.g1 import ANCHOR_BODY, G1

    config = make_config(
        "g1_tracking",
        {
            "state_estimation": False,
            "observation_noise": {"enabled": False},
            "randomization": {"enabled": False},
        },
    )
    env = make_env("g1_tracking", num_envs=2, seed=3, config=config)
    obs = env.reset()
    metadata = PolicyMetadata(
        task="g1_tracking",
        algorithm="ppo",
        control_dt=env.step_dt,
        observation_names=[n for n, _ in env.observation_terms],
        observation_sizes=[s for _, s in env.observation_terms],
        obs_dim=154,
        action_dim=29,
        policy_version=0,
        config_hash="0" * 64,
        **_robot_facts("g1_tracking", env),
    )
    assert metadata.anchor_body == ANCHOR_BODY
    observer = TrackingObserver(metadata, _tracking_motion(env))
    rng = np.random.default_rng(0)
    actions = np.zeros(29)
    for _ in range(6):
        qpos, qvel = env.qpos[0].copy(), env.qvel[0].copy()
        # The env's robot and reference share a heading: no turn (start() would align frame 0 of the clip).
        observer.step = int(env.frame_index[0])
        built = observer.observe(
            Measured(qpos[env.mdp.joint_qpos_adr], qvel[env.mdp.joint_dof_adr], qpos[3:7], qvel[3:6], actions)
        )
        np.testing.assert_allclose(built[0], obs["policy"][0], atol=1e-5)
        actions = rng.uniform(-0.3, 0.3, size=29)
        obs, *_ = env.step(np.stack([actions, actions]))
    assert G1.joint_names == tuple(metadata.joint_names)
