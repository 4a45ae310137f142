"""SO-101 reach and pick: batched envs, action and observation layouts, cameras, decimated visual meshes,
scripted IK policies, demonstrations, Gymnasium ids and config errors.

Everything runs the real scene (``$STRIATA_ASSETS/robotstudio_so101``) on the batched backend.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import striata.envs  # noqa: F401 - registers the striata/* Gymnasium ids
from striata.cli import app
from striata.deploy.arms.feetech import FeetechArmConfig
from striata.envs.backend import ActionError
from striata.envs.registry import TASKS, make_config, make_env
from striata.envs.robots.so101 import SERVO_IDS, SO101, SO101_JOINT_NAMES, max_target_step
from striata.envs.tasks.so101.config import PICK_OBS_TERMS, REACH_OBS_TERMS, obs_slices
from striata.envs.tasks.so101.pick import So101PickEnv
from striata.envs.tasks.so101.reach import So101ReachEnv
from striata.envs.tasks.so101.render_cost import drawn_triangles
from striata.envs.tasks.so101.scene import CUBE_HALF_SIZE
from striata.envs.tasks.so101.scripted import ScriptedPickPolicy, ScriptedReachPolicy
from striata.learner.demos import load_demos

REACH = obs_slices(REACH_OBS_TERMS)
PICK = obs_slices(PICK_OBS_TERMS)


def _first_episodes(env, policy, max_steps: int) -> np.ndarray:
    """Roll the policy until every env's first episode ends: success of each."""
    obs = env.reset()
    policy.reset()
    done = np.zeros(env.num_envs, dtype=bool)
    success = np.zeros(env.num_envs, dtype=bool)
    for _ in range(max_steps):
        obs, _, terminated, truncated, info = env.step(policy(obs))
        ending = (terminated | truncated) & ~done
        success[ending] = info["success"][ending]
        done |= ending
        policy.reset(terminated | truncated)
        if done.all():
            break
    assert done.all()
    return success


@pytest.fixture(scope="module")
def pick() -> So101PickEnv:
    env = make_env("so101_pick", num_envs=4, seed=0)
    assert isinstance(env, So101PickEnv)
    return env


@pytest.fixture(scope="module")
def reach() -> So101ReachEnv:
    env = make_env("so101_reach", num_envs=4, seed=0)
    assert isinstance(env, So101ReachEnv)
    return env


def test_robot_facts_are_the_follower_servos_and_the_models_limits(pick):
    assert tuple(SERVO_IDS) == SO101_JOINT_NAMES and list(SERVO_IDS.values()) == [1, 2, 3, 4, 5, 6]
    feetech = FeetechArmConfig()  # the deploy side's SO-101 default: same order, ids and limits
    assert [(j.name, j.id) for j in feetech.joints] == list(SERVO_IDS.items())
    limits = np.array([(j.lower, j.upper) for j in feetech.joints])
    np.testing.assert_allclose(pick.joint_range, limits, atol=1e-5)
    # Servo order in the compiled scene: joints, dofs and actuators 0..5; position servos with its gains.
    model = pick.model
    assert [model.actuator(i).name for i in range(6)] == list(SO101_JOINT_NAMES)
    np.testing.assert_allclose(model.actuator_gainprm[:6, 0], SO101.kp)
    np.testing.assert_allclose(model.actuator_biasprm[:6, 2], -SO101.kd)
    assert model.actuator_forcerange[5, 1] < model.actuator_forcerange[0, 1]  # the gripper's torque cap
    assert ((SO101.default_pos >= limits[:, 0]) & (SO101.default_pos <= limits[:, 1])).all()


@pytest.mark.parametrize("task", ["so101_reach", "so101_pick"])
def test_envs_build_and_step_in_a_batch(task):
    env = make_env(task, num_envs=3, seed=0, episode_length_s=0.5)
    obs = env.reset()
    assert env.action_dim == 6 and env.step_dt == pytest.approx(0.1)
    assert obs.shape == (3, env.observation_dim) and obs.dtype == np.float64
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, (3, 6)))
        assert obs.shape == (3, env.observation_dim) and np.isfinite(obs).all() and np.isfinite(reward).all()
        assert not (terminated & truncated).any()
        assert set(info) >= {"success", "reward_terms", "episode_return", "episode_length"}
    assert truncated.all() and (env.episode_step == 0).all(), "a time-out ends the episode and auto-resets"
    with pytest.raises(ActionError, match=r"expected shape \(3, 6\)"):
        env.step(np.zeros((3, 4)))


