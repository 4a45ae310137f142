"""Reward-model rewards in training: shaping math, label deadlines, PPO masking, SAC only-labelled,
and the env rendering an ended episode's last state before its reset."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from striata.actors.frame_labels import FrameLabeller, RewardSpec
from striata.envs import make_env
from striata.envs.backend import FrameRequest
from striata.learner.chunk import ChunkBuilder, slice_chunk, validate_chunk
from striata.learner.config import PPOConfig, SACConfig
from striata.learner.labels import Labels
from striata.learner.relabel import (
    FAILED,
    READY,
    WAITING,
    AuditWindow,
    Relabeller,
    ShapingConfig,
    labelled_segments,
    potential_frames,
    resolve,
    shaped_rewards,
)
from striata.learner.trainer import PPOTrainer, SACTrainer

GAMMA = 0.9


def chunk_of(frame_ids, terminated=None, truncated=None, rewards=None, start=None, obs_dim=3) -> dict:
    """A reward-pending chunk whose obs encode (t, env) and whose steps name the given frames."""
    frame_ids = np.asarray(frame_ids, dtype=np.int64)
    t, n = frame_ids.shape
    terminated = np.zeros((t, n), bool) if terminated is None else np.asarray(terminated, bool)
    truncated = np.zeros((t, n), bool) if truncated is None else np.asarray(truncated, bool)
    rewards = np.zeros((t, n)) if rewards is None else np.asarray(rewards, float)
    builder = ChunkBuilder(n)
    for step in range(t):
        obs = np.full((n, obs_dim), 10.0 * step) + np.arange(n)[:, None]
        info = {}
        if truncated[step].any():
            ids = np.flatnonzero(truncated[step])
            info = {"final_ids": ids, "final_obs": obs[ids] + 0.5}
        builder.add(
            obs, np.full((n, 2), 0.1), rewards[step], terminated[step], truncated[step], info,
            policy_version=0, log_prob=np.zeros(n), value=np.zeros(n),
            reward_pending=np.ones(n, bool), frame_ids=frame_ids[step],
        )  # fmt: skip
    last = np.full((n, obs_dim), 10.0 * t) + np.arange(n)[:, None]
    return builder.build(last, start_frame_ids=np.full(n, -1) if start is None else np.asarray(start))


def labels(frames: dict[int, tuple[bool, float, float]]) -> Labels:
    """The model's labels of ``frames`` (frame id -> ok, progress, done_prob), without the truth."""
    ids = sorted(frames)
    unknown = np.full(len(ids), np.nan)
    ok, progress, done_prob = (np.array([frames[i][column] for i in ids]) for column in range(3))
    return Labels(np.array(ids), ok, progress, done_prob, true_progress=unknown, true_success=unknown)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_potential_frames_hold_between_labels_and_restart_with_each_episode() -> None:
    # env 0: a frame every step, terminates at step 2; env 1: every 2nd step (k=2), starts holding frame 7.
    frames = [[0, -1], [1, 4], [2, -1], [3, 5]]
    term = [[0, 0], [0, 0], [1, 0], [0, 0]]
    chunk = chunk_of(frames, terminated=term, start=[-1, 7])
    before, after = potential_frames(chunk)
    np.testing.assert_array_equal(after, [[0, 7], [1, 4], [2, 4], [3, 5]])
    # Step 3 of env 0 starts a new episode: its s_t has potential 0 (id -1).
    np.testing.assert_array_equal(before, [[-1, 7], [0, 7], [1, 4], [-1, 4]])


def test_shaping_on_known_arrays() -> None:
    cfg = ShapingConfig(gamma=GAMMA, shaping_lambda=2.0, env_reward_weight=0.5, success_reward=3.0)
    env = np.array([1.0, 1.0, 0.0])
    phi_before = np.array([0.0, 0.2, 0.6])
    phi_after = np.array([0.2, 0.6, 1.0])
    success = np.array([False, False, True])
    expected = 0.5 * env + 2.0 * (GAMMA * phi_after - phi_before) + 3.0 * success
    np.testing.assert_allclose(shaped_rewards(env, phi_before, phi_after, success, cfg), expected, rtol=1e-6)


