"""Ground-truth progress of panda_pick and the reward-model data set built from its rollouts."""

from __future__ import annotations

import json

import numpy as np

from envs.registry import make_env
from envs.tasks.panda.scripted import ScriptedPickPolicy
from reward_server.progress_model.config import DatasetConfig, PolicyMix
from reward_server.progress_model.dataset import KINDS, MATCHED, MISMATCHED, build_dataset, load_split


def tiny_dataset_config(folder) -> DatasetConfig:
    return DatasetConfig(
        folder=folder,
        image_size=32,
        episode_steps=36,
        frame_every=12,
        train_rounds=1,
        eval_rounds=1,
        policies=PolicyMix(scripted=2, drop=1, put_down=1, miss=1, stall=1, random=1),
    )


def test_pick_progress_rises_to_one_on_success_and_is_reported_before_reset():
    env = make_env("panda_pick", num_envs=4, seed=3)
    policy = ScriptedPickPolicy.for_env(env, seed=0)
    obs = env.reset()
    start = env.progress()
    assert np.all((start >= 0) & (start < 0.5))  # not even reached yet
    seen_success = np.zeros(4, dtype=bool)
    peak = start.copy()
    for _ in range(60):
        obs, _, terminated, truncated, info = env.step(policy(obs))
        policy.reset(terminated | truncated)
        assert info["progress"].shape == (4,)
        assert np.all((info["progress"] >= 0) & (info["progress"] <= 1))
        # The ended episode's last state, not the reset one, is what info reports.
        assert np.all(info["progress"][info["success"]] == 1.0)
        done = ~seen_success
        peak[done] = np.maximum(peak[done], info["progress"][done])
        seen_success |= info["success"]
    assert seen_success.all()
    assert np.all(peak >= 0.6)  # every env went through the grasp stage on its way


def test_dataset_has_frames_labels_and_every_kind_of_negative(tmp_path):
    cfg = tiny_dataset_config(tmp_path / "data")
    folder = build_dataset(cfg, show_progress=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["texts"][0] == cfg.task_text

    train = load_split(folder, "train")
    n_envs = cfg.policies.total
    assert train.frames.shape == (n_envs * 3, 32, 32, 3) and train.frames.dtype == np.uint8
    assert train.first_frames.shape == train.frames.shape
    assert train.frames.std() > 5  # rendered images, not blank buffers
    assert len(train) == 2 * len(train.frames)  # one task-text row + one mismatched row per frame

    matched = train.pairing == MATCHED
    mismatched = train.pairing == MISMATCHED
    assert set(train.kind[matched]) == set(range(len(KINDS)))  # failures, drops, stalls, random
    assert np.all((train.progress >= 0) & (train.progress <= 1))
    assert train.progress[matched].max() > 0.5
    n_task = 1 + len(cfg.paraphrases)
    assert np.all(train.text[mismatched] >= n_task)
    assert np.all(train.progress[mismatched] == 0) and np.all(train.success[mismatched] == 0)
    assert {train.texts[i] for i in train.text[mismatched]} <= set(cfg.mismatched_texts)

    held_out = load_split(folder, "eval")
    assert np.all(held_out.text[held_out.pairing == MATCHED] == 0)  # held-out asks with the task text
    assert not np.array_equal(held_out.frames, train.frames)  # other seeds, other rollouts

    # A second build with the same config reuses the folder instead of rolling out again.
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    build_dataset(cfg, show_progress=False)
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
