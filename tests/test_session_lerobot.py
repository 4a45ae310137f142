"""A session written by striata, read by LeRobot's own loader (``LeRobotDataset``, the current release, which
reads format v3.0): the same episodes, rows, values, timestamps and video frames as striata's reader.

LeRobot runs in a process of its own (tests/lerobot_reader.py) with a stand-in for torchvision, which it
imports without calling; the test requires that nothing of the stand-in was called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from lerobot_reader import LEROBOT, NOT_INSTALLED, read_with_lerobot
from test_session_dataset import TASK_TEXT, feed, open_writer, panda_messages

from striata.learner.session_dataset import read_episode_frames, read_episode_rows, read_session_episodes

pytestmark = pytest.mark.skipif(not LEROBOT, reason=NOT_INSTALLED)
LOCATION_KEYS = {"data", "rows", "videos", "video_span"}  # striata's reader adds where an episode lies


def assert_lerobot_reads_as_striata(root: Path, summary: dict[str, Any], arrays: Any) -> None:
    """LeRobot's view of ``root`` (tests/lerobot_reader.py) holds exactly what striata's reader reads there,
    and nothing more: no row or episode metadata beyond the committed episodes."""
    assert "error" not in summary, summary["error"]
    episodes = read_session_episodes(root)
    rows = pa.concat_tables([read_episode_rows(e) for e in episodes])
    assert summary["codebase_version"] == "v3.0"
    assert summary["num_episodes"] == summary["meta_episodes"] == len(episodes)
    assert summary["num_frames"] == summary["hf_rows"] == len(rows) == sum(e["length"] for e in episodes)
    # LeRobot's episode metadata is striata's: counts, locations, timestamps, striata's own fields.
    for theirs, ours in zip(summary["episodes"], episodes, strict=True):
        assert theirs == {k: v for k, v in ours.items() if k not in LOCATION_KEYS}
    # Every value of every row; timestamps included. (LeRobot decoded each row's frame at its episode's
    # from_timestamp + timestamp within 1e-4 s, or it would have raised.)
    for name in rows.column_names:
        ours = rows.column(name).to_pylist()
        np.testing.assert_array_equal(arrays[name], np.array(ours, dtype=arrays[name].dtype), err_msg=name)
    cameras = [k for k in arrays.files if k.startswith("observation.images.")]
    for key in cameras:
        ours = np.concatenate(
            [read_episode_frames(e, key.removeprefix("observation.images.")) for e in episodes]
        )
        assert arrays[key].shape == ours.shape
        difference = np.abs(arrays[key].astype(int) - ours).max()
        assert difference == 0, f"{key}: LeRobot's frames differ from striata's by up to {difference}"
    assert summary["tasks"] == [episodes[i]["tasks"][0] for i in rows.column("episode_index").to_pylist()]


def test_lerobot_reads_a_session_as_striata_does(tmp_path) -> None:
    messages = panda_messages(3)
    one_file = tmp_path / "one_file"  # all episodes appended to one data, episodes and video file
    with open_writer(one_file) as writer:
        assert feed(writer, messages) == [0, 1, 2]
    rolled = tmp_path / "rolled"  # a file per episode: LeRobot's size limits reached at every episode
    with open_writer(rolled, data_file_mb=0.001, video_file_mb=0.001) as writer:
        assert feed(writer, [m for m in messages if m.get("episode") == 0]) == [0]
    with open_writer(rolled) as writer:  # appended by a second writer
        assert feed(writer, [m for m in messages if m.get("episode") in (1, 2)]) == [1, 2]

    read, torchvision_calls = read_with_lerobot([one_file, rolled], tmp_path / "lerobot")
    for root, (summary, arrays) in zip((one_file, rolled), read, strict=True):
        assert_lerobot_reads_as_striata(root, summary, arrays)
        assert (summary["num_episodes"], summary["num_frames"]) == (3, 37)
        assert set(summary["tasks"]) == {TASK_TEXT}
        assert arrays["observation.images.front"].shape == (37, 48, 64, 3)
        assert summary["stats_keys"] == sorted(arrays.files)
    assert torchvision_calls == []
    # The rolled session's files: one per episode, and LeRobot found each episode in its own.
    assert [e["data/file_index"] for e in read[1][0]["episodes"]] == [0, 1, 2]
