"""Panda pick and reach: scripted IK policies solve them, cameras render, contracts and configs hold.

Everything runs the real scene (``$STRIATA_ASSETS/franka_panda_2f85``) on the batched backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from striata.envs.backend import ActionError
from striata.envs.registry import make_config, make_env
from striata.envs.tasks.panda.config import PICK_OBS_TERMS, REACH_OBS_TERMS, obs_slices
from striata.envs.tasks.panda.control import hinge_jacobian
from striata.envs.tasks.panda.pick import PandaPickEnv
from striata.envs.tasks.panda.reach import PandaReachEnv
from striata.envs.tasks.panda.scripted import ScriptedPickPolicy, ScriptedReachPolicy

PICK = obs_slices(PICK_OBS_TERMS)


def _run_first_episodes(env, policy, max_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll the policy until every env's first episode ends: (success, terminated, truncated) at that end."""
    obs = env.reset()
    policy.reset()
    done = np.zeros(env.num_envs, dtype=bool)
    success = np.zeros(env.num_envs, dtype=bool)
    terminated = np.zeros(env.num_envs, dtype=bool)
    truncated = np.zeros(env.num_envs, dtype=bool)
    for _ in range(max_steps):
        obs, _, term, trunc, info = env.step(policy(obs))
        ending = (term | trunc) & ~done
        success[ending] = info["success"][ending]
        terminated[ending] = term[ending]
        truncated[ending] = trunc[ending]
        done |= ending
        policy.reset(term | trunc)
        if done.all():
            break
    return success, terminated, truncated


def test_scripted_pick_lifts_the_cube_in_every_env():
    env = make_env("panda_pick", num_envs=4, seed=0)
    assert isinstance(env, PandaPickEnv)
    env.reset()
    cubes = env.cube_pos[:, :2].copy()
    # Four different cube positions, all inside the configured region.
    assert len(np.unique(cubes.round(3), axis=0)) == 4
    assert ((cubes[:, 0] >= 0.4) & (cubes[:, 0] <= 0.6) & (np.abs(cubes[:, 1]) <= 0.15)).all()

    success, terminated, truncated = _run_first_episodes(env, ScriptedPickPolicy.for_env(env), 60)
    assert success.all(), f"scripted grasp failed in envs {np.flatnonzero(~success)}"
    assert terminated.all() and not truncated.any()


def test_scripted_pick_lifts_with_noisy_actions_and_yawed_cubes():
    env = make_env("panda_pick", num_envs=4, seed=1, cube_yaw=0.5)
    policy = ScriptedPickPolicy.for_env(env, noise=0.2, seed=1)
    success, _, _ = _run_first_episodes(env, policy, env.max_episode_steps)
    assert success.sum() >= 3, f"only {success.sum()} of 4 noisy grasps lifted the cube"


def test_scripted_reach_reaches_the_target():
    env = make_env("panda_reach", num_envs=4, seed=0)
    assert isinstance(env, PandaReachEnv)
    assert env.max_episode_steps == 50
    success, terminated, truncated = _run_first_episodes(env, ScriptedReachPolicy.for_env(env), 50)
    assert success.all() and terminated.all() and not truncated.any()


def test_cameras_render_distinct_non_blank_frames():
    env = make_env("panda_pick", num_envs=2, seed=0, cameras=["front", "wrist"])
    obs = env.reset()
    assert set(obs) == {"state", "front", "wrist"}
    assert obs["state"].shape == (2, env.observation_dim) == (2, 31)
    for name in ("front", "wrist"):
        frames = obs[name]
        assert frames.dtype == np.uint8 and frames.shape == (2, 128, 128, 3)
        assert frames.reshape(2, -1).std(axis=1).min() > 20.0, f"{name} frames look blank"
    assert np.abs(obs["front"].astype(int) - obs["wrist"].astype(int)).mean() > 20.0
    # The cube lies elsewhere in each env, and the front camera sees it.
    assert not np.array_equal(obs["front"][0], obs["front"][1])

    obs, *_ = env.step(np.zeros((2, env.action_dim)))
    assert obs["front"].shape == (2, 128, 128, 3) and obs["state"].shape == (2, 31)


