"""The progress model: text encoder, a tiny training run, the torch backend, audit metrics and the CLI."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from striata.cli import app
from striata.learner.progress_audit import audit, progress_spearman, success_scores
from striata.reward_server.backend import ScoreInput
from striata.reward_server.backends import make_backend
from striata.reward_server.config import TorchBackendConfig
from striata.reward_server.progress_model.backend import ProgressModelBackend
from striata.reward_server.progress_model.config import (
    DatasetConfig,
    ModelConfig,
    PolicyMix,
    RewardModelConfig,
    TrainConfig,
)
from striata.reward_server.progress_model.dataset import load_split
from striata.reward_server.progress_model.text_encoder import TextEncoder
from striata.reward_server.progress_model.train import train_reward_model


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward_model")
    cfg = RewardModelConfig(
        dataset=DatasetConfig(
            folder=root / "data",
            image_size=32,
            episode_steps=30,
            frame_every=10,
            train_rounds=1,
            eval_rounds=1,
            policies=PolicyMix(scripted=2, drop=0, put_down=0, miss=1, stall=0, random=1),
        ),
        model=ModelConfig(channels=(8, 16), hidden=32, max_batch=8),
        train=TrainConfig(epochs=6, batch_size=8, lr=3e-3, threads=1),
    )
    return cfg, train_reward_model(cfg, root / "checkpoint", show_progress=False)


def test_text_encoder_loads_the_shipped_model_and_caches(encoder, capsys):
    vectors = encoder.encode(["pick up the cube", "lift the cube", "open the top drawer", "lift the cube"])
    assert capsys.readouterr().err == ""  # no progress bar per call
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert encoder.cached == 3
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # a paraphrase is nearer than another task
    assert len(encoder.revision) == 16


def test_tiny_training_reduces_loss_and_backend_scores_a_batch_in_one_pass(trained):
    cfg, result = trained
    assert result["loss_last_epoch"] < result["loss_first_epoch"]
    assert set(result["held_out"]) >= {"spearman", "success_precision", "success_recall", "success_f1"}

    card = json.loads((Path(result["checkpoint"]) / "model.json").read_text())
    # What actors must render for this model: the camera, its scene name, the frame size, no shadows.
    assert card["camera"] == cfg.dataset.camera == "workspace" and card["scene_camera"] == "workspace"
    assert card["frame_size"] == [32, 32] and card["shadows"] is False

    backend = ProgressModelBackend.load(result["checkpoint"])
    assert backend.revision == result["revision"] and backend.max_batch == 8
    held_out = load_split(result["dataset"], "eval")
    frames = held_out.frames[:5]
    cam = cfg.dataset.camera
    inputs = [ScoreInput(task=cfg.dataset.task_text, mode="progress", frames={cam: f}) for f in frames]
    inputs.append(ScoreInput(task="open the top drawer", mode="success", frames={cam: frames[0]}))
    big = np.repeat(np.repeat(frames[1], 2, axis=0), 2, axis=1)  # 64x64: resized to the model's 32
    inputs.append(ScoreInput(task=cfg.dataset.task_text, mode="progress", frames={cam: big}))
    inputs.append(ScoreInput(task=cfg.dataset.task_text, mode="episode_score", frames={cam: frames[0]}))
    inputs.append(ScoreInput(task=cfg.dataset.task_text, mode="progress", frames={"wrist": frames[0]}))
    inputs.append(ScoreInput(task=cfg.dataset.task_text, mode="progress", frames={cam: frames[0][..., 0]}))

    outputs = backend.score(inputs)
    assert backend.forward_passes == 1
    assert [o.status for o in outputs] == ["ok"] * 7 + ["bad_request"] * 3
    for out in outputs[:7]:
        assert 0.0 <= out.progress <= 1.0 and 0.0 <= out.done_prob <= 1.0
    for out in outputs[7:]:
        assert math.isnan(out.progress) and math.isnan(out.done_prob) and out.detail
    # Batched scores equal one-by-one scores: inputs do not leak into each other.
    alone = backend.score([inputs[2]])[0]
    assert alone.progress == pytest.approx(outputs[2].progress, abs=1e-5)


def test_an_ensemble_answers_its_members_lowest_progress_and_success(trained, tmp_path):
    cfg, result = trained
    # A second member: the same data set, another training seed.
    other = train_reward_model(
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 1})}),
        tmp_path / "other", show_progress=False,
    )  # fmt: skip
    paths = [Path(result["checkpoint"]), Path(other["checkpoint"])]
    ensemble = make_backend(TorchBackendConfig(checkpoint=paths))
    members = [ProgressModelBackend.load(path) for path in paths]
    assert ensemble.model_id == "+".join(m.model_id for m in members)
    assert ensemble.revision == f"{result['revision']}+{other['revision']}"

    cam = cfg.dataset.camera
    frames = load_split(result["dataset"], "eval").frames[:6]
    inputs = [ScoreInput(task=cfg.dataset.task_text, mode="progress", frames={cam: f}) for f in frames]
    inputs.append(ScoreInput(task=cfg.dataset.task_text, mode="pairwise_delta", frames={cam: frames[0]}))
    outputs = ensemble.score(inputs)
    each = np.array([[(o.progress, o.done_prob) for o in m.score(inputs[:6])] for m in members])
    assert [o.status for o in outputs] == ["ok"] * 6 + ["bad_request"]
    np.testing.assert_allclose([o.progress for o in outputs[:6]], each[:, :, 0].min(axis=0), atol=1e-6)
    np.testing.assert_allclose([o.done_prob for o in outputs[:6]], each[:, :, 1].min(axis=0), atol=1e-6)
    np.testing.assert_allclose([o.uncertainty for o in outputs[:6]], each[:, :, 0].std(axis=0), atol=1e-6)
    assert (each[0, :, 0] != each[1, :, 0]).any()  # the members differ, so the minimum is a choice
    assert outputs[6].detail and math.isnan(outputs[6].progress)


def test_a_two_view_model_takes_one_frame_from_each_camera(tmp_path):
    cfg = RewardModelConfig(
        dataset=DatasetConfig(
            folder=tmp_path / "data", camera=["workspace", "side"], image_size=24, episode_steps=6,
            frame_every=3, train_rounds=1, eval_rounds=1,
            policies=PolicyMix(scripted=1, drop=0, put_down=0, miss=0, stall=0, random=1),
        ),
        model=ModelConfig(channels=(8,), hidden=16),
        train=TrainConfig(epochs=1, batch_size=4, threads=1),
    )  # fmt: skip
    result = train_reward_model(cfg, tmp_path / "model", show_progress=False)
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    assert card["camera"] == ["workspace", "side"] and card["scene_camera"] == ["workspace", "side"]
    frames = load_split(result["dataset"], "eval").frames
    assert frames.shape[1:] == (24, 48, 3)  # the two views side by side
    workspace, side = frames[:3, :, :24], frames[:3, :, 24:]
    assert (workspace != side).any()

    backend = ProgressModelBackend.load(result["checkpoint"])
    task = cfg.dataset.task_text
    inputs = [
        ScoreInput(task=task, mode="progress", frames={"workspace": w, "side": s})
        for w, s in zip(workspace, side, strict=True)
    ]
    big_side = np.repeat(np.repeat(side[0], 2, axis=0), 2, axis=1)  # each view is resized on its own
    inputs.append(
        ScoreInput(task=task, mode="progress", frames={"workspace": workspace[0], "side": big_side})
    )
    inputs.append(ScoreInput(task=task, mode="progress", frames={"side": side[1], "workspace": workspace[1]}))
    inputs.append(ScoreInput(task=task, mode="progress", frames={"workspace": workspace[0]}))
    inputs.append(ScoreInput(task=task, mode="progress", frames={"workspace": side[0], "side": workspace[0]}))
    outputs = backend.score(inputs)
    assert [o.status for o in outputs] == ["ok"] * 5 + ["bad_request", "ok"]
    assert "no 'side' camera frame" in outputs[5].detail
    text = torch.from_numpy(TextEncoder().encode([task] * 3))
    with torch.inference_mode():
        direct, _ = backend.model(torch.from_numpy(np.ascontiguousarray(frames[:3])), text)
    np.testing.assert_allclose([o.progress for o in outputs[:3]], direct.numpy(), atol=1e-5)
    assert outputs[4].progress == pytest.approx(outputs[1].progress, abs=1e-6)  # by name, not order
    assert outputs[6].progress != pytest.approx(
        outputs[0].progress, abs=1e-6
    )  # views are not interchangeable


def test_random_init_backend_is_deterministic_per_seed(encoder):
    frames = np.random.default_rng(0).integers(0, 255, (3, 80, 80, 3), dtype=np.uint8)
    cam = RewardModelConfig().dataset.camera
    inputs = [ScoreInput(task="pick up the cube", mode="progress", frames={cam: f}) for f in frames]
    first = ProgressModelBackend.random_init(seed=0)
    again = ProgressModelBackend.random_init(seed=0)
    other = ProgressModelBackend.random_init(seed=1)
    scores = [[o.progress for o in b.score(inputs)] for b in (first, again, other)]
    assert all(o.status == "ok" for o in first.score(inputs))
    assert scores[0] == scores[1] and scores[0] != scores[2]
    assert first.max_batch == RewardModelConfig().model.max_batch and first.forward_passes == 2

    # Frames decoded off the wire are read-only views, some at other sizes: no warning, same scores.
    readonly = [np.frombuffer(f.tobytes(), dtype=np.uint8).reshape(f.shape) for f in frames]
    big = np.repeat(np.repeat(frames[0], 2, axis=0), 2, axis=1)
    wire = [ScoreInput(task="pick up the cube", mode="progress", frames={cam: f}) for f in (*readonly, big)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs = first.score(wire)
    assert [o.progress for o in outputs[:3]] == pytest.approx(scores[0], abs=1e-6)
    assert 0.0 <= outputs[3].progress <= 1.0


def test_audit_metrics_on_known_arrays():
    true = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert progress_spearman(true**2, true) == pytest.approx(1.0)
    assert progress_spearman(-true, true) == pytest.approx(-1.0)
    assert progress_spearman(np.array([0.1, 0.3, 0.2, 0.4]), np.array([0.0, 0.1, 0.2, 0.3])) == pytest.approx(
        0.8
    )
    assert math.isnan(progress_spearman(np.ones(6), true))
    scores = success_scores(np.array([0.9, 0.2, 0.7, 0.1]), np.array([1, 1, 0, 0]))
    assert scores == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    perfect = audit(true, true, np.array([0, 0, 0, 0, 0.6, 1]), np.array([0, 0, 0, 0, 1, 1]))
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["success_f1"] == 1.0


def test_cli_bad_config_value_is_one_line_with_exit_code_2(tmp_path):
    config = tmp_path / "reward.yaml"
    config.write_text("train:\n  epochs: 0\n")
    result = CliRunner().invoke(app, ["train-reward", "--config", str(config)])
    assert result.exit_code == 2
    assert "train.epochs" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["train-reward", "--config", str(config), "--set", "model.colour=red"])
    assert result.exit_code == 2 and "unknown key 'model.colour'" in result.output


def test_audit_reward_rates_a_shipped_policy_as_the_simulator_does():
    """`striata audit-reward` with configs/panda_pick_vlm.yaml's model (reward_server/models) on a shipped
    policy's picks, frames sent by an actor's labeller to a reward server the command starts: progress
    ranks the states as the simulator does, and the model calls no success the simulator does not, and
    most of those it does (run 14's audit during training: recall 0.94)."""
    policy = "reward_server/models/panda_pick_policies/panda_pick_dense.onnx"
    args = ["audit-reward", "configs/panda_pick_vlm.yaml", "--policy", policy, "--num-envs", "4"]
    result = CliRunner().invoke(app, [*args, "--steps", "36", "--noise", "0", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["frames_sent"] == figures["labels_ok"] > 50
    assert figures["label_statuses"] == {"ok": figures["labels_ok"]}
    assert figures["episodes"] >= 4 and figures["episode_success_rate"] == 1.0
    assert figures["true_success_frames"] >= 4  # each episode's last state, the pick
    assert figures["spearman"] > 0.8
    assert figures["success_recall"] >= 0.7 and figures["success_precision"] == 1.0
