"""PPO pieces: GAE with time-out bootstrapping, the KL-adaptive learning rate, interventions, symmetry."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from striata.envs.tasks.g1_tracking.symmetry import tracking_symmetry
from striata.learner.chunk import ChunkError
from striata.learner.config import NetworkConfig, PPOConfig, SymmetryConfig
from striata.learner.ppo import PPO, adaptive_learning_rate, compute_gae
from striata.learner.symmetry import TensorSymmetry

torch.set_num_threads(1)
SMALL = NetworkConfig(hidden=[32, 32], activation="elu")


def small_cfg(**overrides) -> PPOConfig:
    return PPOConfig(actor=SMALL, critic=SMALL, device="cpu", **overrides)


def random_chunk(
    t: int, n: int, obs_dim: int, action_dim: int, seed: int = 0, critic_dim: int | None = None
) -> dict:
    rng = np.random.default_rng(seed)

    def obs(*lead: int) -> np.ndarray | dict[str, np.ndarray]:
        policy = rng.normal(size=(*lead, obs_dim)).astype(np.float32)
        if critic_dim is None:
            return policy
        return {"policy": policy, "critic": rng.normal(size=(*lead, critic_dim)).astype(np.float32)}

    truncated = np.zeros((t, n), bool)
    truncated[t // 2, 0] = True
    return {
        "obs": obs(t, n),
        "last_obs": obs(n),
        "final_obs": obs(1),
        "actions": rng.normal(size=(t, n, action_dim)).astype(np.float32),
        "rewards": rng.normal(size=(t, n)).astype(np.float32),
        "terminated": np.zeros((t, n), bool),
        "truncated": truncated,
        "log_prob": np.full((t, n), -1.0 * action_dim, np.float32),
        "value": np.zeros((t, n), np.float32),
        "policy_version": np.zeros((t, n), np.int64),
        "intervention": np.zeros((t, n), bool),
        "reward_pending": np.zeros((t, n), bool),
        "frame_ids": np.full((t, n), -1, np.int64),
    }


def test_gae_by_hand() -> None:
    gamma, lam = 0.9, 0.5
    # env 0 times out after step 1 (V(final_obs) = 4 already added: 2 + 0.9 * 4 = 5.6); env 1 fails at step 0.
    rewards = torch.tensor([[1.0, 1.0], [5.6, 1.0], [3.0, 1.0]])
    values = torch.tensor([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0]])
    dones = torch.tensor([[False, True], [True, False], [False, False]])
    adv, ret = compute_gae(rewards, values, torch.tensor([2.0, 10.0]), dones, gamma, lam)
    # env 0: d2 = 3 + .9*2 - 1.5 = 3.3; d1 = 5.6 - 1 = 4.6 (cut); d0 = 1 + .9*1 - .5 = 1.4, A0 = 1.4 + .45*4.6
    # env 1: d2 = 1 + .9*10 = 10; A1 = 1 + .45*10 = 5.5; step 0 terminated: A0 = 1 (nothing bootstrapped)
    expected = torch.tensor([[3.47, 1.0], [4.6, 5.5], [3.3, 10.0]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_update_bootstraps_time_outs_from_final_obs_value() -> None:
    """Through PPO's own path: V(final_obs) is added to truncated rewards, terminated steps get nothing."""
    ppo = PPO(
        small_cfg(gamma=0.9, lam=0.5, normalize_advantage=False, empirical_normalization=False), 1, None, 1
    )
    ppo.model.value = lambda critic_obs: critic_obs[:, 0]  # V(o) = o: values are read off the observations
    chunk = random_chunk(3, 2, 1, 1)
    chunk["obs"] = np.array([[[0.5], [0.0]], [[1.0], [0.0]], [[1.5], [0.0]]], np.float32)
    chunk["rewards"] = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]], np.float32)
    chunk["truncated"] = np.array([[False, False], [True, False], [False, False]])
    chunk["terminated"] = np.array([[False, True], [False, False], [False, False]])
    chunk["final_obs"] = np.array([[4.0]], np.float32)
    chunk["last_obs"] = np.array([[2.0], [10.0]], np.float32)
    batch = ppo._batch([chunk])
    expected = np.array([[3.47, 1.0], [4.6, 5.5], [3.3, 10.0]], np.float32).reshape(-1)
    np.testing.assert_allclose(batch["advantages"].numpy(), expected, rtol=1e-5)