def test_wrong_actions_raise_action_error():
    env = make_env("panda_reach", num_envs=2, seed=0)
    env.reset()
    with pytest.raises(ActionError, match=r"expected shape \(2, 4\), got \(2, 8\)"):
        env.step(np.zeros((2, 8)))
    bad = np.zeros((2, 4))
    bad[1, 2] = np.nan
    with pytest.raises(ActionError, match=r"actions\[1, 2\] is nan"):
        env.step(bad)


def test_time_out_truncates_without_terminating():
    env = make_env("panda_pick", num_envs=3, seed=0, episode_length_s=0.5)
    assert env.max_episode_steps == 5
    env.reset()
    for step in range(1, 6):
        _, _, terminated, truncated, info = env.step(np.zeros((3, 4)))
        assert not terminated.any()
        assert truncated.all() == (step == 5) and truncated.any() == (step == 5)
    assert (info["episode_length"] == 5).all()
    assert not info["success"].any()
    assert (env.episode_step == 0).all(), "timed-out envs must auto-reset"


def test_zero_action_holds_the_arm_still():
    """Gravity compensation and an exact null-space projector: a zero ee_delta action does not drift."""
    env = make_env("panda_pick", num_envs=2, seed=0)
    env.reset()
    for _ in range(3):
        obs, *_ = env.step(np.tile([0.5, -0.5, 0.3, -1.0], (2, 1)))
    for _ in range(5):
        obs, *_ = env.step(np.zeros((2, 4)))
    before = obs[:, PICK["pinch_pos"]].copy()
    for _ in range(10):
        obs, *_ = env.step(np.zeros((2, 4)))
    assert np.abs(obs[:, PICK["pinch_pos"]] - before).max() < 2e-3
    # The orientation task keeps the gripper pointing down.
    z_axis = env.arm_state().site_rot[:, :, 2]
    assert (z_axis[:, 2] < -0.999).all()


