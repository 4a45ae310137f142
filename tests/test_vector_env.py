"""The Gymnasium vector view (issue 19): ``gym.make_vec`` of a striata task is one batched env with
Gymnasium's SAME_STEP autoreset semantics; its speed against the batched backend is in `bench envs`."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

import striata.envs  # noqa: F401 - registers the tasks
from striata.envs.registry import TASKS, make_env
from striata.envs.vector_view import BatchedVectorEnv


def test_make_vec_gives_one_batched_env_with_gymnasium_spaces() -> None:
    vector = gym.make_vec(TASKS["g1_tracking"].gym_id, num_envs=3, vectorization_mode="vector_entry_point")
    try:
        assert isinstance(vector, BatchedVectorEnv) and vector.num_envs == 3
        assert vector.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        obs, _ = vector.reset(seed=1)
        assert vector.observation_space.contains(obs)
        obs, reward, terminated, truncated, info = vector.step(vector.action_space.sample())
        assert vector.observation_space.contains(obs)
        assert reward.shape == terminated.shape == truncated.shape == (3,)
        assert info["success"].shape == (3,) and info["_success"].all()
    finally:
        vector.close()


def test_an_ended_episode_hands_back_its_last_observation_and_starts_the_next() -> None:
    """Same seed, same actions: the vector view steps exactly as the batched env it wraps."""
    num_envs, seed = 4, 2
    vector = BatchedVectorEnv("panda_reach", num_envs)
    batched = make_env("panda_reach", num_envs=num_envs, seed=seed)
    batched.final_obs_on_termination = True
    rng = np.random.default_rng(0)
    try:
        obs, _ = vector.reset(seed=seed)
        np.testing.assert_array_equal(obs, batched.reset())
        ended = 0
        for _ in range(200):
            actions = rng.uniform(-1, 1, size=(num_envs, batched.action_dim))
            obs, reward, terminated, truncated, info = vector.step(actions.astype(np.float32))
            b_obs, b_reward, b_term, b_trunc, b_info = batched.step(actions.astype(np.float32))
            np.testing.assert_array_equal(terminated, b_term)
            np.testing.assert_array_equal(truncated, b_trunc)
            np.testing.assert_array_equal(obs, b_obs)
            np.testing.assert_array_equal(reward, b_reward)
            done = terminated | truncated
            if done.any():
                ended += int(done.sum())
                np.testing.assert_array_equal(info["_final_obs"], done)
                for k, env_id in enumerate(b_info["final_ids"].tolist()):
                    np.testing.assert_array_equal(info["final_obs"][env_id], b_info["final_obs"][k])
            else:
                assert "final_obs" not in info
        assert ended > 0
    finally:
        vector.close()
        batched.close()