def test_resolve_uses_terminal_frame_fresh_success_and_marks_failures() -> None:
    cfg = ShapingConfig(gamma=GAMMA, env_reward_weight=0.0, success_reward=1.0, success_threshold=0.5)
    relabeller = Relabeller(cfg, timeout_s=5.0, incremental=True)
    # env 0 labelled every step and succeeds at step 2 (its terminal frame 2 says done); env 1 every 2nd step.
    chunk = chunk_of(
        [[0, -1], [1, 11], [2, -1]], terminated=[[0, 0], [0, 0], [1, 0]], rewards=np.ones((3, 2))
    )
    relabeller.add_labels("a", labels({0: (True, 0.2, 0.0), 1: (True, 0.5, 0.1), 2: (True, 0.95, 0.9)}))
    relabeller.add_labels("a", labels({11: (False, np.nan, np.nan)}))
    rewards, state, _ = resolve(chunk, chunk["rewards"].copy(), relabeller.labels, "a", cfg)
    np.testing.assert_array_equal(state[:, 0], [READY, READY, READY])
    np.testing.assert_allclose(
        rewards[:, 0], [GAMMA * 0.2, GAMMA * 0.5 - 0.2, GAMMA * 0.95 - 0.5 + 1.0], rtol=1e-6
    )
    # env 1: phi(s_1) = 0 before its first label; frame 11 failed, so steps 1 and 2 (which read it) fail.
    np.testing.assert_array_equal(state[:, 1], [READY, FAILED, FAILED])
    assert rewards[0, 1] == pytest.approx(0.0)
    _, state_other, _ = resolve(chunk, chunk["rewards"], relabeller.labels, "another actor", cfg)
    assert (state_other[:, 0] == WAITING).all()


@pytest.mark.parametrize("incremental", [True, False])
def test_a_model_success_ends_the_episode_for_learning_but_not_a_time_out(incremental: bool) -> None:
    cfg = ShapingConfig(gamma=GAMMA, env_reward_weight=0.0, success_reward=1.0, success_ends_episode=True)
    relabeller = Relabeller(cfg, timeout_s=5.0, incremental=incremental)
    # The model calls frames 1 and 2 of env 0 done though the env went on (a wrong success the learner
    # could sit in); env 1 looks done at step 2, where the env timed out.
    chunk = chunk_of([[0, 10], [1, 11], [2, 12]], truncated=[[0, 0], [0, 0], [0, 1]])
    relabeller.add_chunk("a", chunk)
    done = {0: 0.1, 1: 0.8, 2: 0.8, 10: 0.0, 11: 0.0, 12: 0.9}
    relabeller.add_labels("a", labels({frame: (True, 0.5, p) for frame, p in done.items()}))
    (out,) = relabeller.ready()
    np.testing.assert_array_equal(out["terminated"], [[0, 0], [1, 0], [1, 0]])
    np.testing.assert_array_equal(out["truncated"], chunk["truncated"])
    assert not chunk["terminated"].any()  # the actor's chunk is not changed
    validate_chunk(out)
    plain_cfg = ShapingConfig(gamma=GAMMA, success_reward=1.0, success_ends_episode=False)
    plain = Relabeller(plain_cfg, timeout_s=5.0, incremental=incremental)
    plain.add_chunk("a", chunk)
    plain.labels = relabeller.labels
    assert not plain.ready()[0]["terminated"].any()


def test_sac_gets_only_labelled_steps_and_drops_the_rest_after_the_deadline() -> None:
    clock = Clock()
    cfg = ShapingConfig(gamma=GAMMA, env_reward_weight=1.0)
    relabeller = Relabeller(cfg, timeout_s=5.0, incremental=True, clock=clock)
    trainer = SACTrainer(SACConfig(batch_size=4), np.zeros((1, 3)), 2, 100, learning_starts=1000,
                         updates_per_env_step=1.0)  # fmt: skip
    chunk = chunk_of([[0, 3], [1, 4], [2, 5]], rewards=np.ones((3, 2)))
    relabeller.add_chunk("a", chunk)
    assert relabeller.ready() == []  # nothing labelled yet
    relabeller.add_labels("a", labels({0: (True, 0.1, 0), 1: (True, 0.2, 0), 3: (True, 0.3, 0)}))
    out = relabeller.ready()
    assert len(out) == 1 and (~out[0]["reward_pending"]).sum() == 3  # (0,0), (1,0), (0,1)
    for piece in out:
        trainer.consume(piece)
    assert trainer.replay_size() == 3
    stored = trainer.online.transitions()
    np.testing.assert_allclose(np.sort(stored["rewards"]), np.sort([1 + GAMMA * 0.1, 1 + GAMMA * 0.2 - 0.1,
                                                                    1 + GAMMA * 0.3]), rtol=1e-6)  # fmt: skip
    assert relabeller.waiting_steps == 3
    # Frame 4 fails: steps (1,1) and (2,1) read it. Frame 2 never comes back: (2,0) expires.
    relabeller.add_labels("a", labels({4: (False, np.nan, np.nan), 5: (True, 0.5, 0)}))
    assert relabeller.ready() == []
    assert relabeller.counts.failed == 2 and relabeller.waiting_steps == 1
    clock.now = 6.0
    assert relabeller.ready() == []
    assert relabeller.counts.expired == 1 and relabeller.waiting_steps == 0
    assert relabeller.counts.labelled == 3 and trainer.replay_size() == 3


