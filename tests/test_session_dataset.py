"""Sessions on disk (learner/session_dataset.py): LeRobotDataset v2.1 layout, exact round trip of the
intervention port's messages, videos, appending, and no half episode after a crash."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from striata.learner.session_dataset import SessionWriter, load_session_transitions, read_session_episodes

REPO = Path(__file__).resolve().parents[1]
INFO_KEYS = {
    "codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks", "total_videos",
    "total_chunks", "chunks_size", "fps", "splits", "data_path", "video_path", "features",
}  # fmt: skip
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


def test_round_trip_layout_and_videos(tmp_path, messages) -> None:
    root = tmp_path / "session"
    writer = SessionWriter(root, task="panda_pick", task_text=TASK_TEXT, fps=10.0, cameras=["front"])
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

    # LeRobot v2.1 meta files.
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info.keys() >= INFO_KEYS
    assert info["codebase_version"] == "v2.1" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_videos"], info["total_tasks"]) == (
        2,
        22,
        2,
        1,
    )
    assert info["splits"] == {"train": "0:2"} and info["chunks_size"] == 1000 and info["total_chunks"] == 1
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
    assert np.array(stats[0]["stats"]["observation.images.front"]["mean"]).shape == (3, 1, 1)
    assert stats[0]["stats"]["complementary_info.progress"]["count"] == [5]  # progress given at t % 3 == 0

    # Parquet columns: every non-video feature, with the feature's dtype and shape.
    table = pq.read_table(episodes[1]["data"])
    columns = {name for name, f in info["features"].items() if f["dtype"] != "video"}
    assert set(table.column_names) == columns
    assert {"observation.state", "next.observation.state", "action", "next.reward", "next.done",
            "next.success", "next.terminated", "complementary_info.intervention",
            "complementary_info.human_label"} | LEROBOT_COLUMNS <= columns  # fmt: skip
    for name in columns:
        feature, kind = info["features"][name], table.schema.field(name).type
        if feature["shape"] == [1]:
            assert (
                str(kind)
                == {"float32": "float", "int64": "int64", "int8": "int8", "bool": "bool"}[feature["dtype"]]
            )
        else:
            assert kind.list_size == feature["shape"][0] and str(kind.value_type) == "float"
    rows = table.to_pydict()
    assert rows["index"] == list(range(15, 22)) and rows["frame_index"] == list(range(7))
    assert rows["episode_index"] == [1] * 7 and rows["task_index"] == [0] * 7
    assert rows["complementary_info.human_label"] == [-1] * 6 + [1] and rows["next.done"][-1]
    np.testing.assert_allclose(rows["timestamp"], np.arange(7) / 10.0, atol=1e-6)

    # Videos: one frame per step, the size of the camera, frames as sent (lossy codecs: close).
    for episode, steps in zip(episodes, (first, second), strict=True):
        frames = decode(episode["videos"]["front"])
        assert frames.shape == (len(steps), 48, 64, 3)
    sent_frames = [m for m in messages if m["type"] == "frame" and m["episode"] == 0]
    assert len(sent_frames) == 8
    frames = decode(episodes[0]["videos"]["front"])
    for message in sent_frames:
        original = np.asarray(Image.open(io.BytesIO(message["jpeg"])), dtype=np.float64)
        for row in (message["t"], message["t"] + 1):  # odd steps repeat the latest frame
            if row < len(frames):
                assert np.abs(frames[row] - original).mean() < 6.0
    # Nothing of the cut-off episode, no temporary files.
    assert not list(root.rglob("*.tmp")) and not list(root.rglob("episode_000002.*"))


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
    frames = decode(read_session_episodes(tmp_path / "s")[0]["videos"]["front"])
    expected = [colors[0]] * 3 + [colors[3]] * 4 + [colors[7]] * 3
    np.testing.assert_allclose(frames.reshape(10, -1, 3).mean(axis=1), expected, atol=12)
    assert read_session_episodes(tmp_path / "s")[0]["tasks"] == ["panda_pick"]  # no task text: the task name


def test_reopening_appends_and_checks_the_layout(tmp_path, messages) -> None:
    root = tmp_path / "session"
    with SessionWriter(root, task="panda_pick", task_text=TASK_TEXT, fps=10.0, cameras=["front"]) as writer:
        feed(writer, [m for m in messages if m.get("episode") == 0])
        with pytest.raises(ValueError, match="open in another SessionWriter"):
            SessionWriter(root, task="panda_pick", task_text=TASK_TEXT, fps=10.0, cameras=["front"])
    with SessionWriter(root, task="panda_pick", task_text="lift it", fps=10.0, cameras=["front"]) as writer:
        assert feed(writer, [m for m in messages if m.get("episode") in (1, 2)]) == [1, 2]
        bad = dict(steps_of(messages, 0)[0], episode=9, action=[0.0] * 5)
        with pytest.raises(ValueError, match=r"action has shape \[5\], the session holds \[4\]"):
            writer.add_step(bad)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 3 and info["total_tasks"] == 2
    assert info["total_frames"] == sum(e["length"] for e in read_session_episodes(root)) == 15 + 7 + 15
    table = pq.read_table(read_session_episodes(root)[2]["data"])
    assert table.column("index").to_pylist()[0] == 22 and set(table.column("task_index").to_pylist()) == {1}
    with pytest.raises(ValueError, match=r"fps 10 on disk, this writer records 20\.0"):
        SessionWriter(root, task="panda_pick", task_text=TASK_TEXT, fps=20.0, cameras=["front"])
    with pytest.raises(ValueError, match=r"cameras \['front'\] on disk"):
        SessionWriter(root, task="panda_pick", task_text=TASK_TEXT, fps=10.0, cameras=["wrist"])


CRASH = """
import json, os, sys
import striata.learner.session_dataset as sd
from pathlib import Path