def test_an_update_on_read_only_chunk_arrays_copies_them_without_a_warning() -> None:
    """Ray hands chunk arrays out of its object store read-only; torch warns on a tensor over one."""
    ppo = PPO(small_cfg(), 3, None, 2)
    chunk = random_chunk(4, 2, 3, 2)
    for value in chunk.values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ppo.update([chunk])


def test_adaptive_learning_rate_rule() -> None:
    assert adaptive_learning_rate(1e-3, kl=0.05, desired_kl=0.01, min_lr=1e-5, max_lr=1e-2) == pytest.approx(
        1e-3 / 1.5
    )
    assert adaptive_learning_rate(1e-3, kl=0.001, desired_kl=0.01, min_lr=1e-5, max_lr=1e-2) == pytest.approx(
        1.5e-3
    )
    assert adaptive_learning_rate(1e-3, kl=0.01, desired_kl=0.01, min_lr=1e-5, max_lr=1e-2) == 1e-3
    assert adaptive_learning_rate(1e-5, kl=1.0, desired_kl=0.01, min_lr=1e-5, max_lr=1e-2) == 1e-5
    assert adaptive_learning_rate(1e-2, kl=1e-6, desired_kl=0.01, min_lr=1e-5, max_lr=1e-2) == 1e-2


@pytest.mark.parametrize(("desired_kl", "direction"), [(1e-7, "down"), (10.0, "up")])
def test_ppo_learning_rate_follows_kl(desired_kl: float, direction: str) -> None:
    ppo = PPO(small_cfg(desired_kl=desired_kl, num_learning_epochs=2), 4, None, 2)
    metrics = ppo.update(random_chunk(8, 4, 4, 2))
    assert metrics["kl"] > 0
    if direction == "down":
        assert metrics["learning_rate"] < 1e-3
    else:
        assert metrics["learning_rate"] > 1e-3


def test_interventions_train_the_critic_not_the_policy() -> None:
    ppo = PPO(small_cfg(entropy_coef=0.0), 4, None, 2)
    chunk = random_chunk(8, 4, 4, 2)
    chunk["intervention"][:] = True
    actor = [p.detach().clone() for p in [*ppo.model.actor.parameters(), ppo.model.log_std]]
    critic = [p.detach().clone() for p in ppo.model.critic.parameters()]
    metrics = ppo.update(chunk)
    assert metrics["intervention_fraction"] == 1.0
    assert all(
        torch.equal(a, b)
        for a, b in zip(actor, [*ppo.model.actor.parameters(), ppo.model.log_std], strict=True)
    )
    assert not all(torch.equal(a, b) for a, b in zip(critic, ppo.model.critic.parameters(), strict=True))


def test_update_refuses_pending_rewards_and_missing_keys() -> None:
    ppo = PPO(small_cfg(), 4, None, 2)
    chunk = random_chunk(4, 2, 4, 2)
    chunk["reward_pending"][1, 1] = True
    with pytest.raises(ChunkError, match="1 steps with reward_pending"):
        ppo.update(chunk)
    chunk = random_chunk(4, 2, 4, 2)
    del chunk["log_prob"]
    with pytest.raises(ChunkError, match=r"missing key\(s\) \['log_prob'\]"):
        ppo.update(chunk)
    del chunk["value"]
    with pytest.raises(ChunkError, match="'value'"):
        PPO(small_cfg(recompute_values=False), 4, None, 2).update(chunk)