def test_reach_observation_layout_matches_the_documented_terms(reach):
    obs = reach.reset()
    assert reach.observation_dim == sum(size for _, size in REACH_OBS_TERMS) == 27
    obs, *_ = reach.step(np.tile([0.5, -0.3, 0.2, 0.1, -0.4, 1.0], (4, 1)))
    np.testing.assert_allclose(obs[:, REACH["joint_pos"]], reach.joint_pos)
    np.testing.assert_allclose(obs[:, REACH["joint_vel"]], reach.joint_vel)
    np.testing.assert_allclose(obs[:, REACH["joint_target"]], reach.joint_target)
    np.testing.assert_allclose(obs[:, REACH["tip_pos"]], reach.ee_pos)
    np.testing.assert_allclose(obs[:, REACH["target_pos"]], reach.target)
    np.testing.assert_allclose(
        obs[:, REACH["tip_to_target"]], obs[:, REACH["target_pos"]] - obs[:, REACH["tip_pos"]]
    )
    # Targets lie in the configured box, and the mocap sphere shows them.
    box = reach.cfg.targets
    assert ((reach.target >= box.low) & (reach.target <= box.high)).all()
    np.testing.assert_allclose(reach.mocap_pos[:, 0], reach.target)


def test_pick_observation_layout_matches_the_documented_terms(pick):
    obs = pick.reset()
    assert pick.observation_dim == sum(size for _, size in PICK_OBS_TERMS) == 31
    np.testing.assert_allclose(obs[:, PICK["joint_pos"]], np.tile(SO101.default_pos, (4, 1)))
    np.testing.assert_allclose(obs[:, PICK["joint_target"]], np.tile(SO101.default_pos, (4, 1)))
    np.testing.assert_allclose(obs[:, PICK["tip_pos"]], pick.ee_pos)
    np.testing.assert_allclose(obs[:, PICK["cube_pos"]], pick.cube_pos)
    np.testing.assert_allclose(obs[:, PICK["cube_quat"]], pick.cube_quat)
    np.testing.assert_allclose(obs[:, PICK["tip_to_cube"]], pick.cube_pos - pick.ee_pos)
    cubes = pick.cube_pos
    cfg = pick.cfg
    assert len(np.unique(cubes[:, :2].round(3), axis=0)) == 4
    assert ((cubes[:, 0] >= cfg.cube_x[0]) & (cubes[:, 0] <= cfg.cube_x[1])).all()
    assert ((cubes[:, 1] >= cfg.cube_y[0]) & (cubes[:, 1] <= cfg.cube_y[1])).all()
    np.testing.assert_allclose(cubes[:, 2], CUBE_HALF_SIZE)


def test_actions_move_targets_a_bounded_step_within_the_joint_limits(reach):
    cfg = reach.cfg
    assert cfg.joint_step <= max_target_step(cfg.control_dt)
    reach.reset()
    low, high = reach.joint_range.T
    rng = np.random.default_rng(1)
    for _ in range(20):
        before = reach.joint_target.copy()
        # Out-of-range actions are clipped to [-1, 1], never scaled past the step.
        reach.step(rng.uniform(-3, 3, (4, 6)))
        after = reach.joint_target.copy()
        step = np.abs(after - before)
        assert (step[:, :5] <= cfg.joint_step + 1e-12).all()
        assert (step[:, 5] <= cfg.gripper_step + 1e-12).all()
        assert ((after >= low - 1e-12) & (after <= high + 1e-12)).all()
        np.testing.assert_array_equal(reach.ctrl[:, :6], after)  # the targets are what the servos get
    reach.reset()
    push = np.zeros((4, 6))
    push[:, 0] = 1.0  # shoulder_pan to its limit, one joint step at a time
    push[:, 5] = 1.0  # gripper closed
    for _ in range(30):
        obs, *_ = reach.step(push)
    np.testing.assert_allclose(reach.joint_target[:, 0], high[0])
    np.testing.assert_allclose(reach.joint_target[:, 5], low[5])
    assert (obs[:, REACH["joint_pos"]][:, 0] > high[0] - 0.05).all(), "the servo follows to the limit"


def test_zero_action_holds_the_arm_against_gravity(reach):
    reach.reset()
    for _ in range(3):
        reach.step(np.tile([0.8, -0.5, 0.6, -0.4, 0.3, -1.0], (4, 1)))
    # Zero arm deltas; the gripper's command is a target opening, so "open" stays -1.
    hold = np.tile([0.0, 0.0, 0.0, 0.0, 0.0, -1.0], (4, 1))
    held = reach.joint_target.copy()
    for _ in range(5):
        reach.step(hold)
    before = reach.ee_pos.copy()
    for _ in range(10):
        reach.step(hold)
    np.testing.assert_array_equal(reach.joint_target, held)
    assert np.abs(reach.ee_pos - before).max() < 1e-3