def test_ik_jacobian_matches_mujoco():
    env = make_env("panda_reach", num_envs=3, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(3):
        env.step(rng.uniform(-1, 1, (3, 4)))
    state = env.arm_state()
    jac = hinge_jacobian(state.axes, state.anchors, state.site_pos)
    body = env.model.site_bodyid[env.model.site("pinch").id]
    jacp, jacr = env.batch.jac(np.full(3, body), state.site_pos)
    np.testing.assert_allclose(jac[:, :3], jacp[:, :, :7], atol=1e-12)
    np.testing.assert_allclose(jac[:, 3:], jacr[:, :, :7], atol=1e-12)


def test_joint_position_control():
    env = make_env("panda_reach", num_envs=2, seed=0, control="joint_position")
    assert env.action_dim == 8 and env.observation_dim == sum(size for _, size in REACH_OBS_TERMS)
    obs = env.reset()
    actions = np.zeros((2, 8))
    actions[:, 0] = 1.0  # joint1 target 0.1 rad ahead of the current angle, every step
    for _ in range(5):
        obs, *_ = env.step(actions)
    assert (obs[:, 0] > 0.3).all() and np.abs(obs[:, 1:7] - env.home[1:]).max() < 0.05
    with pytest.raises(ValueError, match="ee_delta"):
        ScriptedReachPolicy.for_env(env)


def test_sparse_reward_is_success():
    env = make_env("panda_pick", num_envs=2, seed=0, reward="sparse")
    env.reset()
    _, reward, _, _, info = env.step(np.zeros((2, 4)))
    np.testing.assert_array_equal(reward, info["success"].astype(float))
    assert set(info["reward_terms"]) == {"success"}


def test_progress_reward_is_potential_based_shaping_on_the_true_progress():
    lam, gamma, bonus = 2.0, 0.9, 3.0
    rewards = {"progress_lambda": lam, "progress_gamma": gamma, "success": bonus}
    env = make_env("panda_pick", num_envs=4, seed=0, reward="progress", rewards=rewards)
    obs = env.reset()
    policy = ScriptedPickPolicy.for_env(env, seed=0)
    phi = np.zeros(4)  # every episode starts from potential 0
    successes = 0
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        expected = lam * (gamma * info["progress"] - phi) + bonus * info["success"]
        np.testing.assert_allclose(reward, expected, atol=1e-9)
        assert set(info["reward_terms"]) == {"shaping", "success"}
        done = terminated | truncated
        phi = np.where(done, 0.0, info["progress"])
        policy.reset(done)
        successes += int(info["success"].sum())
    assert successes >= 4  # the terminal step (progress 1 and the bonus) was checked too


def test_progress_noise_perturbs_only_the_shaping_potential():
    lam, gamma, sigma = 2.0, 0.9, 0.05
    rewards = {"progress_lambda": lam, "progress_gamma": gamma, "success": 0.0, "progress_noise": sigma}
    env = make_env("panda_pick", num_envs=8, seed=0, reward="progress", rewards=rewards)
    obs = env.reset()
    policy = ScriptedPickPolicy.for_env(env, seed=0)
    phi = np.zeros(8)
    errors = []
    for _ in range(50):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        assert ((info["progress"] >= 0) & (info["progress"] <= 1)).all()  # the audit's truth is not noisy
        noisy = (reward / lam + phi) / gamma  # the potential the reward was computed with
        errors.append(noisy - info["progress"])
        done = terminated | truncated
        phi = np.where(done, 0.0, noisy)
        policy.reset(done)
    errors = np.concatenate(errors)
    assert abs(errors.mean()) < 0.01 and errors.std() == pytest.approx(sigma, rel=0.15)


@pytest.mark.parametrize(
    ("task", "overrides", "field", "allowed"),
    [
        ("panda_pick", {"cameras": ["side"]}, "cameras.0", "'front' or 'wrist'"),
        ("panda_pick", {"control": "torque"}, "control", "'ee_delta' or 'joint_position'"),
        ("panda_reach", {"reward": "shaped"}, "reward", "'dense' or 'sparse'"),
        ("panda_pick", {"camera": ["front"]}, "camera", "Extra inputs are not permitted"),
        ("panda_pick", {"cameras": ["front", "front"]}, "cameras", "distinct"),
        ("panda_pick", {"cube_x": (0.6, 0.4)}, "cube_x", "low <= high"),
        ("panda_reach", {"targets": {"low": (0.5, 0, 0), "high": (0.4, 0, 0)}}, "targets", "low"),
    ],
)
def test_bad_config_names_the_field(task, overrides, field, allowed):
    with pytest.raises(ValidationError) as error:
        make_config(task, overrides)
    message = str(error.value)
    assert field in message and allowed in message


@pytest.mark.parametrize("task", ["panda_pick", "panda_reach"])
def test_dense_reward_never_pays_for_staying_short_of_success(task):
    # Success ends the episode; if unfinished steps earned a positive reward, hovering near the
    # goal would be worth more than reaching it.
    env = make_env(task, num_envs=8, seed=0)
    obs = env.reset()
    policy = (ScriptedPickPolicy if task == "panda_pick" else ScriptedReachPolicy).for_env(env, seed=0)
    succeeded = 0
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        policy.reset(terminated | truncated)
        # Unfinished steps cost something, so the value of never finishing is below a terminal state's.
        assert (reward[~info["success"]] <= 0).all()
        if task == "panda_pick":
            assert (reward[info["success"]] > 0).all()  # and lifting the cube earns its bonus
        succeeded += int(info["success"].sum())
    assert succeeded > 0
