"""Sessions on disk (learner/session_dataset.py): the LeRobotDataset v3.0 and v2.1 layouts, exact round trip
of the intervention port's messages, videos, appending, and episodes watched from their middle. A crash
at every step of a save: tests/test_session_crash.py; LeRobot's own loader: tests/test_session_lerobot.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from striata.learner.session_dataset import (
    FORMATS,
    SessionWriter,
    load_session_transitions,
    read_episode_frames,
    read_episode_rows,
    read_session_episodes,
)

INFO_KEYS = {
    "codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks", "chunks_size", "fps",
    "splits", "data_path", "video_path", "features",
}  # fmt: skip
V21_INFO_KEYS = INFO_KEYS | {"total_videos", "total_chunks"}
V30_INFO_KEYS = INFO_KEYS | {"data_files_size_in_mb", "video_files_size_in_mb"}
STAT_KEYS = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
VIDEO_INFO_KEYS = {
    "video.fps", "video.height", "video.width", "video.channels", "video.codec", "video.pix_fmt",
    "video.is_depth_map", "has_audio",
}  # fmt: skip
LEROBOT_COLUMNS = {"timestamp", "frame_index", "episode_index", "index", "task_index"}
TASK_TEXT = "pick up the cube"


def _jpeg(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=95)
    return out.getvalue()


def panda_messages(episodes: int, label_step: int = 6) -> list[dict]:
    """Intervention-port messages of a real panda_pick env (one env, 15-step episodes), as an actor sends
    them: before every other step a ``frame`` of the observation it acts on, a ``step`` per step, an
    ``episode_end`` per episode.

    Episode 0: steps 2..5 taken over. Episode 1: taken over from the start, labelled a success at
    ``label_step`` (the actor ends it there: terminated with success). Later ones: the policy only.
    """
    from striata.envs.registry import make_config, make_env
    from striata.envs.tasks.panda.env import CAMERAS
    from striata.envs.tasks.panda.scripted import ScriptedPickPolicy

    env = make_env(
        "panda_pick", num_envs=1, seed=3, config=make_config("panda_pick", {"episode_length_s": 1.5})
    )
    env.final_obs_on_termination = True
    policy = ScriptedPickPolicy.for_env(env, noise=0.3, seed=0)
    obs = env.reset()
    messages: list[dict] = []
    for episode in range(episodes):
        t, ret, takeovers, interventions, before = 0, 0.0, 0, 0, False
        while True:
            action = policy(obs)
            person = (episode == 0 and 2 <= t <= 5) or episode == 1
            if t % 2 == 0:
                frame = env.render(CAMERAS["front"], 48, 64)[0]
                messages.append({"v": 1, "type": "frame", "env": 0, "episode": episode, "t": t,
                                 "camera": "front", "width": 64, "height": 48,
                                 "jpeg": _jpeg(frame)})  # fmt: skip
            next_obs, reward, terminated, truncated, info = env.step(action)
            done = bool(terminated[0] or truncated[0])
            final = info["final_obs"][0] if done else next_obs[0]
            label = -1
            success = bool(info["success"][0])
            if episode == 1 and t == label_step:
                label, success, terminated, truncated = 1, True, np.array([True]), np.array([False])
            ret += float(reward[0])
            takeovers += int(person and not before)
            interventions += int(person)
            before = person
            messages.append({
                "v": 1, "type": "step", "env": 0, "episode": episode, "t": t, "action": action[0].tolist(),
                "reward": float(reward[0]), "return": ret, "terminated": bool(terminated[0]),
                "truncated": bool(truncated[0]), "success": success, "intervention": person, "label": label,
                "progress": None if t % 3 else 0.1 * t, "obs": {"state": obs[0].tolist()},
                "next_obs": {"state": final.tolist()},
            })  # fmt: skip
            t += 1
            if label >= 0:
                obs = env.reset()
                policy.reset()
                break
            policy.reset(terminated | truncated)
            obs = next_obs
            if done:
                break
        messages.append({
            "v": 1, "type": "episode_end", "env": 0, "episode": episode, "return": ret, "length": t,
            "success": success, "label": label, "interventions": interventions, "takeovers": takeovers,
        })  # fmt: skip
    env.close()
    return messages


@pytest.fixture(scope="module")
def messages() -> list[dict]:
    return panda_messages(3)


def open_writer(root: Path, version: str = "v3.0", **kwargs) -> SessionWriter:
    return SessionWriter(
        root, task="panda_pick", task_text=TASK_TEXT, fps=10.0, cameras=["front"], version=version, **kwargs
    )


def feed(writer: SessionWriter, messages: list[dict], stop_before_end_of: int | None = None) -> list[int]:
    written = []
    for message in messages:
        if message["type"] == "episode_end" and message["episode"] == stop_before_end_of:
            break
        if message["type"] == "step":
            writer.add_step(message)
        elif message["type"] == "frame":
            writer.add_frame(message)
        else:
            written.append(writer.end_episode(message))
    return written


def steps_of(messages: list[dict], episode: int) -> list[dict]:
    return [m for m in messages if m["type"] == "step" and m["episode"] == episode]


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("version", FORMATS)
def test_round_trip_of_the_messages(tmp_path, messages, version) -> None:
    root = tmp_path / "session"
    writer = open_writer(root, version)
    # Episodes 0 and 1 end; episode 2 is cut off before its end (a console that stops watching).
    assert feed(writer, messages, stop_before_end_of=2) == [0, 1]
    writer.close()
    writer.close()  # idempotent

    episodes = read_session_episodes(root)
    assert [e["episode_index"] for e in episodes] == [0, 1]
    first, second = steps_of(messages, 0), steps_of(messages, 1)
    assert [e["length"] for e in episodes] == [len(first), len(second)] == [15, 7]
    assert (episodes[0]["interventions"], episodes[0]["takeovers"], episodes[0]["label"]) == (4, 1, -1)
    assert (episodes[1]["interventions"], episodes[1]["label"], episodes[1]["success"]) == (7, 1, True)
    assert all((e["ended"], e["first_t"], e["missed_steps"], e["missed_interventions"]) == (True, 0, 0, 0)
               for e in episodes)  # fmt: skip
    assert [e["tasks"] for e in episodes] == [[TASK_TEXT]] * 2

    # Transitions come back exactly as the messages carried them (float32).
    got = load_session_transitions(root)
    sent = first + second
    np.testing.assert_array_equal(
        got["obs"]["state"], np.array([m["obs"]["state"] for m in sent], np.float32)
    )
    next_sent = np.array([m["next_obs"]["state"] for m in sent], np.float32)
    np.testing.assert_array_equal(got["next_obs"]["state"], next_sent)
    np.testing.assert_array_equal(got["actions"], np.array([m["action"] for m in sent], np.float32))
    np.testing.assert_array_equal(got["rewards"], np.array([m["reward"] for m in sent], np.float32))
    np.testing.assert_array_equal(got["terminated"], [m["terminated"] for m in sent])
    np.testing.assert_array_equal(got["intervention"], [m["intervention"] for m in sent])
    assert got["terminated"][-1] and got["intervention"].sum() == 11
    # The final observation of a time-out is the pre-reset one, not the next episode's first.
    assert not np.array_equal(got["next_obs"]["state"][14], got["obs"]["state"][15])

    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == version and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 22, 1)
    rows = read_episode_rows(episodes[1]).to_pydict()
    columns = {name for name, f in info["features"].items() if f["dtype"] != "video"}
    assert set(rows) == columns
    assert {"observation.state", "next.observation.state", "action", "next.reward", "next.done",
            "next.success", "next.terminated", "complementary_info.intervention",
            "complementary_info.human_label"} | LEROBOT_COLUMNS <= columns  # fmt: skip
    assert rows["index"] == list(range(15, 22)) and rows["frame_index"] == list(range(7))
    assert rows["episode_index"] == [1] * 7 and rows["task_index"] == [0] * 7
    assert rows["complementary_info.human_label"] == [-1] * 6 + [1] and rows["next.done"][-1]
    assert rows["complementary_info.t"] == list(range(7))
    np.testing.assert_allclose(rows["timestamp"], np.arange(7) / 10.0, atol=1e-6)

    # Videos: one frame per row at the camera's size, frames as sent (lossy codecs: close).
    for episode, steps in zip(episodes, (first, second), strict=True):
        assert read_episode_frames(episode, "front").shape == (len(steps), 48, 64, 3)
    sent_frames = [m for m in messages if m["type"] == "frame" and m["episode"] == 0]
    assert len(sent_frames) == 8
    frames = read_episode_frames(episodes[0], "front")
    for message in sent_frames:
        original = np.asarray(Image.open(io.BytesIO(message["jpeg"])), dtype=np.float64)
        for row in (message["t"], message["t"] + 1):  # odd steps repeat the latest frame
            if row < len(frames):
                assert np.abs(frames[row] - original).mean() < 6.0
    # Nothing beside the session but its writer's lock: no next version left half-built.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".session.lock", "session"]
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]


def test_v21_layout(tmp_path, messages) -> None:
    root = tmp_path / "session"
    with open_writer(root, "v2.1") as writer:
        assert feed(writer, messages, stop_before_end_of=2) == [0, 1]
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info.keys() == V21_INFO_KEYS
    assert (info["total_videos"], info["total_chunks"], info["chunks_size"]) == (2, 1, 1000)
    assert info["splits"] == {"train": "0:2"}
    assert info["data_path"] == "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    video = info["features"]["observation.images.front"]
    assert (
        video["dtype"] == "video"
        and video["shape"] == [48, 64, 3]
        and video["info"].keys() >= VIDEO_INFO_KEYS
    )
    assert video["info"]["video.codec"] == "h264" and video["info"]["video.pix_fmt"] == "yuv420p"
    assert [json.loads(line) for line in (root / "meta" / "tasks.jsonl").read_text().splitlines()] == [
        {"task_index": 0, "task": TASK_TEXT}
    ]
    lines = [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines()]
    assert [(e["episode_index"], e["tasks"], e["length"]) for e in lines] == [
        (0, [TASK_TEXT], 15),
        (1, [TASK_TEXT], 7),
    ]
    stats = [json.loads(line) for line in (root / "meta" / "episodes_stats.jsonl").read_text().splitlines()]
    assert [s["episode_index"] for s in stats] == [0, 1]
    assert stats[0]["stats"].keys() == info["features"].keys()
    assert stats[0]["stats"]["action"].keys() == STAT_KEYS
    assert np.array(stats[0]["stats"]["observation.images.front"]["mean"]).shape == (3, 1, 1)
    assert stats[0]["stats"]["complementary_info.progress"]["count"] == [5]  # progress given at t % 3 == 0
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "data/chunk-000/episode_000000.parquet", "data/chunk-000/episode_000001.parquet",
        "meta/episodes.jsonl", "meta/episodes_stats.jsonl", "meta/info.json", "meta/tasks.jsonl",
        "videos/chunk-000/observation.images.front/episode_000000.mp4",
        "videos/chunk-000/observation.images.front/episode_000001.mp4",
    ]  # fmt: skip
    table = pq.read_table(root / files[1])
    for name in table.column_names:
        feature, kind = info["features"][name], table.schema.field(name).type
        if feature["shape"] == [1]:
            dtype = {"float32": "float", "int64": "int64", "int8": "int8", "bool": "bool"}[feature["dtype"]]
            assert str(kind) == dtype
        else:
            assert kind.list_size == feature["shape"][0] and str(kind.value_type) == "float"
    assert decode(root / files[-1]).shape == (7, 48, 64, 3)


def test_v30_layout(tmp_path, messages) -> None:
    """LeRobot's v3.0 files: episodes appended to one data file, one video file per camera and one episodes
    file, each episode's rows and video time span given by its metadata row; stats.json aggregates."""
    root = tmp_path / "session"
    with open_writer(root) as writer:
        assert feed(writer, messages) == [0, 1, 2]
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info.keys() == V30_INFO_KEYS
    assert (info["total_episodes"], info["total_frames"], info["splits"]) == (3, 37, {"train": "0:3"})
    assert (info["data_files_size_in_mb"], info["video_files_size_in_mb"], info["chunks_size"]) == (
        100,
        200,
        1000,
    )
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    video = info["features"]["observation.images.front"]
    assert video["shape"] == [48, 64, 3] and video["info"].keys() >= VIDEO_INFO_KEYS
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/info.json",
        "meta/stats.json", "meta/tasks.parquet", "videos/observation.images.front/chunk-000/file-000.mp4",
    ]  # fmt: skip

    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    assert tasks.to_pydict() == {"task_index": [0], "__index_level_0__": [TASK_TEXT]}
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["__index_level_0__"]
    meta = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    key = "videos/observation.images.front"
    lerobot = [
        "episode_index", "data/chunk_index", "data/file_index", "dataset_from_index", "dataset_to_index",
        f"{key}/chunk_index", f"{key}/file_index", f"{key}/from_timestamp", f"{key}/to_timestamp", "tasks",
        "length",
    ]  # fmt: skip
    assert meta.column_names[: len(lerobot)] == lerobot
    assert meta.column_names[-2:] == ["meta/episodes/chunk_index", "meta/episodes/file_index"]
    stats_columns = {f"stats/{f}/{s}" for f in info["features"] for s in STAT_KEYS}
    assert stats_columns <= set(meta.column_names)
    rows = meta.to_pydict()
    assert rows["dataset_from_index"] == [0, 15, 22] and rows["dataset_to_index"] == [15, 22, 37]
    np.testing.assert_allclose(rows[f"{key}/from_timestamp"], [0.0, 1.5, 2.2])
    np.testing.assert_allclose(rows[f"{key}/to_timestamp"], [1.5, 2.2, 3.7])
    assert rows["stats/complementary_info.progress/count"] == [[5], [3], [5]]

    # One video for the three episodes: frame k at k / fps; each episode's frames are the ones it spans.
    with av.open(str(root / files[-1])) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    np.testing.assert_allclose(times, np.arange(37) / 10.0, atol=1e-9)
    whole = decode(root / files[-1])
    for episode in read_session_episodes(root):
        start, stop = episode["rows"]
        np.testing.assert_array_equal(read_episode_frames(episode, "front"), whole[start:stop])
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert stats.keys() == info["features"].keys() and stats["action"].keys() == STAT_KEYS
    assert stats["action"]["count"] == [37] and stats["complementary_info.progress"]["count"] == [13]
    np.testing.assert_allclose(
        stats["action"]["mean"], load_session_transitions(root)["actions"].astype(np.float64).mean(axis=0)
    )

    # Files roll over at their size limit (LeRobot's data_files_size_in_mb / video_files_size_in_mb): with a
    # tiny one, every episode starts new files, and readers find each in its own.
    small = tmp_path / "small"
    with open_writer(small, data_file_mb=0.001, video_file_mb=0.001) as writer:
        assert feed(writer, messages) == [0, 1, 2]
    episodes = read_session_episodes(small)
    assert [e["data"].name for e in episodes] == ["file-000.parquet", "file-001.parquet", "file-002.parquet"]
    assert [e["video_span"]["front"] for e in episodes] == [(0.0, 1.5), (0.0, 0.7), (0.0, 1.5)]
    assert len(list((small / "meta" / "episodes").rglob("*.parquet"))) == 3
    np.testing.assert_array_equal(
        load_session_transitions(small)["actions"], load_session_transitions(root)["actions"]
    )
    for a, b in zip(episodes, read_session_episodes(root), strict=True):
        np.testing.assert_array_equal(read_episode_frames(a, "front"), read_episode_frames(b, "front"))