def test_cameras_render_and_the_front_camera_sees_the_cube():
    env = make_env("so101_pick", num_envs=2, seed=0, cameras=["front", "wrist"])
    obs = env.reset()
    assert set(obs) == {"state", "proprio", "front", "wrist"}
    assert obs["state"].shape == (2, 31)
    # What a policy from pixels reads beside the frames: the arm's own terms, the state's first 21.
    np.testing.assert_array_equal(obs["proprio"], obs["state"][:, :21])
    assert env.observation_layouts["proprio"] == (
        ("joint_pos", 6),
        ("joint_vel", 6),
        ("joint_target", 6),
        ("tip_pos", 3),
    )
    for name in ("front", "wrist"):
        assert obs[name].dtype == np.uint8 and obs[name].shape == (2, 64, 64, 3)
        assert obs[name].reshape(2, -1).std(axis=1).min() > 10.0, f"{name} frames look blank"
    assert not np.array_equal(obs["front"][0], obs["front"][1])  # the cube lies elsewhere in each env

    with_cube = env.render("front", 64, 64, shadows=False)
    qpos, qvel = env.qpos.copy(), env.qvel.copy()
    cube = env.model.joint("cube").qposadr[0]
    qpos[:, cube : cube + 3] = (-1.0, -1.0, CUBE_HALF_SIZE)  # off the table, out of view
    env.set_state(qpos, qvel)
    without = env.render("front", 64, 64, shadows=False)
    for i in range(2):
        changed = np.abs(with_cube[i].astype(int) - without[i].astype(int)).max(axis=-1) > 40
        red = (with_cube[i, ..., 0] > 120) & (with_cube[i, ..., 1] < 80) & (with_cube[i, ..., 2] < 80)
        assert changed.sum() >= 4, f"env {i}: the cube changes only {changed.sum()} front pixels"
        assert (changed & red).sum() >= 4, f"env {i}: the changed pixels are not the red cube"

    obs, *_ = env.step(np.zeros((2, 6)))
    assert obs["wrist"].shape == (2, 64, 64, 3) and obs["state"].shape == (2, 31)
    env.close()


def test_visual_meshes_are_decimated_and_collision_meshes_are_not(pick):
    original = make_env("so101_pick", num_envs=1, seed=0, visual_meshes="original")
    assert original.visual_mesh_report is None
    report = pick.visual_mesh_report
    assert report is not None and report.total_before == 322_564
    assert report.total_after <= 13 * pick.cfg.visual_mesh_faces
    assert drawn_triangles(pick.model) < drawn_triangles(original.model) / 10

    def collision_meshes(model: mujoco.MjModel) -> list[tuple[str, int]]:
        ids = np.flatnonzero((model.geom_type == mujoco.mjtGeom.mjGEOM_MESH) & (model.geom_contype > 0))
        return [
            (model.mesh(model.geom_dataid[g]).name, int(model.mesh_facenum[model.geom_dataid[g]]))
            for g in ids
        ]

    assert collision_meshes(pick.model) == collision_meshes(original.model)
    assert len(collision_meshes(pick.model)) == 13  # the base has no collision geoms
    # Physics do not see the change: from the same state, the same actions give the same states.
    pick.reset()
    original.reset()
    original.set_state(pick.qpos[:1].copy(), pick.qvel[:1].copy())
    original.cube_start[:] = pick.cube_start[:1]
    actions = np.random.default_rng(4).uniform(-1, 1, (10, 6))
    for action in actions:
        pick_obs, *_ = pick.step(np.tile(action, (4, 1)))
        original_obs, *_ = original.step(action[None])
    np.testing.assert_allclose(pick_obs[0], original_obs[0], atol=1e-9)
    original.close()


def test_scripted_reach_reaches_the_target():
    env = make_env("so101_reach", num_envs=20, seed=0)
    success = _first_episodes(env, ScriptedReachPolicy.for_env(env), env.max_episode_steps)
    assert success.mean() >= 0.9, f"scripted reach: {success.sum()} of 20"


def test_scripted_pick_lifts_the_cube():
    env = make_env("so101_pick", num_envs=20, seed=0)
    success = _first_episodes(env, ScriptedPickPolicy.for_env(env), env.max_episode_steps)
    assert success.mean() >= 0.8, f"scripted pick: {success.sum()} of 20"


