"""The trajectory chunk contract: building from env steps, validation errors, concatenation, transitions."""

from __future__ import annotations

import numpy as np
import pytest

from striata.learner.chunk import (
    ChunkBuilder,
    ChunkError,
    apply_rewards,
    concat_chunks,
    flatten_transitions,
    next_observations,
    validate_chunk,
)


def obs_at(t: int, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Dict obs whose values encode (t, env) so tests can see where each row went."""
    base = 10.0 * t + np.arange(n, dtype=np.float32)[:, None] + shift
    return {"policy": np.repeat(base, 3, axis=1), "critic": np.repeat(base, 5, axis=1)}


def build(
    steps: int = 4,
    n: int = 3,
    truncate: dict[int, list[int]] | None = None,
    terminate: dict[int, list[int]] | None = None,
) -> dict:
    """A chunk of ``steps`` steps of ``n`` envs; truncate/terminate: step -> env ids ending there.

    Final observations are ``obs_at(t + 1) + 0.5`` (distinct from the reset obs ``obs_at(t + 1)``),
    and info lists terminated envs too, as an env with ``final_obs_on_termination`` does.
    """
    truncate, terminate = truncate or {}, terminate or {}
    builder = ChunkBuilder(n)
    for t in range(steps):
        trunc = np.isin(np.arange(n), truncate.get(t, []))
        term = np.isin(np.arange(n), terminate.get(t, []))
        info: dict = {}
        ended = np.flatnonzero(trunc | term)
        if ended.size:
            info = {"final_ids": ended, "final_obs": {k: v[ended] for k, v in obs_at(t + 1, n, 0.5).items()}}
        builder.add(
            obs_at(t, n),
            np.full((n, 2), 0.1 * t),
            np.full(n, float(t)),
            term,
            trunc,
            info,
            policy_version=7,
            log_prob=np.zeros(n),
            value=np.zeros(n),
        )
    return builder.build(obs_at(steps, n))


def test_builder_files_final_obs_of_truncated_steps_only() -> None:
    chunk = build(truncate={1: [2], 3: [0]}, terminate={1: [0]})
    assert validate_chunk(chunk, require=("log_prob", "value")) == (4, 3)
    assert chunk["final_obs"]["policy"].shape == (2, 3)
    # Rows in np.nonzero(truncated) order: (t=1, env 2), then (t=3, env 0).
    np.testing.assert_allclose(chunk["final_obs"]["policy"][:, 0], [20 + 2 + 0.5, 40 + 0 + 0.5])
    assert chunk["policy_version"].dtype == np.int64 and (chunk["policy_version"] == 7).all()
    assert (chunk["frame_ids"] == -1).all() and not chunk["intervention"].any()

    nxt = next_observations(chunk)["policy"][..., 0]
    assert nxt[1, 2] == 22.5  # truncated: the real last observation
    assert nxt[1, 0] == 20.0  # terminated: the next episode's first observation (masked by targets)
    assert nxt[0, 1] == 11.0 and nxt[3, 1] == 41.0  # obs[t + 1], then last_obs


def test_builder_refuses_truncated_envs_without_final_obs() -> None:
    builder = ChunkBuilder(2)
    with pytest.raises(ChunkError, match=r"envs \[1\] are truncated"):
        builder.add(
            obs_at(0, 2),
            np.zeros((2, 1)),
            np.zeros(2),
            np.zeros(2, bool),
            [False, True],
            {},
            policy_version=0,
        )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("frame_ids"), r"missing key\(s\) \['frame_ids'\]"),
        (
            lambda c: c.__setitem__("rewards", np.zeros((4, 2), np.float32)),
            r"chunk\['actions'\]: expected shape \(T, N, A\) = \(4, 2, A\) \(T, N as in chunk\['rewards'\]\)",
        ),
        (
            lambda c: c.__setitem__("actions", np.zeros((4, 3), np.float32)),
            r"chunk\['actions'\]: expected shape",
        ),
        (
            lambda c: c.__setitem__("value", np.zeros((4, 2), np.float32)),
            r"chunk\['value'\]: expected shape \(T, N\) = \(4, 3\) .*, got \(4, 2\)",
        ),
        (
            lambda c: c["obs"].__setitem__("critic", np.zeros((4, 3, 7), np.float32)),
            r"chunk\['last_obs'\]\['critic'\]: expected shape \(3, 7\), got \(3, 5\)",
        ),
        (
            lambda c: c["final_obs"].__setitem__("policy", np.zeros((2, 3), np.float32)),
            r"chunk\['final_obs'\]\['policy'\]: expected shape \(1, 3\) \(one row per truncated step\), "
            r"got \(2, 3\)",
        ),
        (lambda c: c["last_obs"].pop("critic"), r"chunk\['last_obs'\] has keys \['policy'\]"),
        (
            lambda c: c.__setitem__("truncated", c["truncated"].astype(np.int8)),
            r"chunk\['truncated'\]: expected dtype bool",
        ),
        (lambda c: c["terminated"].__setitem__((1, 2), True), r"both set at \[t=1, n=2\]"),
        (
            lambda c: c["rewards"].__setitem__((0, 0), np.nan),
            r"non-finite values at steps not marked reward_pending",
        ),
    ],
)
def test_validation_errors_name_the_key_and_shape(mutate, message: str) -> None:
    chunk = build(truncate={1: [2]})
    mutate(chunk)
    with pytest.raises(ChunkError, match=message):
        validate_chunk(chunk, require=("log_prob", "value"))


def test_pending_rewards_may_be_nan_until_relabelled() -> None:
    chunk = build()
    chunk["rewards"][2, 1] = np.nan
    chunk["reward_pending"][2, 1] = True
    validate_chunk(chunk)
    transitions = flatten_transitions(chunk)
    assert len(transitions["rewards"]) == 11 and np.isfinite(transitions["rewards"]).all()
    apply_rewards(chunk, np.array([2]), np.array([1]), np.array([0.25]))
    assert chunk["rewards"][2, 1] == np.float32(0.25) and not chunk["reward_pending"].any()
    assert len(flatten_transitions(chunk)["rewards"]) == 12


def test_concat_along_envs_keeps_final_obs_in_chunk_order() -> None:
    a = build(n=2, truncate={0: [1], 2: [0]})
    b = build(n=3, truncate={1: [0, 2]})
    for key in ("policy", "critic"):
        b["obs"][key] += 100.0
        b["last_obs"][key] += 100.0
        b["final_obs"][key] += 100.0
    joined = concat_chunks([a, b], axis=1)
    assert validate_chunk(joined) == (4, 5)
    # Truncated at (0, env 1), (1, env 2), (1, env 4), (2, env 0) in the joined numbering.
    np.testing.assert_allclose(joined["final_obs"]["policy"][:, 0], [11.5, 120.5, 122.5, 30.5])
    np.testing.assert_allclose(next_observations(joined)["policy"][1, 4, 0], 122.5)


def test_concat_along_time() -> None:
    first, second = build(truncate={1: [2]}), build(truncate={0: [0], 3: [1]})
    joined = concat_chunks([first, second], axis=0)
    assert validate_chunk(joined) == (8, 3)
    assert joined["final_obs"]["critic"].shape == (3, 5)
    assert joined["last_obs"] is second["last_obs"]
    with pytest.raises(ChunkError, match="needs equal N"):
        concat_chunks([first, build(n=2)], axis=0)


def test_flatten_transitions_for_sac() -> None:
    chunk = build(steps=2, n=2, truncate={1: [1]})
    chunk["intervention"][0, 1] = True
    tr = flatten_transitions(chunk)
    assert tr["obs"]["policy"].shape == (4, 3) and tr["actions"].shape == (4, 2)
    # Time-major rows: (0,0) (0,1) (1,0) (1,1).
    np.testing.assert_allclose(tr["next_obs"]["policy"][:, 0], [10.0, 11.0, 20.0, 21.5])
    np.testing.assert_array_equal(tr["intervention"], [False, True, False, False])
    assert not tr["terminated"].any()