def test_video_rows_repeat_the_latest_frame_by_t(tmp_path) -> None:
    colors = {0: (255, 0, 0), 3: (0, 255, 0), 7: (0, 0, 255)}

    def solid(t: int, color: tuple[int, int, int], **fields) -> dict:
        return {
            "env": 1,
            "t": t,
            "camera": "front",
            "jpeg": _jpeg(np.full((16, 16, 3), color, np.uint8)),
            **fields,
        }

    writer = SessionWriter(tmp_path / "s", task="panda_pick", task_text="", fps=10.0, cameras=["front"])
    # Frames that come before their episode's first step wait for it; a stale episode's frame is dropped.
    writer.add_frame(solid(5, (255, 255, 255), episode=3))
    writer.add_frame(solid(0, colors[0], episode=4))
    for t in range(10):
        writer.add_step({"env": 1, "episode": 4, "t": t, "action": [0.0, 0.0], "reward": 0.0,
                         "terminated": False, "truncated": t == 9, "success": False, "intervention": False,
                         "label": -1, "obs": {"state": [float(t)]},
                         "next_obs": {"state": [t + 1.0]}})  # fmt: skip
        if t in (3, 7):  # the second without an episode: the env's open one
            writer.add_frame(solid(t, colors[t], **({"episode": 4} if t == 3 else {})))
        writer.add_frame({"env": 1, "t": t, "camera": "other", "jpeg": b"not recorded"})
    assert writer.end_episode({"env": 1, "episode": 4, "takeovers": 0}) == 0
    assert writer.end_episode({"env": 1, "episode": 5}) == -1  # no step of it came
    writer.close()
    (episode,) = read_session_episodes(tmp_path / "s")
    frames = read_episode_frames(episode, "front")
    expected = [colors[0]] * 3 + [colors[3]] * 4 + [colors[7]] * 3
    np.testing.assert_allclose(frames.reshape(10, -1, 3).mean(axis=1), expected, atol=12)
    assert episode["tasks"] == ["panda_pick"]  # no task text: the task name