def test_ppo_waits_until_the_deadline_then_masks_unlabelled_steps() -> None:
    clock = Clock()
    relabeller = Relabeller(ShapingConfig(gamma=GAMMA), timeout_s=5.0, incremental=False, clock=clock)
    frames = np.arange(8).reshape(4, 2)
    chunk = chunk_of(frames, truncated=[[0, 0], [0, 1], [0, 0], [0, 0]], rewards=np.ones((4, 2)))
    relabeller.add_chunk("a", chunk)
    # Everything but frame 5 (env 1, step 2) comes back: steps (2,1) and (3,1) read it.
    relabeller.add_labels("a", labels({i: (True, 0.1 * i, 0) for i in range(8) if i != 5}))
    assert relabeller.ready() == []  # PPO waits for the rollout's labels...
    clock.now = 5.0
    (out,) = relabeller.ready()  # ...until the deadline
    np.testing.assert_array_equal(out["reward_pending"], [[0, 0], [0, 0], [0, 1], [0, 1]])
    assert relabeller.counts.expired == 2 and relabeller.counts.labelled == 6
    segments = labelled_segments(out)
    assert sum(s["rewards"].size for s in segments) == 6
    assert not any(s["reward_pending"].any() for s in segments)
    # The env-1 piece is steps 0-1; step 1 was truncated so its final_obs row came along.
    piece = next(s for s in segments if s["rewards"].shape == (2, 1))
    np.testing.assert_array_equal(piece["final_obs"], [[11.5, 11.5, 11.5]])
    np.testing.assert_array_equal(piece["last_obs"], [[21.0, 21.0, 21.0]])
    trainer = PPOTrainer(PPOConfig(num_mini_batches=2), np.zeros((1, 3)), 2, steps_per_update=8)
    metrics = trainer.consume(out)
    assert metrics["num_samples"] == 6.0  # no gradient from the two unlabelled steps
    assert metrics["masked_fraction"] == pytest.approx(2 / 8)


def test_slice_chunk_keeps_truncated_rows_and_bootstrap_obs() -> None:
    chunk = chunk_of(np.full((3, 3), -1), truncated=[[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    piece = slice_chunk(chunk, 1, 3, np.array([1, 2]))
    validate_chunk(piece)
    np.testing.assert_array_equal(piece["final_obs"][:, 0], [11.5, 22.5])
    np.testing.assert_array_equal(piece["last_obs"][:, 0], [31.0, 32.0])


def test_audit_window_agrees_with_truth() -> None:
    window = AuditWindow(size=100)
    truth = np.linspace(0, 1, 20)
    success = (truth > 0.9).astype(float)
    rows = Labels(
        np.arange(20), np.ones(20, bool), progress=truth**2, done_prob=success, true_progress=truth,
        true_success=success,
    )  # fmt: skip
    window.add(rows)
    figures = window.figures()
    assert figures["spearman"] == pytest.approx(1.0)
    assert figures["success_f1"] == pytest.approx(1.0) and figures["count"] == 20
    # Only the latest ``size`` rows count, and only those the server scored in time.
    late = Labels.concat([rows] * 5)
    window.add(Labels(late.frame_ids, np.zeros(100, bool), *(np.zeros(100) for _ in range(4))))
    assert len(window) == 20
    window.add(late)
    assert len(window) == 100 and window.figures()["count"] == 100


def test_labels_are_typed_columns_of_one_length() -> None:
    empty = Labels.empty()
    assert len(empty) == 0 and empty.frame_ids.dtype == np.int64 and empty.ok.dtype == np.bool_
    two = Labels([3, 4], [1, 0], [0.5, 0.25], [0, 1], [np.nan, 0.2], [0, 1])
    assert two.progress.dtype == np.float32 and two.ok.tolist() == [True, False]
    both = Labels.concat([two, empty, two.select(two.ok)])
    assert both.frame_ids.tolist() == [3, 4, 3] and both.done_prob.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="ok has shape"):
        Labels([1, 2], [True], [0, 0], [0, 0], [0, 0], [0, 0])


def test_env_renders_an_ended_episode_before_its_reset() -> None:
    env = make_env("panda_pick", num_envs=2, seed=0, episode_length_s=0.3)
    env.reset()
    env.render_ended = FrameRequest("front", 24, 24, False)
    rng = np.random.default_rng(0)
    info = {}
    for _ in range(3):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, (2, env.action_dim)))
    assert (terminated | truncated).all()
    np.testing.assert_array_equal(info["final_frame_ids"], [0, 1])
    assert info["final_frames"].shape == (2, 24, 24, 3) and info["final_frames"].dtype == np.uint8
    # After the reset the arm is back home: the final frames show the moved arm, not the new episode.
    fresh = env.render("front", 24, 24, shadows=False)
    assert np.abs(info["final_frames"].astype(int) - fresh.astype(int)).sum() > 0
    env.close()


