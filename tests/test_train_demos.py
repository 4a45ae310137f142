"""The learner side of sessions and labels: `striata train --demos` fills SAC's demo buffer from
sessions and buffer files (shapes checked against the task), and a person's label overrides the
reward model's success."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_session_dataset import feed, panda_messages

from striata.learner.checkpoint import buffer_path
from striata.learner.chunk import ChunkBuilder
from striata.learner.demos import DemoError, load_demos
from striata.learner.labels import Labels
from striata.learner.relabel import READY, Relabeller, ShapingConfig, resolve
from striata.learner.replay import ReplayBuffer
from striata.learner.session_dataset import SessionWriter

REPO = Path(__file__).resolve().parents[1]
STRIATA = [sys.executable, "-m", "striata"]
PICK_OBS, PICK_ACTIONS = (31,), 4


@pytest.fixture(scope="module")
def messages() -> list[dict]:
    return panda_messages(2)


def record(root: Path, messages: list[dict], version: str) -> Path:
    """Two real panda_pick episodes (15 + 7 steps) recorded the way the console records them."""
    with SessionWriter(
        root, task="panda_pick", task_text="pick", fps=10.0, cameras=["front"], version=version
    ) as writer:
        assert feed(writer, messages) == [0, 1]
    return root


@pytest.fixture(scope="module")
def session(tmp_path_factory, messages) -> Path:
    return record(tmp_path_factory.mktemp("demos") / "session", messages, "v3.0")


def synthetic_session(root: Path, obs_dim: int, action_dim: int, steps: int = 5) -> Path:
    with SessionWriter(root, task="panda_pick", task_text="pick", fps=10.0, cameras=[]) as writer:
        for t in range(steps):
            writer.add_step({"env": 0, "episode": 0, "t": t, "action": [0.1] * action_dim, "reward": 1.0,
                             "terminated": t == steps - 1, "truncated": False, "success": False,
                             "intervention": True, "label": -1, "obs": {"state": [float(t)] * obs_dim},
                             "next_obs": {"state": [t + 1.0] * obs_dim}})  # fmt: skip
        writer.end_episode({"env": 0, "episode": 0})
    return root


def test_load_demos_reads_sessions_and_buffer_files_and_checks_shapes(tmp_path, session, messages) -> None:
    recorded = ReplayBuffer(10)
    recorded.add({
        "obs": np.ones((6, 31), np.float32), "actions": np.zeros((6, 4), np.float32), "rewards": np.ones(6),
        "next_obs": np.ones((6, 31), np.float32), "terminated": np.zeros(6, bool),
        "intervention": np.ones(6, bool),
    })  # fmt: skip
    recorded.save(tmp_path / "buffers" / "demo_0.npz")
    older = record(tmp_path / "v21", messages, "v2.1")  # a session for LeRobot before 0.4
    buffer, sources = load_demos(
        [session, older, tmp_path / "buffers"], task="panda_pick", obs_shape=PICK_OBS,
        action_dim=PICK_ACTIONS, extra_capacity=100,
    )  # fmt: skip
    assert [(s.kind, s.episodes, s.transitions) for s in sources] == [
        ("session", 2, 22), ("session", 2, 22), ("buffer", 0, 6)
    ]  # fmt: skip
    assert len(buffer) == 50 and buffer.capacity == 150
    stored = buffer.transitions()
    assert stored["obs"].shape == (50, 31) and stored["intervention"][:44].sum() == 22
    for field in ("obs", "actions", "rewards", "next_obs", "terminated", "intervention"):
        np.testing.assert_array_equal(stored[field][:22], stored[field][22:44], err_msg=field)

    short = synthetic_session(tmp_path / "short", obs_dim=18, action_dim=4)
    with pytest.raises(DemoError) as error:
        load_demos([short], task="panda_pick", obs_shape=PICK_OBS, action_dim=PICK_ACTIONS)
    assert (
        str(error.value)
        == f"--demos {short}: observation.state has shape (18,), the task panda_pick expects (31,)"
    )
    wide = synthetic_session(tmp_path / "wide", obs_dim=31, action_dim=7)
    with pytest.raises(DemoError, match=r"action has shape \(7,\), the task panda_pick expects \(4,\)"):
        load_demos([wide], task="panda_pick", obs_shape=PICK_OBS, action_dim=PICK_ACTIONS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DemoError, match="neither a session folder"):
        load_demos([tmp_path / "empty"], task="panda_pick", obs_shape=PICK_OBS, action_dim=PICK_ACTIONS)


def _label_chunk(human_label: np.ndarray | None) -> dict:
    """Two envs, three steps, a labelled frame at every step; both episodes end at step 2."""
    builder = ChunkBuilder(2)
    for step in range(3):
        builder.add(
            np.full((2, 3), float(step)), np.zeros((2, 2)), np.zeros(2), np.full(2, step == 2),
            np.zeros(2, bool), {}, policy_version=0, reward_pending=np.ones(2, bool),
            frame_ids=np.array([step, 10 + step]),
            human_label=None if human_label is None else human_label[step],
        )  # fmt: skip
    chunk = builder.build(np.zeros((2, 3)))
    if human_label is None:
        del chunk["human_label"]  # a hand-made chunk without the field: the model decides alone
    return chunk


def test_a_human_label_overrides_the_reward_models_success() -> None:
    cfg = ShapingConfig(gamma=0.9, shaping_lambda=0.0, env_reward_weight=0.0, success_reward=5.0)
    relabeller = Relabeller(cfg, timeout_s=5.0, incremental=True)
    # The model: env 0 looks done at its last step, env 1 never does.
    frames = {0: 0.1, 1: 0.2, 2: 0.9, 10: 0.1, 11: 0.1, 12: 0.1}
    ids, done_prob, zeros = np.array(list(frames)), np.array(list(frames.values())), np.zeros(len(frames))
    relabeller.add_labels("a", Labels(ids, zeros == 0, zeros, done_prob, zeros, zeros))
    model_only, state, _ = resolve(_label_chunk(None), np.zeros((3, 2)), relabeller.labels, "a", cfg)
    assert (state == READY).all()
    np.testing.assert_array_equal(model_only, [[0, 0], [0, 0], [5, 0]])
    # A person says env 0 failed and env 1 succeeded: the labels replace the model's verdicts.
    human = np.array([[-1, -1], [-1, -1], [0, 1]], np.int8)
    labelled, _, _ = resolve(_label_chunk(human), np.zeros((3, 2)), relabeller.labels, "a", cfg)
    np.testing.assert_array_equal(labelled, [[0, 0], [0, 0], [0, 5]])
    # The same through the relabeller, as the learner gets it.
    relabeller.add_chunk("a", _label_chunk(human))
    (out,) = relabeller.ready()
    np.testing.assert_array_equal(out["rewards"], [[0, 0], [0, 0], [0, 5]])
    assert not out["reward_pending"].any()


def _train(args: list[str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*STRIATA, "train", *args, "--runs", str(tmp_path / "runs")], cwd=REPO, capture_output=True,
        text=True, timeout=timeout, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def test_train_with_demos_starts_with_them_in_the_demo_buffer(tmp_path, session) -> None:
    small = [
        "actors.num_actors=1", "actors.envs_per_actor=2", "actors.chunk_length=10", "actors.num_cpus=0.5",
        "eval.every_s=600", "eval.episodes=2", "eval.num_envs=2", "sac.batch_size=32",
        "learner.learning_starts=40", "total_env_steps=120", "max_minutes=2", "checkpoint_every_s=600",
        "task_config.episode_length_s=3",
    ]  # fmt: skip
    args = ["configs/panda_pick.yaml", "--demos", str(session)]
    for setting in small:
        args += ["--set", setting]
    result = _train(args, tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sac.demo_ratio is 0; using 0.5" in result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["demos"] == {"sources": [str(session.resolve())], "loaded": 22}
    assert (
        summary["demo_size"] == 22 and summary["policy_version"] > 0
    )  # SAC updated with demos in its batches
    run_dir = Path(summary["run_dir"])
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["demos"] == [str(session.resolve())] and config["sac"]["demo_ratio"] == 0.5
    checkpoint = max((run_dir / "checkpoints").glob("ckpt_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    demo = ReplayBuffer.load(buffer_path(checkpoint, "demo"))
    assert len(demo) == 22 and demo.transitions()["intervention"].sum() == 11


def test_train_refuses_demos_that_do_not_fit_or_an_on_policy_algo(tmp_path) -> None:
    short = synthetic_session(tmp_path / "short", obs_dim=18, action_dim=4)
    result = _train(["configs/panda_pick.yaml", "--demos", str(short)], tmp_path, timeout=120)
    assert result.returncode == 2
    expected = f"error: --demos {short}: observation.state has shape (18,), the task panda_pick expects (31,)"
    assert result.stderr.strip().splitlines()[-1] == expected
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made
    result = _train(["configs/g1_stand.yaml", "--demos", str(short)], tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "--demos: demonstrations are for SAC/RLPD; this config trains with algo ppo"
    )


def test_pixel_demonstrations_keep_the_frames_the_learner_reads(tmp_path) -> None:
    """`striata demos so101_pick --set 'cameras=[front,wrist]'` records frames; pixel SAC's demo buffer
    keeps the arm's own state (sac.obs_key proprio) and those frames, and a file without them is refused."""
    from striata.envs.registry import make_config
    from striata.envs.rollout import scripted_demonstrations

    config = make_config("so101_pick", {"cameras": ["front", "wrist"]})
    transitions = scripted_demonstrations("so101_pick", 1, num_envs=1, config=config)
    recorded = ReplayBuffer(len(transitions["rewards"]))
    recorded.add(transitions)
    recorded.save(tmp_path / "pixels.npz")
    cameras = {"front": (64, 64, 3), "wrist": (64, 64, 3)}
    buffer, _ = load_demos(
        [tmp_path / "pixels.npz"], task="so101_pick", obs_shape=(21,), action_dim=6, obs_key="proprio",
        cameras=cameras,
    )  # fmt: skip
    obs = buffer.sample(4, np.random.default_rng(0))["obs"]
    assert sorted(obs) == ["front", "proprio", "wrist"]
    assert obs["front"].dtype == np.uint8 and obs["front"].shape == (4, 64, 64, 3)

    state_only = ReplayBuffer(len(transitions["rewards"]))
    state_only.add(
        {**transitions, **{k: {"proprio": transitions[k]["proprio"]} for k in ("obs", "next_obs")}}
    )
    state_only.save(tmp_path / "state.npz")
    with pytest.raises(
        DemoError, match=r"no obs/front frames; .*striata demos so101_pick --set 'cameras=\[front,wrist\]'"
    ):
        load_demos(
            [tmp_path / "state.npz"], task="so101_pick", obs_shape=(21,), action_dim=6, obs_key="proprio",
            cameras=cameras,
        )  # fmt: skip