def test_an_episode_watched_from_its_middle_is_saved_from_there(tmp_path, messages) -> None:
    """The console starts watching while episode 0 is under way (its steps from t=5 reach the writer), and
    a step of episode 1 is lost on the way: each is saved as far as it came, its metadata says what not."""
    watched = [m for m in messages if m.get("episode") == 1 or (m.get("episode") == 0 and m.get("t", 5) >= 5)]
    lost = next(m for m in watched if m["type"] == "step" and m["episode"] == 1 and m["t"] == 3)
    root = tmp_path / "session"
    with open_writer(root) as writer:
        assert feed(writer, [m for m in watched if m is not lost]) == [0, 1]
    first, second = read_session_episodes(root)
    assert (first["first_t"], first["length"], first["missed_steps"]) == (5, 10, 5)
    # Steps 2..5 were taken over: the one it holds, and three before the console watched.
    assert (first["interventions"], first["missed_interventions"]) == (1, 3)
    assert (second["first_t"], second["length"], second["missed_steps"], second["missed_interventions"]) == (
        0,
        6,
        1,
        1,
    )
    rows = read_episode_rows(first).to_pydict()
    assert rows["complementary_info.t"] == list(range(5, 15)) and rows["frame_index"] == list(range(10))
    # Its frames start at the first one sent for a step it holds (t=6: frames come every other step).
    frames = read_episode_frames(first, "front")
    sent = {m["t"]: m["jpeg"] for m in messages if m["type"] == "frame" and m["episode"] == 0}
    original = np.asarray(Image.open(io.BytesIO(sent[6])), dtype=np.float64)
    assert frames.shape[0] == 10 and np.abs(frames[1] - original).mean() < 6.0