messages = json.loads(Path(sys.argv[2]).read_text())
for m in messages:
    if m["type"] == "frame":
        m["jpeg"] = bytes.fromhex(m["jpeg"])
real = sd.atomic_write
def crash_at_commit(path, write):
    # Episode 1's data and meta lines are on disk; the process dies before info.json commits them.
    info = Path(path)
    if info.name == "info.json" and info.exists() and json.loads(info.read_text())["total_episodes"] == 1:
        os._exit(17)
    real(path, write)
sd.atomic_write = crash_at_commit
writer = sd.SessionWriter(Path(sys.argv[1]), task="panda_pick", task_text="t", fps=10.0, cameras=["front"])
for m in messages:
    {"step": writer.add_step, "frame": writer.add_frame, "episode_end": writer.end_episode}[m["type"]](m)
"""

DROPPED = """
import json, os, sys
import striata.learner.session_dataset as sd
from pathlib import Path

messages = json.loads(Path(sys.argv[2]).read_text())
writer = sd.SessionWriter(Path(sys.argv[1]), task="panda_pick", task_text="t", fps=10.0, cameras=["front"])
for m in messages:
    if m["type"] == "frame":
        m["jpeg"] = bytes.fromhex(m["jpeg"])
    {"step": writer.add_step, "frame": writer.add_frame, "episode_end": writer.end_episode}[m["type"]](m)
os._exit(0)  # the writer is dropped mid-episode: no close, no end
"""


def _run(script: str, root: Path, messages: list[dict], tmp_path: Path) -> int:
    path = tmp_path / "messages.json"
    encoded = [{**m, "jpeg": m["jpeg"].hex()} if m["type"] == "frame" else m for m in messages]
    path.write_text(json.dumps(encoded))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(root), str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    return result.returncode


def test_a_crash_never_leaves_half_an_episode(tmp_path, messages) -> None:
    # A writer dropped in the middle of episode 1: episode 0 is there, nothing of episode 1.
    dropped = tmp_path / "dropped"
    partial = [m for m in messages if m.get("episode") == 0] + steps_of(messages, 1)[:3]
    assert _run(DROPPED, dropped, partial, tmp_path) == 0
    assert [e["episode_index"] for e in read_session_episodes(dropped)] == [0]
    assert not list(dropped.rglob("episode_000001.*"))

    # A process killed while writing episode 1, after its files, before the commit.
    crashed = tmp_path / "crashed"
    assert _run(CRASH, crashed, [m for m in messages if m.get("episode") in (0, 1)], tmp_path) == 17
    assert list(crashed.rglob("episode_000001.*"))  # its files were written...
    assert [e["episode_index"] for e in read_session_episodes(crashed)] == [0]  # ...but readers skip them
    assert len(load_session_transitions(crashed)["rewards"]) == 15
    # A writer opening the root clears them and appends in their place.
    with SessionWriter(crashed, task="panda_pick", task_text="t", fps=10.0, cameras=["front"]) as writer:
        assert not list(crashed.rglob("episode_000001.*")) and not list(crashed.rglob("*.tmp"))
        assert feed(writer, [m for m in messages if m.get("episode") == 1]) == [1]
    assert [e["length"] for e in read_session_episodes(crashed)] == [15, 7]
    lines = (crashed / "meta" / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(line)["episode_index"] for line in lines] == [0, 1]
