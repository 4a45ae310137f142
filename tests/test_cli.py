"""The striata CLI as a user runs it: help, JSON output, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from striata.cli import app

runner = CliRunner()


def test_help_lists_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("tasks", "rollout", "motion", "bench"):
        assert command in result.output


def test_rollout_prints_episode_statistics():
    result = runner.invoke(
        app, ["rollout", "g1_tracking", "--num-envs", "2", "--steps", "60", "--policy", "zero"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["env_steps"] == 120
    assert stats["episodes"] >= 1  # zero actions on tracking gains: the G1 falls and episodes end
    assert stats["mean_length"] > 0


@pytest.mark.parametrize("task", ["panda_pick", "so101_pick"])
def test_scripted_pick_rollout_succeeds(task: str):
    result = runner.invoke(app, ["rollout", task, "--num-envs", "4", "--steps", "60", "--policy", "scripted"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["episodes"] >= 4 and stats["success_rate"] >= 0.9


def test_scripted_policy_on_g1_is_a_clear_error():
    result = runner.invoke(app, ["rollout", "g1_tracking", "--steps", "1", "--policy", "scripted"])
    assert result.exit_code == 2
    assert "no scripted policy" in result.stderr


def test_unknown_config_key_is_one_line_naming_key_and_allowed_keys():
    result = runner.invoke(
        app, ["rollout", "g1_tracking", "--steps", "1", "--set", "rewards.body_poss.std=1"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "rewards.body_poss: unknown reward term 'body_poss'" in result.stderr
    assert "body_pos" in result.stderr and "anchor_ori" in result.stderr


def test_wrong_type_names_key_and_value():
    result = runner.invoke(app, ["rollout", "g1_tracking", "--steps", "1", "--set", "decimation=fast"])
    assert result.exit_code == 2
    assert "decimation" in result.stderr and "'fast'" in result.stderr


def test_unknown_task_lists_the_allowed_ones():
    result = runner.invoke(app, ["rollout", "g1_walk"])
    assert result.exit_code == 2
    assert "unknown task 'g1_walk'" in result.stderr and "panda_pick" in result.stderr


def test_malformed_clip_is_reported_without_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0,0.8,0,0,0,1\n")
    result = runner.invoke(app, ["motion", str(bad), "--fps", "30"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert str(bad) in result.stderr and "7 columns" in result.stderr


def test_motion_command_summarises_a_real_clip():
    import os
    from pathlib import Path

    clip = Path(os.environ["STRIATA_DATA"]) / "motions" / "J_ShortDance16_JazzWalk.csv"
    result = runner.invoke(app, ["motion", str(clip), "--fps", "60"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames"] == 531 and abs(summary["duration_s"] - 10.62) < 0.05


def test_bench_envs_json_shape():
    result = runner.invoke(
        app, ["bench", "envs", "--json", "--task", "g1_tracking", "--num-envs", "4", "--steps", "10"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)["tasks"]["g1_tracking"]
    assert figures["num_envs"] == 4
    assert figures["env_steps_per_s"] > 0 and figures["physics_env_steps_per_s"] > 0
    assert abs(figures["ratio"] - figures["env_steps_per_s"] / figures["physics_env_steps_per_s"]) < 0.01


def test_bench_envs_times_the_so101_cameras_with_both_mesh_sets():
    result = runner.invoke(
        app,
        ["bench", "envs", "--json", "--task", "so101_reach", "--num-envs", "2", "--steps", "10",
         "--render-frames", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["tasks"]["so101_reach"]["ratio"] > 0
    render = figures["so101_render"]
    for meshes in ("original", "decimated"):
        assert render[meshes]["front_ms"] > 0 and render[meshes]["wrist_ms_shadows"] > 0
    assert render["decimated"]["drawn_triangles"] < render["original"]["drawn_triangles"] / 10


def test_train_with_an_unknown_key_names_it_and_the_allowed_ones(tmp_path):
    result = runner.invoke(
        app, ["train", "configs/panda_reach.yaml", "--set", "actors.num_actor=3", "--runs", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown key 'actors.num_actor'" in result.stderr and "num_actors" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was started or written


def test_train_with_a_wrong_type_or_unknown_task_is_one_line(tmp_path):
    bad_type = runner.invoke(app, ["train", "configs/panda_reach.yaml", "--set", "total_env_steps=lots"])
    assert bad_type.exit_code == 2 and "total_env_steps" in bad_type.stderr and "'lots'" in bad_type.stderr
    config = tmp_path / "walk.yaml"
    config.write_text("task: g1_walk\nalgo: ppo\n")
    unknown = runner.invoke(app, ["train", str(config)])
    assert unknown.exit_code == 2
    assert "unknown task 'g1_walk'" in unknown.stderr and "panda_pick" in unknown.stderr
    task_key = runner.invoke(
        app, ["train", "configs/panda_pick.yaml", "--set", "task_config.rewards.reech=1"]
    )
    assert task_key.exit_code == 2
    assert "task_config" in task_key.stderr and "'rewards.reech'" in task_key.stderr


def test_train_with_a_mirror_the_task_does_not_have_names_the_key_and_the_known_ones(tmp_path):
    args = ["configs/g1_tracking.yaml", "--set", "ppo.symmetry.mirror=g1_walk", "--runs", str(tmp_path)]
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "ppo.symmetry.mirror" in result.stderr and "'g1_walk'" in result.stderr
    assert "g1_tracking_no_state_estimation" in result.stderr
    assert not any(tmp_path.iterdir())


def test_train_whose_init_policy_fails_leaves_no_run_folder(tmp_path):
    """The export a fine-tune starts from is read when the learner is set up, after the run folder is
    made: a failed start removes the folder again (and starts no Ray)."""
    missing = tmp_path / "nope.onnx"
    args = ["configs/g1_track_jazzwalk_deploy.yaml", "--set", f"ppo.init_policy={missing}"]
    result = runner.invoke(app, ["train", *args, "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "ppo.init_policy" in result.stderr and "no such file" in result.stderr
    assert not any((tmp_path / "runs").iterdir())