def test_act_on_g1_dict_obs_and_weights_for_an_actor_copy() -> None:
    learner = PPO(small_cfg(), 160, 286, 29)
    learner.update(random_chunk(4, 3, 160, 29, critic_dim=286))
    obs = random_chunk(1, 5, 160, 29, seed=1, critic_dim=286)["last_obs"]
    actions, log_prob, value = learner.act(obs)
    assert actions.shape == (5, 29) and log_prob.shape == (5,) and value.shape == (5,)
    assert actions.dtype == np.float32

    actor = PPO(small_cfg(seed=3), 160, 286, 29, device="cpu")
    actor.load_policy_state(learner.policy_state())
    assert actor.version == learner.version == 1
    np.testing.assert_array_equal(
        actor.act(obs, deterministic=True)[0], learner.act(obs, deterministic=True)[0]
    )
    np.testing.assert_allclose(actor.act(obs)[2], value)


def asymmetry(ppo: PPO, obs: torch.Tensor) -> float:
    sym = TensorSymmetry(tracking_symmetry(), "cpu")
    with torch.no_grad():
        return float((ppo.model(sym.policy_obs(obs)) - sym.actions(ppo.model(obs))).square().mean())


def test_mirror_loss_makes_the_policy_symmetric() -> None:
    cfg = small_cfg(symmetry=SymmetryConfig(mirror="g1_tracking", mirror_loss=True, mirror_loss_coef=10.0))
    ppo = PPO(cfg, 160, 286, 29, symmetry=tracking_symmetry())
    chunk = random_chunk(8, 8, 160, 29, critic_dim=286)
    probe = torch.as_tensor(chunk["obs"]["policy"].reshape(-1, 160))
    before = asymmetry(ppo, probe)
    for _ in range(4):
        metrics = ppo.update(chunk)
    assert metrics["mirror_loss"] > 0
    assert asymmetry(ppo, probe) < 0.3 * before


def test_data_augmentation_trains_the_critic_on_mirrored_states() -> None:
    chunk = random_chunk(8, 8, 160, 29, critic_dim=286)
    critic_obs = torch.as_tensor(
        chunk["critic"] if "critic" in chunk else chunk["obs"]["critic"].reshape(-1, 286)
    )
    mirrored = TensorSymmetry(tracking_symmetry(), "cpu").critic_obs(critic_obs)
    gaps = {}
    for augment in (False, True):
        symmetry = SymmetryConfig(mirror="g1_tracking", data_augmentation=augment)
        cfg = small_cfg(symmetry=symmetry, learning_rate=3e-3, schedule="fixed")
        ppo = PPO(cfg, 160, 286, 29, symmetry=tracking_symmetry())
        for _ in range(5):
            ppo.update(chunk)
        with torch.no_grad():
            gaps[augment] = float((ppo.model.value(critic_obs) - ppo.model.value(mirrored)).abs().mean())
    assert gaps[True] < 0.5 * gaps[False]


def test_symmetry_dims_are_checked() -> None:
    with pytest.raises(ValueError, match="policy_obs mirror has dim 160, not 4"):
        cfg = small_cfg(symmetry=SymmetryConfig(mirror="g1_tracking"))
        PPO(cfg, 4, 286, 29, symmetry=tracking_symmetry())
    with pytest.raises(ValueError, match=r"need symmetry\.mirror"):
        SymmetryConfig(mirror_loss=True)


def test_a_learner_asked_for_symmetry_needs_the_task_maps_but_an_acting_copy_does_not() -> None:
    cfg = small_cfg(symmetry=SymmetryConfig(mirror="g1_tracking", mirror_loss=True))
    copy = PPO(cfg, 160, 286, 29)  # as on an actor: acts, never updates
    chunk = random_chunk(4, 4, 160, 29, critic_dim=286)
    assert copy.act(chunk["last_obs"])[0].shape == (4, 29)
    with pytest.raises(ValueError, match=r"no mirror maps.*'g1_tracking'"):
        copy.update(chunk)


