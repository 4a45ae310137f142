"""Ground-truth progress of panda_pick and the reward-model data set built from its rollouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from striata.envs.registry import make_env, task_entry
from striata.envs.tasks.panda.scripted import ScriptedPickPolicy
from striata.reward_server.progress_model.config import DatasetConfig, PolicyMix
from striata.reward_server.progress_model.dataset import MATCHED, MISMATCHED, build_dataset, load_split

KINDS = task_entry("panda_pick").progress_scene().kinds  # the rollout behaviours the task offers


def tiny_dataset_config(folder) -> DatasetConfig:
    return DatasetConfig(
        folder=folder,
        image_size=32,
        episode_steps=36,
        frame_every=12,
        boundary_frames=False,
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
    assert manifest["texts"][0] == cfg.task_text and manifest["kinds"] == list(KINDS)

    train = load_split(folder, "train")
    n_envs = cfg.policies.total
    assert train.frames.shape == (n_envs * 3, 32, 32, 3) and train.frames.dtype == np.uint8
    assert train.first_frames.shape == train.frames.shape
    assert sorted(set(train.episode)) == list(range(n_envs))  # one episode per env and round
    assert train.frames.std() > 5  # rendered images, not blank buffers
    assert len(train) == 2 * len(train.frames)  # one task-text row + one mismatched row per frame

    matched = train.pairing == MATCHED
    mismatched = train.pairing == MISMATCHED
    scripted_kinds = {KINDS.index(k) for k in KINDS if k != "learned"}
    assert set(train.kind[matched]) == scripted_kinds  # failures, drops, stalls, random
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


def test_more_rounds_render_only_the_new_shards_and_seeds_must_not_overlap(tmp_path):
    cfg = tiny_dataset_config(tmp_path / "data")
    folder = build_dataset(cfg, show_progress=False)
    shards = sorted(folder.glob("*/*.npz"))
    stamps = {path: path.stat().st_mtime_ns for path in shards}
    one_round = load_split(folder, "train")

    bigger = cfg.model_copy(update={"train_rounds": 2})
    build_dataset(bigger, show_progress=False)
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())  # reused as they are
    train = load_split(folder, "train")
    assert len(train.frames) == 2 * len(one_round.frames)
    assert np.array_equal(train.frames[: len(one_round.frames)], one_round.frames)
    assert train.episode.max() == 2 * cfg.policies.total - 1  # the second round's episodes are new ones
    assert np.all(train.frame < len(train.frames))

    # Fewer rounds again: the split holds only the configured rounds, though more shards are on disk.
    build_dataset(cfg, show_progress=False)
    assert len(load_split(folder, "train").frames) == len(one_round.frames)

    # Other rendering settings: every shard is rendered again.
    build_dataset(cfg.model_copy(update={"frame_every": 18}), show_progress=False)
    assert len(load_split(folder, "train").frames) == 2 * cfg.policies.total

    with pytest.raises(ValidationError, match="overlap"):
        DatasetConfig(seed=0, train_rounds=5, eval_seed=4)


def test_boundary_frames_add_the_states_where_success_begins_and_ends(tmp_path):
    """A training actor labels an episode's last frame, the first state past the success lift: the data
    set must hold such states, not only those every ``frame_every`` steps."""
    mix = PolicyMix(scripted=3, drop=1, put_down=0, miss=0, stall=0, random=0)
    cfg = tiny_dataset_config(tmp_path / "regular").model_copy(update={"policies": mix})
    regular = load_split(build_dataset(cfg, show_progress=False), "train")
    boundary_cfg = cfg.model_copy(update={"boundary_frames": True, "folder": tmp_path / "boundary"})
    boundary = load_split(build_dataset(boundary_cfg, show_progress=False), "train")

    seen = {frame.tobytes() for frame in boundary.frames}
    assert all(frame.tobytes() in seen for frame in regular.frames)  # the regular frames, and more
    regular_seen = {frame.tobytes() for frame in regular.frames}
    extra = np.array([frame.tobytes() not in regular_seen for frame in boundary.frames])
    matched = boundary.pairing == MATCHED
    for episode in range(mix.total):
        rows = matched & (boundary.episode[boundary.frame] == episode)
        if boundary.success[rows].any():  # a pick: it passed the success lift between regular steps
            assert extra[boundary.frame[rows]].any()
    drop = matched & (boundary.episode[boundary.frame] == 3)
    success, drop_extra = boundary.success[drop], extra[boundary.frame[drop]]
    ended = int(np.flatnonzero(success)[-1]) + 1  # the drop's first frame without success
    assert ended < len(success) and drop_extra[ended]  # rendered as it happens, between regular steps


def test_learned_policies_roll_out_from_their_exported_onnx_files(tmp_path):
    from striata.learner.config import SACConfig
    from striata.learner.export import PolicyMetadata, export_policy
    from striata.learner.sac import SAC

    env = make_env("panda_pick", num_envs=1, seed=0)
    obs_dim, action_dim = env.observation_dim, env.action_dim
    env.close()
    sac = SAC(SACConfig(), obs_dim=obs_dim, action_dim=action_dim, device="cpu")
    metadata = PolicyMetadata(
        task="panda_pick", robot="franka_panda_2f85", algorithm="sac", action_type="ee_delta",
        joint_names=[f"joint{i}" for i in range(1, 8)], default_joint_pos=[0.0] * 7,
        action_scale=[1.0] * action_dim, kp=[1.0] * 7, kd=[1.0] * 7, control_dt=0.1,
        observation_names=["state"], observation_sizes=[obs_dim], obs_dim=obs_dim, action_dim=action_dim,
        policy_version=0, config_hash="0" * 64,
    )  # fmt: skip
    policy = tmp_path / "sac.onnx"
    assert export_policy(sac, metadata, policy).ok
    mix = PolicyMix(scripted=1, drop=0, put_down=0, miss=0, stall=0, random=0, learned=2)
    cfg = tiny_dataset_config(tmp_path / "data").model_copy(
        update={"policies": mix, "learned_policies": [policy]}
    )
    train = load_split(build_dataset(cfg, show_progress=False), "train")
    learned = train.kind == KINDS.index("learned")
    assert learned.sum() == 2 * 2 * 3  # 2 envs x 3 frames x (task text + mismatched text)
    assert train.frames.std() > 5

    with pytest.raises(ValidationError, match="learned_policies"):
        DatasetConfig(policies=mix)
    missing = cfg.model_copy(update={"learned_policies": [tmp_path / "none.onnx"], "folder": tmp_path / "d2"})
    with pytest.raises(FileNotFoundError, match=r"none\.onnx"):
        build_dataset(missing, show_progress=False)