def test_scripted_demonstrations_load_as_rlpd_demos(tmp_path):
    path = tmp_path / "demos.npz"
    args = ["demos", "so101_pick", "--episodes", "4", "--num-envs", "4", "--output", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    transitions = dict(np.load(path))  # the buffer file: one array per field
    n = len(transitions["rewards"])
    assert transitions["obs"].shape == (n, 31) and transitions["actions"].shape == (n, 6)
    assert transitions["terminated"].sum() == 4, "four successful episodes, each ends terminated"
    assert (np.abs(transitions["actions"]) <= 1).all() and transitions["intervention"].all()
    demos, sources = load_demos([tmp_path / "demos.npz"], task="so101_pick", obs_shape=(31,), action_dim=6)
    assert len(demos) == n and sources[0].transitions == n


def test_dense_rewards_are_penalties_until_success(pick):
    obs = pick.reset()
    policy = ScriptedPickPolicy.for_env(pick)
    successes = 0
    for _ in range(40):
        obs, reward, terminated, truncated, info = pick.step(policy(obs))
        policy.reset(terminated | truncated)
        assert (reward[~info["success"]] <= 0).all()
        assert (reward[info["success"]] > 0).all()
        successes += int(info["success"].sum())
    assert successes > 0
    env = make_env("so101_reach", num_envs=2, seed=0, reward="sparse")
    env.reset()
    _, reward, _, _, info = env.step(np.zeros((2, 6)))
    np.testing.assert_array_equal(reward, info["success"].astype(float))


def test_tasks_are_registered_with_gymnasium():
    assert {"so101_reach", "so101_pick"} <= set(TASKS)
    assert TASKS["so101_reach"].gym_id == "striata/So101Reach-v0" and "striata/So101Pick-v0" in gym.registry
    env = gym.make("striata/So101Reach-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (27,) and env.action_space.shape == (6,)
    obs, reward, *_, info = env.step(env.action_space.sample())
    assert obs.shape == (27,) and isinstance(reward, float) and "success" in info
    env.close()
    vector = gym.make_vec("striata/So101Pick-v0", num_envs=2, vectorization_mode="vector_entry_point")
    obs, _ = vector.reset(seed=0)
    assert obs.shape == (2, 31)
    vector.close()


@pytest.mark.parametrize(
    ("task", "overrides", "field", "allowed"),
    [
        ("so101_pick", {"cameras": ["side"]}, "cameras.0", "'front' or 'wrist'"),
        ("so101_reach", {"reward": "shaped"}, "reward", "'dense' or 'sparse'"),
        ("so101_pick", {"visual_meshes": "low"}, "visual_meshes", "'decimated' or 'original'"),
        ("so101_pick", {"camera": ["front"]}, "camera", "Extra inputs are not permitted"),
        ("so101_pick", {"cameras": ["front", "front"]}, "cameras", "distinct"),
        ("so101_pick", {"cube_x": (0.3, 0.1)}, "cube_x", "low <= high"),
        ("so101_reach", {"joint_step": 0.9}, "joint_step", "STS3215"),
        ("so101_reach", {"targets": {"low": (0.3, 0, 0), "high": (0.2, 0, 0)}}, "targets", "low"),
    ],
)
def test_bad_config_names_the_field(task, overrides, field, allowed):
    with pytest.raises(ValidationError) as error:
        make_config(task, overrides)
    message = str(error.value)
    assert field in message and allowed in message


def test_the_pick_progress_scene_holds_successes_regressions_and_failures():
    """so101_pick's progress scene (reward-model data sets): ground-truth progress rises to 1 in a
    scripted pick, falls back after a drop, and stays below a grasp for misses and random flailing."""
    from striata.envs.registry import TASKS

    scene = TASKS["so101_pick"].progress_scene()
    assert dict(scene.cameras) == {"front": "front", "wrist": "wrist"}
    kinds = ["scripted", "drop", "miss", "random"]
    env = scene.make_env(45, len(kinds), seed=0)
    policy = scene.make_policy(env, kinds, (0.0, 0.05), np.random.default_rng(0), None)
    obs = env.reset()
    progress = []
    for _ in range(45):
        obs, _, terminated, truncated, info = env.step(policy(obs))
        assert not (terminated | truncated).any()  # episodes go on after success
        progress.append(info["progress"].copy())
    progress = np.array(progress)
    scripted, drop, miss, flail = progress.T
    assert scripted.max() == 1.0 and scripted[-1] == 1.0
    assert drop.max() >= 0.9 and drop[-1] < 0.6
    assert miss.max() < 0.6 and flail.max() < 0.6
    assert progress.min() >= 0.0 and progress.max() <= 1.0