def test_update_takes_a_chunk_of_device_tensors_as_a_numpy_one() -> None:
    """A GPU env backend's rollout (striata.learner.device_rollout) reaches PPO as tensors: same update."""
    chunk = random_chunk(6, 4, 5, 3, critic_dim=7)

    def tensors(x):
        return {k: tensors(v) for k, v in x.items()} if isinstance(x, dict) else torch.as_tensor(x)

    from_numpy = PPO(small_cfg(), 5, 7, 3).update(chunk)
    from_tensors = PPO(small_cfg(), 5, 7, 3).update(tensors(chunk))
    assert from_tensors == pytest.approx(from_numpy, rel=1e-6)


def test_an_action_prior_adds_to_the_mean_travels_with_the_weights_and_mirrors() -> None:
    from striata.envs.tasks.g1_tracking.action_prior import reference_joint_prior
    from striata.envs.tasks.g1_tracking.observations import policy_term_layout
    from striata.learner.trainer import PPOTrainer

    prior = reference_joint_prior()
    cfg = small_cfg(action_prior="reference_joint_pos")
    learner = PPO(cfg, 160, 286, 29, action_prior=prior)
    obs = random_chunk(1, 6, 160, 29, seed=2, critic_dim=286)["last_obs"]
    policy_obs = torch.as_tensor(obs["policy"])
    with torch.no_grad():
        network = learner.model.actor(learner.model.actor_normalizer(policy_obs)).numpy()
    mean = learner.act(obs, deterministic=True)[0]
    np.testing.assert_allclose(mean, network + prior(obs["policy"]), rtol=1e-5, atol=1e-5)

    actor = PPO(small_cfg(action_prior="reference_joint_pos", seed=3), 160, 286, 29)  # an actor's copy
    actor.load_policy_state(learner.policy_state())
    np.testing.assert_array_equal(actor.act(obs, deterministic=True)[0], mean)

    # The prior commutes with the mirror, so the mirror loss asks nothing of it (both layouts).
    for state_estimation in (True, False):
        sym = tracking_symmetry(policy_term_layout(state_estimation))
        o = np.random.default_rng(0).normal(size=(5, sym.policy_obs.dim))
        np.testing.assert_allclose(prior(sym.policy_obs(o)), sym.actions(prior(o)), atol=1e-12)

    with pytest.raises(ValueError, match=r"ppo\.action_prior names none"):
        PPO(small_cfg(), 160, 286, 29, action_prior=prior)
    with pytest.raises(ValueError, match="maps 29\\+ observation entries to 29 actions"):
        PPO(cfg, 20, 286, 29, action_prior=prior)
    with pytest.raises(ValueError, match="needs the task's prior"):
        PPOTrainer(cfg, obs, 29, 64)


def test_a_warming_critic_leaves_the_actor_alone_until_its_updates_are_done() -> None:
    ppo = PPO(small_cfg(critic_warmup_updates=2, num_learning_epochs=1, num_mini_batches=1), 4, None, 2)
    lr = ppo.learning_rate

    def actor_params() -> list[torch.Tensor]:
        return [p.detach().clone() for p in [*ppo.model.actor.parameters(), ppo.model.log_std]]

    before = actor_params()
    critic = [p.detach().clone() for p in ppo.model.critic.parameters()]
    for seed in range(2):
        ppo.update(random_chunk(8, 4, 4, 2, seed=seed))
    assert all(torch.equal(a, b) for a, b in zip(before, actor_params(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(critic, ppo.model.critic.parameters(), strict=True))
    assert ppo.learning_rate == lr  # no KL to adapt the learning rate to while the actor waits
    ppo.update(random_chunk(8, 4, 4, 2, seed=5))
    assert not all(torch.equal(a, b) for a, b in zip(before, actor_params(), strict=True))
    # The actor's first step starts at the schedule's floor (the KL rule raises it from there).
    assert ppo.learning_rate <= 1.5 * ppo.cfg.min_learning_rate
