"""G1 tracking rewards as a term list (mjlab style): the default list scores as before, a new term is one
function and one config entry, and config mistakes name the entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from striata.envs import make_config, make_env
from striata.envs.arrays import Array, namespace
from striata.envs.tasks.g1_tracking.config import DEFAULT_REWARDS
from striata.envs.tasks.g1_tracking.frame import TrackingFrame
from striata.envs.tasks.g1_tracking.rewards import REWARD_TERMS, Positive, RewardContext, reward_term

# Rewards, reward terms, flags and observations of two seeded rollouts (`_rollout` below), recorded with
# the code before the term list, when RewardConfig had one field per BeyondMimic term.
RECORDED = Path(__file__).parent / "data" / "g1_tracking_rewards.npz"
DETERMINISTIC = {"randomization": {"enabled": False}, "observation_noise": {"enabled": False}}
SCENARIOS = {
    # Randomisation and observation noise on: every draw of the reset, push and noise code is in the values.
    "default": ("g1_tracking", 4, 7, 80, 0.5, {}),
    "keypoints": ("g1_tracking_keypoints", 3, 2, 20, 0.3, DETERMINISTIC),
}


def _rollout(task: str, num_envs: int, seed: int, steps: int, std: float, overrides: dict) -> dict:
    # Recorded before the env clipped joint targets into the bridge's soft limits (clip_targets).
    env = make_env(task, num_envs=num_envs, seed=seed, clip_targets=False, **overrides)
    obs = env.reset()
    rng = np.random.default_rng(0)
    out = {"reset_policy": obs["policy"], "reset_critic": obs["critic"]}
    rows: dict[str, list] = {}
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(rng.normal(0.0, std, (num_envs, env.action_dim)))
        step = {"reward": reward, "terminated": terminated, "truncated": truncated, "policy": obs["policy"]}
        step.update({f"term_{name}": value for name, value in info["reward_terms"].items()})
        for key, value in step.items():
            rows.setdefault(key, []).append(value)
    out.update({key: np.array(values) for key, values in rows.items()})
    out["policy"] = out["policy"][::20]  # a sample of the observations keeps the file small
    return out


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_default_term_list_scores_as_the_code_before_it(scenario: str) -> None:
    recorded = np.load(RECORDED)
    got = _rollout(*SCENARIOS[scenario])
    keys = {key.split("/", 1)[1] for key in recorded.files if key.startswith(f"{scenario}/")}
    assert keys == set(got)
    for key in sorted(keys):
        np.testing.assert_allclose(
            got[key], recorded[f"{scenario}/{key}"], rtol=1e-9, atol=1e-12, err_msg=key
        )


def test_default_terms_are_beyondmimic_weight_times_exp_error_over_std_squared() -> None:
    """The formulas of DESIGN.md written out, against the registered terms on a state off the reference."""
    from striata.envs.rotations import quat_error_magnitude

    env = make_env("g1_tracking", num_envs=5, seed=1, **DETERMINISTIC)
    env.reset()
    rng = np.random.default_rng(1)
    for _ in range(5):
        env.step(rng.normal(0.0, 0.5, (5, env.action_dim)))
    f, (rel_pos, rel_quat) = env._current()
    w = env.mdp.body_weights

    def sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((a - b) ** 2).sum(-1)

    errors = {
        "anchor_pos": (sq(f.ref_anchor_pos, f.anchor_pos), 0.5, 0.3),
        "anchor_ori": (quat_error_magnitude(f.ref_anchor_quat, f.anchor_quat) ** 2, 0.5, 0.4),
        "body_pos": (sq(rel_pos, f.body_pos) @ w, 1.0, 0.3),
        "body_ori": (quat_error_magnitude(rel_quat, f.body_quat) ** 2 @ w, 1.0, 0.4),
        "body_lin_vel": (sq(f.ref_body_lin_vel, f.body_lin_vel) @ w, 1.0, 1.0),
        "body_ang_vel": (sq(f.ref_body_ang_vel, f.body_ang_vel) @ w, 1.0, 3.14),
    }
    expected = {name: (weight, np.exp(-err / std**2)) for name, (err, weight, std) in errors.items()}
    lower, upper = env.mdp.soft_lower, env.mdp.soft_upper
    violation = (np.clip(lower - f.joint_pos, 0, None) + np.clip(f.joint_pos - upper, 0, None)).sum(-1)
    expected["action_rate"] = (-0.1, sq(f.actions, f.prev_actions))
    expected["joint_limit"] = (-10.0, violation)
    reward, terms = env._reward()
    assert list(terms) == list(expected) == list(DEFAULT_REWARDS)
    for name, (_, value) in expected.items():
        np.testing.assert_allclose(terms[name], value, rtol=1e-12, err_msg=name)
    assert float(terms["body_pos"].max()) < 1.0  # off the reference: a real comparison
    total = sum(weight * value for weight, value in expected.values()) * env.step_dt
    np.testing.assert_allclose(reward, total, rtol=1e-12)


@pytest.fixture
def pelvis_height_term():
    """A term defined outside the task's module: registered for the test, removed after."""

    @reward_term
    def pelvis_height(f: TrackingFrame, ctx: RewardContext, target: float, std: Positive = 0.1) -> Array:
        return namespace(f.body_pos).exp(-((f.body_pos[:, f.root, 2] - target) ** 2) / std**2)

    yield pelvis_height
    del REWARD_TERMS["pelvis_height"]


