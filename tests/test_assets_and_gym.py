"""Asset resolution errors and the Gymnasium single-env views."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import striata.envs  # noqa: F401 - registers the striata/* Gymnasium ids
from striata.envs.assets import AssetNotFoundError
from striata.envs.robots.g1 import g1_spec
from striata.envs.robots.panda import panda_spec


def test_missing_robot_names_the_robot_and_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("STRIATA_ASSETS", str(tmp_path))
    monkeypatch.setitem(sys.modules, "mujoco_menagerie", None)  # as on a machine without the package
    with pytest.raises(AssetNotFoundError) as err:
        g1_spec()
    message = str(err.value)
    assert "'unitree_g1'" in message
    assert str(tmp_path / "unitree_g1" / "g1.xml") in message
    assert "mujoco-menagerie" in message and "not installed" in message


def test_unset_assets_variable_is_reported(monkeypatch):
    monkeypatch.delenv("STRIATA_ASSETS")
    monkeypatch.setitem(sys.modules, "mujoco_menagerie", None)
    with pytest.raises(AssetNotFoundError, match=r"\$STRIATA_ASSETS \(not set\)"):
        panda_spec()


def test_every_task_is_registered_with_gymnasium():
    for gym_id in (
        "striata/G1Tracking-v0",
        "striata/G1TrackingKeypoints-v0",
        "striata/PandaPick-v0",
        "striata/PandaReach-v0",
    ):
        assert gym_id in gym.registry


def test_panda_reach_passes_the_gymnasium_env_checker():
    env = gym.make("striata/PandaReach-v0").unwrapped
    check_env(env, skip_render_check=True)
    env.close()


def test_gym_view_returns_the_final_observation_of_a_terminated_episode():
    env = gym.make(
        "striata/G1Tracking-v0", randomization={"enabled": False}, observation_noise={"enabled": False}
    )
    obs, _ = env.reset(seed=0)
    assert obs["policy"].shape == (160,)
    for _ in range(300):
        obs, _, terminated, truncated, info = env.step(np.zeros(29, dtype=np.float32))
        if terminated or truncated:
            break
    assert terminated  # zero actions on tracking gains: the G1 falls
    # Without noise a freshly reset G1 sits exactly on its reference (anchor error 0, identity
    # orientation); the observation handed back must be the fallen one instead.
    anchor_pos, anchor_ori = obs["policy"][58:61], obs["policy"][61:67]
    off = max(np.abs(anchor_pos).max(), np.abs(anchor_ori - [1, 0, 0, 1, 0, 0]).max())
    assert off > 0.1
    assert set(info) == {"success", "reward_terms"}
    env.close()
