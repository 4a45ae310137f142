"""Replay and demo buffers: ring overwrite, dict observations, atomic .npz files, HIL-SERL routing."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from striata.learner.replay import DemoBuffer, ReplayBuffer, add_transitions


def transitions(start: int, count: int, intervention: np.ndarray | None = None) -> dict:
    """Transitions numbered start..start+count-1 (the number is in every field), dict observations."""
    ids = np.arange(start, start + count)
    return {
        "obs": {
            "state": ids[:, None].repeat(3, 1).astype(np.float32),
            "front": np.full((count, 4, 4, 3), ids[:, None, None, None] % 256, np.uint8),
        },
        "next_obs": {
            "state": ids[:, None].repeat(3, 1).astype(np.float32) + 0.5,
            "front": np.zeros((count, 4, 4, 3), np.uint8),
        },
        "actions": ids[:, None].repeat(2, 1).astype(np.float32),
        "rewards": ids.astype(np.float32),
        "terminated": ids % 5 == 0,
        "intervention": np.zeros(count, bool) if intervention is None else intervention,
    }


def test_ring_overwrites_the_oldest() -> None:
    buffer = ReplayBuffer(5)
    buffer.add(transitions(0, 3))
    buffer.add(transitions(3, 4))
    assert len(buffer) == 5
    np.testing.assert_array_equal(buffer.transitions()["rewards"], [2, 3, 4, 5, 6])
    buffer.add(transitions(7, 12))  # more than the capacity at once: the newest 5 survive
    np.testing.assert_array_equal(buffer.transitions()["rewards"], [14, 15, 16, 17, 18])
    assert buffer.transitions()["obs"]["front"].dtype == np.uint8
    batch = buffer.sample(64, np.random.default_rng(0))
    assert set(batch["rewards"].tolist()) <= {14, 15, 16, 17, 18}
    np.testing.assert_array_equal(batch["obs"]["state"][:, 0], batch["rewards"])
    np.testing.assert_array_equal(batch["next_obs"]["state"][:, 0], batch["rewards"] + 0.5)


def test_save_load_round_trip_with_dict_obs(tmp_path) -> None:
    buffer = ReplayBuffer(8)
    buffer.add(transitions(0, 11))
    path = tmp_path / "replay.npz"
    buffer.save(path)
    with zipfile.ZipFile(path) as z:  # plain arrays only: nothing a reader would have to unpickle
        assert all(name.endswith(".npy") for name in z.namelist())
    loaded = ReplayBuffer.load(path)
    assert (loaded.capacity, loaded.size, loaded.ptr) == (8, 8, buffer.ptr)
    for key in ("rewards", "terminated", "actions"):
        np.testing.assert_array_equal(loaded.transitions()[key], buffer.transitions()[key])
    np.testing.assert_array_equal(loaded.transitions()["obs"]["front"], buffer.transitions()["obs"]["front"])
    # Same rows in the same slots: the same draws sample the same transitions.
    a = buffer.sample(16, np.random.default_rng(3))
    b = loaded.sample(16, np.random.default_rng(3))
    np.testing.assert_array_equal(a["rewards"], b["rewards"])
    # A partly filled buffer keeps its capacity and next write position.
    small = ReplayBuffer(10)
    small.add(transitions(0, 4))
    small.save(tmp_path / "small.npz")
    again = ReplayBuffer.load(tmp_path / "small.npz")
    again.add(transitions(4, 2))
    np.testing.assert_array_equal(again.transitions()["rewards"], [0, 1, 2, 3, 4, 5])
    assert not list(tmp_path.glob("*.tmp"))


def test_add_checks_fields_and_shapes() -> None:
    buffer = ReplayBuffer(4)
    buffer.add(transitions(0, 2))
    bad = transitions(0, 2)
    bad["obs"]["state"] = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"obs/state: rows of shape \(4,\), buffer holds \(3,\)"):
        buffer.add(bad)
    with pytest.raises(KeyError, match=r"lack field\(s\) \['intervention'\]"):
        buffer.add({k: v for k, v in transitions(0, 2).items() if k != "intervention"})


def test_interventions_land_in_the_demo_buffer_and_demos_load_from_files(tmp_path) -> None:
    recorded = ReplayBuffer(6)
    recorded.add(transitions(100, 6))
    recorded.save(tmp_path / "episode_0.npz")
    demo = DemoBuffer.from_files([tmp_path / "episode_0.npz"], capacity=50)
    assert len(demo) == 6

    online = ReplayBuffer(50)
    flags = np.array([False, True, False, True, True])
    copied = add_transitions(online, demo, transitions(0, 5, intervention=flags))
    assert copied == 3 and len(online) == 5 and len(demo) == 9
    np.testing.assert_array_equal(demo.transitions()["rewards"][-3:], [1, 3, 4])
    assert demo.transitions()["intervention"][-3:].all()
    assert add_transitions(online, None, transitions(5, 2, np.array([True, True]))) == 0