def test_a_new_term_is_one_function_and_one_entry_and_is_reported_per_term(pelvis_height_term) -> None:
    entry = {"pelvis_height": {"weight": 2.0, "target": 0.75}}
    plain = make_env("g1_tracking", num_envs=3, seed=4, **DETERMINISTIC)
    extended = make_env("g1_tracking", num_envs=3, seed=4, rewards=entry, **DETERMINISTIC)
    assert list(extended.cfg.rewards)[-1] == "pelvis_height"
    assert extended.cfg.rewards["pelvis_height"].params() == {"target": 0.75, "std": 0.1}
    plain.reset()
    extended.reset()
    actions = np.random.default_rng(0).normal(0.0, 0.3, (3, 29))
    _, base, *_ = plain.step(actions)
    _, reward, _, _, info = extended.step(actions)
    term = info["reward_terms"]["pelvis_height"]
    assert term.shape == (3,) and (term > 0).all() and (term <= 1).all()
    np.testing.assert_allclose(reward - base, 2.0 * term * extended.step_dt, rtol=1e-9)
    # An entry may reuse a term under another name, with its own parameters.
    twice = {"pelvis_low": {"term": "pelvis_height", "weight": -1.0, "target": 0.3}}
    config = make_config("g1_tracking", {"rewards": {**entry, **twice}})
    assert config.rewards["pelvis_low"].term == "pelvis_height"


def test_entries_are_laid_over_the_defaults_key_by_key() -> None:
    config = make_config(
        "g1_tracking",
        {"rewards": {"body_pos": {"std": 0.5}, "action_rate": -0.2, "joint_limit": None}},
    )
    assert config.rewards["body_pos"].weight == 1.0 and config.rewards["body_pos"].params() == {"std": 0.5}
    assert config.rewards["action_rate"].weight == -0.2  # a bare number is a weight (the old float fields)
    assert "joint_limit" not in config.rewards
    env = make_env("g1_tracking", num_envs=1, seed=0, config=config)
    _, terms, _ = env.evaluate()
    assert "joint_limit" not in terms
    # A config round-trips through its dump (run folders store it).
    assert type(config).model_validate(config.model_dump()).rewards == config.rewards


@pytest.mark.parametrize(
    ("rewards", "message"),
    [
        (
            {"body_poss": {"std": 1.0}},
            r"rewards\.body_poss\n.*unknown reward term 'body_poss'; terms: anchor_pos",
        ),
        ({"body_pos": {"std": -1.0}}, r"rewards\.body_pos\.std\n.*greater than 0"),
        (
            {"body_pos": {"stdd": 1.0}},
            r"unknown key 'stdd' of reward term 'body_pos'; allowed: term, weight, std",
        ),
        ({"extra": {"term": "anchor_pos", "weight": 1.0}}, r"rewards\.extra\.std\n.*Field required"),
        ({"nothing": None}, r"no reward entry 'nothing' to remove"),
        ({"body_pos": "high"}, r"rewards\.body_pos\n.*a mapping of weight and params"),
    ],
)
def test_config_mistakes_name_the_entry(rewards: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_config("g1_tracking", {"rewards": rewards})


def test_a_term_name_is_registered_once() -> None:
    def body_pos(f: TrackingFrame, ctx: RewardContext) -> Array:
        return f.body_pos[:, 0, 0]

    with pytest.raises(ValueError, match="'body_pos' is registered already"):
        reward_term(body_pos)
    assert REWARD_TERMS["body_pos"] is not body_pos