def test_two_cameras_render_side_by_side_and_go_out_as_one_frame_each() -> None:
    env = make_env("panda_pick", num_envs=2, seed=0, episode_length_s=0.3)
    env.reset()
    spec = RewardSpec(
        endpoint="tcp://127.0.0.1:9", task_text="lift", cameras=("workspace", "side"), height=16, width=16,
        shadows=False,
    )  # fmt: skip
    labeller = FrameLabeller(spec, actor_id=0, env=env)
    sent = []
    labeller.client.submit = lambda episode, t, task, frames: sent.append((episode, t, frames))
    rng = np.random.default_rng(0)
    _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, (2, env.action_dim)))
    labeller.after_step(terminated, truncated, info)
    views = {camera: env.render(camera, 16, 16, shadows=False) for camera in ("workspace", "side")}
    assert [(episode, t) for episode, t, _ in sent] == [(0, 1), (1, 1)]
    for env_id, (_, _, frames) in enumerate(sent):
        assert list(frames) == ["workspace", "side"]
        for camera, frame in frames.items():
            np.testing.assert_array_equal(frame, views[camera][env_id])
    # An ended episode's last state is rendered from both cameras too, before the reset.
    for _ in range(2):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, (2, env.action_dim)))
    assert info["final_frames"].shape == (2, 16, 32, 3)
    labeller.close()
    env.close()


def test_reward_model_cameras_are_checked_against_each_other_and_the_task(tmp_path) -> None:
    from pydantic import ValidationError

    from striata.cli import app
    from striata.experiment import ExperimentConfig

    base = {"task": "panda_pick", "algo": "sac"}
    with pytest.raises(ValidationError, match="distinct cameras"):
        ExperimentConfig.model_validate({**base, "reward_model": {"camera": ["side", "side"]}})
    with pytest.raises(ValidationError, match="render_camera"):
        ExperimentConfig.model_validate(
            {**base, "reward_model": {"camera": ["workspace", "side"], "render_camera": "front"}}
        )
    args = ["train", "configs/panda_pick_vlm.yaml", "--runs", str(tmp_path / "runs"), "--set",
            "reward_model.server=null", "--set", "reward_model.endpoint=tcp://127.0.0.1:9", "--set",
            "reward_model.camera=[workspace,top]"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "reward_model.camera: 'top' is not a camera of panda_pick" in lines[0]
    # A value that fits neither a name nor a list of names is one line too, not one per union member.
    for value, got in (("7", "(got 7)"), ("[workspace,[side]]", "item 1: input should be a valid string")):
        result = CliRunner().invoke(app, [*args[:-1], f"reward_model.camera={value}"])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("config: reward_model.camera: Input should be a valid string; or ")
        assert got in lines[0]


def test_a_resumed_run_checks_the_cameras_of_its_overrides(tmp_path) -> None:
    from striata.cli import app
    from striata.experiment import load_experiment
    from striata.run_dir import new_run_dir

    run_dir = new_run_dir(load_experiment("configs/panda_pick.yaml"), tmp_path / "runs")
    before = (run_dir / "config.yaml").read_text()
    args = ["train", "--resume", str(run_dir), "--set", "hil.enabled=true", "--set", "hil.camera=top"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "hil.camera: 'top' is not a camera of panda_pick" in lines[0]
    assert (run_dir / "config.yaml").read_text() == before  # the bad override is not recorded


def test_missing_progress_model_is_one_line_naming_the_command(tmp_path) -> None:
    from striata.cli import app

    missing = tmp_path / "no_model"
    override = f"reward_model.server.backend.checkpoint={missing}"
    args = ["train", "configs/panda_pick_vlm.yaml", "--set", override, "--runs", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0]
    assert "striata train-reward --config configs/reward_model_panda_pick.yaml" in lines[0]


def test_reward_model_section_needs_one_source_and_a_task_text() -> None:
    from pydantic import ValidationError

    from striata.experiment import ExperimentConfig

    base = {"task": "panda_pick", "algo": "sac"}
    with pytest.raises(ValidationError, match="exactly one of reward_model"):
        ExperimentConfig.model_validate({**base, "reward_model": {"enabled": True, "task_text": "lift"}})
    with pytest.raises(ValidationError, match="task_text"):
        ExperimentConfig.model_validate(
            {**base, "reward_model": {"enabled": True, "endpoint": "tcp://127.0.0.1:5790"}}
        )
    assert not ExperimentConfig.model_validate(base).reward_model.enabled