def test_an_episode_a_person_acted_in_is_kept_when_its_end_will_not_come(tmp_path, messages) -> None:
    """Episode 0 (taken over at steps 2..5) never gets its end: the env's next episode starts (its end was
    lost); episode 1 (taken over throughout) is cut by the console closing the writer. Both are kept as far
    as they came; episode 2 (the policy's only) is dropped at the close."""
    root = tmp_path / "session"
    without_ends = [m for m in messages if m["type"] != "episode_end"]
    with open_writer(root) as writer:
        assert feed(writer, [m for m in without_ends if m["episode"] in (0, 2)]) == []
    with open_writer(root) as writer:
        assert feed(writer, [m for m in without_ends if m["episode"] == 1][:8]) == []  # steps 0..4, 3 frames
    first, second = read_session_episodes(root)
    keys = ("actor_episode", "length", "ended", "interventions", "takeovers", "first_t", "missed_steps")
    assert [first[k] for k in keys] == [0, 15, False, 4, 1, 0, 0]
    assert [second[k] for k in keys] == [1, 5, False, 5, 1, 0, 0]
    assert len(read_episode_frames(second, "front")) == 5


@pytest.mark.parametrize("version", FORMATS)
def test_reopening_appends_and_checks_the_layout(tmp_path, messages, version) -> None:
    root = tmp_path / "session"
    with open_writer(root, version) as writer:
        feed(writer, [m for m in messages if m.get("episode") == 0])
        with pytest.raises(ValueError, match="open in another SessionWriter"):
            open_writer(root, version)
    with SessionWriter(
        root, task="panda_pick", task_text="lift it", fps=10.0, cameras=["front"], version=version
    ) as writer:
        assert feed(writer, [m for m in messages if m.get("episode") in (1, 2)]) == [1, 2]
        bad = dict(steps_of(messages, 0)[0], episode=9, action=[0.0] * 5)
        with pytest.raises(ValueError, match=r"action has shape \[5\], the session holds \[4\]"):
            writer.add_step(bad)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 3 and info["total_tasks"] == 2
    episodes = read_session_episodes(root)
    assert info["total_frames"] == sum(e["length"] for e in episodes) == 15 + 7 + 15
    assert [e["tasks"] for e in episodes] == [[TASK_TEXT], ["lift it"], ["lift it"]]
    rows = read_episode_rows(episodes[2])
    assert rows.column("index").to_pylist()[0] == 22 and set(rows.column("task_index").to_pylist()) == {1}
    with pytest.raises(ValueError, match=r"fps 10 on disk, this writer records 20\.0"):
        SessionWriter(
            root, task="panda_pick", task_text=TASK_TEXT, fps=20.0, cameras=["front"], version=version
        )
    with pytest.raises(ValueError, match=r"cameras \['front'\] on disk"):
        SessionWriter(
            root, task="panda_pick", task_text=TASK_TEXT, fps=10.0, cameras=["wrist"], version=version
        )
    other = next(v for v in FORMATS if v != version)
    with pytest.raises(ValueError, match=f"a session in format {version}, this writer writes {other}"):
        open_writer(root, other)
