"""Intervene sessions on disk: episodes of watched envs in the LeRobotDataset v2.1 layout.

``SessionWriter`` takes the intervention port's ``step``, ``frame`` and ``episode_end`` messages
(actors/INTERVENTION.md) as the console receives them and writes each ended episode as one parquet
file plus one mp4 per camera, with LeRobot's meta files; ``load_session_transitions`` reads a
session back as transitions for ``striata.learner.replay`` (``striata train --demos``), and
``read_session_episodes`` lists its episodes. The layout, the columns and the crash-safety rules
are in actors/SESSIONS.md.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import io
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from striata.common.files import atomic_write

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
IMAGE_PREFIX = "observation.images."
DEFAULT_VIDEO_SIZE = (128, 128)  # (height, width) of a camera no frame has shown yet
MAX_WAITING_FRAMES = 64  # per env: frames kept for an episode whose first step has not come

# Per-row scalar columns: name -> (arrow type, LeRobot dtype).
_SCALARS: dict[str, tuple[pa.DataType, str]] = {
    "next.reward": (pa.float32(), "float32"),
    "next.done": (pa.bool_(), "bool"),
    "next.terminated": (pa.bool_(), "bool"),
    "next.truncated": (pa.bool_(), "bool"),
    "next.success": (pa.bool_(), "bool"),
    "complementary_info.intervention": (pa.bool_(), "bool"),
    "complementary_info.human_label": (pa.int8(), "int8"),
    "complementary_info.progress": (pa.float32(), "float32"),
    "complementary_info.t": (pa.int64(), "int64"),
    "timestamp": (pa.float32(), "float32"),
    "frame_index": (pa.int64(), "int64"),
    "episode_index": (pa.int64(), "int64"),
    "index": (pa.int64(), "int64"),
    "task_index": (pa.int64(), "int64"),
}
_STEP_FIELDS = ("env", "episode", "t", "action", "reward", "terminated", "truncated", "success",
                "intervention", "label", "obs", "next_obs")  # fmt: skip
_END_FIELDS = ("env", "episode")


@dataclass
class _Episode:
    env: int
    episode: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    frames: dict[str, list[tuple[int, int, bytes]]] = field(default_factory=dict)  # camera -> (t, seq, jpeg)


def _field(message: Mapping[str, Any], names: Sequence[str], what: str) -> None:
    missing = [name for name in names if name not in message]
    if missing:
        raise ValueError(f"{what} message lacks field(s) {missing}; it has {sorted(message)}")


def _vector(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32).reshape(-1)
    if not np.isfinite(array).all():
        raise ValueError(f"step message: {name} holds non-finite values")
    return array


def _obs(value: Any, name: str) -> dict[str, np.ndarray]:
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"step message: {name} must be a non-empty map of name -> list of floats")
    return {str(key): _vector(v, f"{name}[{key!r}]") for key, v in value.items()}


def _vector_feature(dim: int) -> dict[str, Any]:
    return {"dtype": "float32", "shape": [dim], "names": None}


def _even(n: int) -> int:
    return n + n % 2


def _fps_value(fps: float) -> float | int:
    return round(fps) if abs(fps - round(fps)) < 1e-6 else float(fps)


def _chunk_of(episode_index: int, chunks_size: int) -> int:
    return episode_index // chunks_size


def _stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's per-episode stats of one feature over its rows, as lists; rows holding NaN (a
    progress the reward model did not give) are left out, and ``count`` says how many were used."""
    data = values.astype(np.float64)
    keep = data.ndim == 1  # scalars: shape [1] like LeRobot's keepdims
    rows = np.isfinite(data) if keep else np.isfinite(data).all(axis=1)
    data = data[rows]
    if not len(data):
        zeros = np.zeros(1 if keep else values.shape[1]).tolist()
        return {"min": zeros, "max": zeros, "mean": zeros, "std": zeros, "count": [0]}
    return {
        "min": np.atleast_1d(np.min(data, axis=0, keepdims=keep)).tolist(),
        "max": np.atleast_1d(np.max(data, axis=0, keepdims=keep)).tolist(),
        "mean": np.atleast_1d(np.mean(data, axis=0, keepdims=keep)).tolist(),
        "std": np.atleast_1d(np.std(data, axis=0, keepdims=keep)).tolist(),
        "count": [len(data)],
    }


def _column(table: pa.Table, name: str) -> np.ndarray:
    """A parquet column as numpy: [L] for scalars, [L, d] for fixed-size lists."""
    column = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(table), column.type.list_size)
    return column.to_numpy(zero_copy_only=False)


def _image_stats(images: np.ndarray) -> dict[str, list]:
    """Per-channel stats of [L, H, W, 3] uint8 frames in [0, 1], shaped [3, 1, 1] as LeRobot's."""
    data = images.astype(np.float64) / 255.0
    axes = (0, 1, 2)

    def channel(values: np.ndarray) -> list:
        return values.reshape(3, 1, 1).tolist()

    return {
        "min": channel(data.min(axis=axes)),
        "max": channel(data.max(axis=axes)),
        "mean": channel(data.mean(axis=axes)),
        "std": channel(data.std(axis=axes)),
        "count": [len(images)],
    }


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    atomic_write(path, lambda f: f.write(text.encode()))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def encode_video(path: Path, images: np.ndarray, fps: float) -> None:
    """Write [L, H, W, 3] uint8 frames as an H.264 yuv420p mp4 (frame i at i / fps), atomically."""
    rate = Fraction(fps).limit_denominator(1000)

    def write(f: Any) -> None:
        with av.open(f, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = images.shape[2], images.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "23", "g": "2", "preset": "veryfast"}  # g=2: cheap seeking, as LeRobot
            for i, image in enumerate(images):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = i, 1 / rate
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))

    atomic_write(path, write)


class SessionWriter:
    """Episodes of an intervene session on disk, in the LeRobotDataset v2.1 layout (pyarrow + PyAV).

    Messages are keyed by (env, episode); an episode is written when its ``episode_end`` comes.
    Opening a root that already holds a session appends after its episodes (same fps and cameras).
    Thread-safe; ``end_episode`` encodes the videos, so callers on an event loop run it in a thread.
    """

    def __init__(self, root: Path, *, task: str, task_text: str, fps: float, cameras: Sequence[str]) -> None:
        if not fps > 0:
            raise ValueError(f"SessionWriter: fps must be > 0, got {fps}")
        self.root = Path(root)
        self.task = task
        self.task_text = task_text or task
        self.fps = float(fps)
        self.cameras = list(cameras)
        self._lock = threading.Lock()
        self._open: dict[tuple[int, int], _Episode] = {}
        self._latest: dict[int, int] = {}  # env -> its newest open episode
        # env -> frames whose episode has no step yet: (episode or None, camera, (t, seq, jpeg))
        self._orphans: dict[int, list[tuple[int | None, str, tuple[int, int, bytes]]]] = {}
        self._seq = 0
        self._closed = False
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        self._lock_file = (self.root / "meta" / ".lock").open("w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise ValueError(f"session root {self.root} is open in another SessionWriter") from None
        try:
            self._load_existing()
        except BaseException:
            self._lock_file.close()  # releases the lock
            raise

    # ----------------------------------------------------------------- messages
    def add_step(self, step: Mapping[str, Any]) -> None:
        """One ``step`` message as received; raises ValueError if it lacks a field or does not fit."""
        _field(step, _STEP_FIELDS, "step")
        row = {
            "obs": _obs(step["obs"], "obs"),
            "next_obs": _obs(step["next_obs"], "next_obs"),
            "action": _vector(step["action"], "action"),
            "reward": float(step["reward"]),
            "terminated": bool(step["terminated"]),
            "truncated": bool(step["truncated"]),
            "success": bool(step["success"]),
            "intervention": bool(step["intervention"]),
            "label": int(step["label"]),
            "progress": math.nan if step.get("progress") is None else float(step["progress"]),
            "t": int(step["t"]),
        }
        if row["label"] not in (-1, 0, 1):
            raise ValueError(f"step message: label must be -1, 0 or 1, got {row['label']}")
        if row["obs"].keys() != row["next_obs"].keys():
            raise ValueError(
                f"step message: next_obs keys {sorted(row['next_obs'])} != obs keys {sorted(row['obs'])}"
            )
        env, episode = int(step["env"]), int(step["episode"])
        with self._lock:
            self._check_shapes(row)
            record = self._open.get((env, episode))
            if record is None:
                record = self._start(env, episode)
            record.steps.append(row)

    def add_frame(self, frame: Mapping[str, Any]) -> None:
        """One ``frame`` message (jpeg bytes) of its (env, episode); without ``episode``, of the env's
        newest open episode. Frames of an episode whose steps have not come yet wait for them."""
        _field(frame, ("env", "t", "camera", "jpeg"), "frame")
        camera = str(frame["camera"])
        if camera not in self.cameras:
            return  # a camera this session does not record
        env, t, jpeg = int(frame["env"]), int(frame["t"]), bytes(frame["jpeg"])
        episode = None if frame.get("episode") is None else int(frame["episode"])
        with self._lock:
            self._seq += 1
            entry = (camera, (t, self._seq, jpeg))
            latest = self._latest.get(env)
            if episode is None:
                episode = latest
            if episode is not None and (env, episode) in self._open:
                self._open[(env, episode)].frames.setdefault(camera, []).append(entry[1])
            elif episode is None or latest is None or episode > latest:
                waiting = self._orphans.setdefault(env, [])
                waiting.append((episode, *entry))
                del waiting[:-MAX_WAITING_FRAMES]

    def end_episode(self, episode_end: Mapping[str, Any]) -> int:
        """An ``episode_end`` message: write that episode; its episode_index (-1: no step of it came)."""
        _field(episode_end, _END_FIELDS, "episode_end")
        env, episode = int(episode_end["env"]), int(episode_end["episode"])
        with self._lock:
            record = self._open.pop((env, episode), None)
            if self._latest.get(env) == episode:
                del self._latest[env]
            if record is None or not record.steps:
                return -1
            return self._write(record, episode_end)

    def close(self) -> None:
        """Drop episodes that never ended and release the root; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._open.clear()
            self._latest.clear()
            self._orphans.clear()
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- bookkeeping
    def _start(self, env: int, episode: int) -> _Episode:
        if self._closed:
            raise ValueError(f"SessionWriter for {self.root} is closed")
        # An older episode of the same env that never got its end will not get one: drop it.
        for key in [k for k in self._open if k[0] == env and k[1] != episode]:
            del self._open[key]
        record = _Episode(env, episode)
        waiting = self._orphans.pop(env, [])
        for frame_episode, camera, entry in waiting:
            if frame_episode is None or frame_episode == episode:
                record.frames.setdefault(camera, []).append(entry)
        later = [w for w in waiting if w[0] is not None and w[0] > episode]
        if later:
            self._orphans[env] = later
        self._open[(env, episode)] = record
        self._latest[env] = episode
        return record

    def _load_existing(self) -> None:
        meta = self.root / "meta"
        info_path = meta / "info.json"
        self._info: dict[str, Any] | None = None
        self._episodes: list[dict[str, Any]] = []
        self._stats: list[dict[str, Any]] = []
        self._tasks: list[dict[str, Any]] = []
        self._video_sizes: dict[str, tuple[int, int]] = {}
        self._shapes: dict[str, list[int]] | None = None  # vector columns -> shape
        if info_path.is_file():
            info = json.loads(info_path.read_text())
            if info.get("codebase_version") != CODEBASE_VERSION:
                raise ValueError(f"{info_path}: codebase_version {info.get('codebase_version')!r}, "
                                 f"this writer appends to {CODEBASE_VERSION!r} only")  # fmt: skip
            if abs(float(info["fps"]) - self.fps) > 1e-6:
                raise ValueError(f"{info_path}: fps {info['fps']} on disk, this writer records {self.fps}")
            on_disk = sorted(
                k[len(IMAGE_PREFIX) :] for k, v in info["features"].items() if v["dtype"] == "video"
            )
            if on_disk != sorted(self.cameras):
                raise ValueError(
                    f"{info_path}: cameras {on_disk} on disk, this writer records {sorted(self.cameras)}"
                )
            self._info = info
            self._shapes = {
                name: feature["shape"]
                for name, feature in info["features"].items()
                if name == "action"
                or (name.startswith(("observation.", "next.observation.")) and feature["dtype"] != "video")
            }
            total = int(info["total_episodes"])
            self._episodes = [e for e in _read_jsonl(meta / "episodes.jsonl") if e["episode_index"] < total]
            self._stats = [
                s for s in _read_jsonl(meta / "episodes_stats.jsonl") if s["episode_index"] < total
            ]
            self._tasks = _read_jsonl(meta / "tasks.jsonl")
            for camera in self.cameras:
                shape = info["features"][IMAGE_PREFIX + camera]["shape"]
                self._video_sizes[camera] = (int(shape[0]), int(shape[1]))
        self._remove_uncommitted()

    def _remove_uncommitted(self) -> None:
        """Delete files a crash left behind: temporaries and files of episodes past the commit point."""
        total = len(self._episodes)
        for folder in ("data", "videos", "meta"):
            base = self.root / folder
            if not base.is_dir():
                continue
            for path in base.rglob("*"):
                if not path.is_file():
                    continue
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
                elif path.name.startswith("episode_") and path.suffix in (".parquet", ".mp4"):
                    with contextlib.suppress(ValueError):
                        if int(path.stem.split("_")[1]) >= total:
                            path.unlink(missing_ok=True)

    def _check_shapes(self, row: dict[str, Any]) -> None:
        """The row's vectors against the session's (from disk, or from the first step added)."""
        shapes = {f"observation.{k}": [len(v)] for k, v in row["obs"].items()}
        shapes.update({f"next.observation.{k}": [len(v)] for k, v in row["next_obs"].items()})
        shapes["action"] = [len(row["action"])]
        if self._shapes is None:
            self._shapes = shapes
            return
        if shapes.keys() != self._shapes.keys():
            raise ValueError(
                f"step message: columns {sorted(shapes)}, the session holds {sorted(self._shapes)}"
            )
        for name, shape in shapes.items():
            if shape != self._shapes[name]:
                raise ValueError(
                    f"step message: {name} has shape {shape}, the session holds {self._shapes[name]}"
                )

    def _task_index(self) -> tuple[int, list[dict[str, Any]]]:
        """This writer's task index, and the task list that holds it (a new task appended)."""
        for task in self._tasks:
            if task["task"] == self.task_text:
                return int(task["task_index"]), self._tasks
        return len(self._tasks), [*self._tasks, {"task_index": len(self._tasks), "task": self.task_text}]

    def _video_size(self, camera: str, first: bytes | None) -> tuple[int, int]:
        if camera not in self._video_sizes:
            if first is not None:
                with Image.open(io.BytesIO(first)) as image:
                    width, height = image.size
                self._video_sizes[camera] = (_even(height), _even(width))
            else:
                known = list(self._video_sizes.values())
                self._video_sizes[camera] = known[0] if known else DEFAULT_VIDEO_SIZE
        return self._video_sizes[camera]

    def _frames(self, record: _Episode, camera: str) -> np.ndarray:
        """[L, H, W, 3] uint8: per row the latest frame with t <= the row's t (see SESSIONS.md)."""
        entries = sorted(record.frames.get(camera, []))
        height, width = self._video_size(camera, entries[0][2] if entries else None)
        images = np.zeros((len(record.steps), height, width, 3), dtype=np.uint8)
        if not entries:
            return images
        times = [t for t, _, _ in entries]
        decoded: dict[int, np.ndarray] = {}
        for row, step in enumerate(record.steps):
            pick = max(bisect.bisect_right(times, step["t"]) - 1, 0)
            if pick not in decoded:
                with Image.open(io.BytesIO(entries[pick][2])) as image:
                    rgb = image.convert("RGB")
                    if rgb.size != (width, height):
                        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
                    decoded[pick] = np.asarray(rgb, dtype=np.uint8)
            images[row] = decoded[pick]
        return images

    def _table(self, record: _Episode, episode_index: int, start_index: int, task_index: int) -> pa.Table:
        steps = record.steps
        n = len(steps)
        columns: dict[str, pa.Array] = {}
        for prefix, source in (("observation.", "obs"), ("next.observation.", "next_obs")):
            for key in steps[0][source]:
                values = np.stack([s[source][key] for s in steps])
                columns[prefix + key] = pa.FixedSizeListArray.from_arrays(
                    pa.array(values.reshape(-1), pa.float32()), values.shape[1]
                )
        actions = np.stack([s["action"] for s in steps])
        columns["action"] = pa.FixedSizeListArray.from_arrays(
            pa.array(actions.reshape(-1), pa.float32()), actions.shape[1]
        )
        frame_index = np.arange(n, dtype=np.int64)
        scalars = {
            "next.reward": [s["reward"] for s in steps],
            "next.done": [s["terminated"] or s["truncated"] for s in steps],
            "next.terminated": [s["terminated"] for s in steps],
            "next.truncated": [s["truncated"] for s in steps],
            "next.success": [s["success"] for s in steps],
            "complementary_info.intervention": [s["intervention"] for s in steps],
            "complementary_info.human_label": [s["label"] for s in steps],
            "complementary_info.progress": [s["progress"] for s in steps],
            "complementary_info.t": [s["t"] for s in steps],
            "timestamp": (frame_index / self.fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(n, episode_index, dtype=np.int64),
            "index": start_index + frame_index,
            "task_index": np.full(n, task_index, dtype=np.int64),
        }
        for name, values in scalars.items():
            columns[name] = pa.array(np.asarray(values), _SCALARS[name][0])
        return pa.table(columns)

    def _features(self, table: pa.Table) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for name in table.column_names:
            kind = table.schema.field(name).type
            if pa.types.is_fixed_size_list(kind):
                features[name] = _vector_feature(kind.list_size)
            else:
                features[name] = {"dtype": _SCALARS[name][1], "shape": [1], "names": None}
        for camera in self.cameras:
            height, width = self._video_sizes[camera]
            features[IMAGE_PREFIX + camera] = {
                "dtype": "video",
                "shape": [height, width, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.fps": float(self.fps), "video.height": height, "video.width": width,
                    "video.channels": 3, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False, "has_audio": False,
                },
            }  # fmt: skip
        return features

    def _write(self, record: _Episode, end: Mapping[str, Any]) -> int:
        episode_index = len(self._episodes)
        start_index = int(self._info["total_frames"]) if self._info is not None else 0
        chunks_size = int(self._info["chunks_size"]) if self._info is not None else CHUNKS_SIZE
        chunk = _chunk_of(episode_index, chunks_size)
        task_index, tasks = self._task_index()
        table = self._table(record, episode_index, start_index, task_index)
        # Cameras with frames first: they fix the sizes a camera without any borrows (SESSIONS.md).
        order = sorted(self.cameras, key=lambda camera: camera not in record.frames)
        videos = {camera: self._frames(record, camera) for camera in order}
        features = self._features(table)

        # Data first (temporary files renamed into place), the meta files after, info.json last.
        for camera, images in videos.items():
            video_key = IMAGE_PREFIX + camera
            path = self.root / VIDEO_PATH.format(
                episode_chunk=chunk, video_key=video_key, episode_index=episode_index
            )
            encode_video(path, images, self.fps)
        data_path = self.root / DATA_PATH.format(episode_chunk=chunk, episode_index=episode_index)
        atomic_write(data_path, lambda f: pq.write_table(table, f))

        stats = {name: _stats(_column(table, name)) for name in table.column_names}
        for camera, images in videos.items():
            stats[IMAGE_PREFIX + camera] = _image_stats(images)
        steps = record.steps
        episode_meta = {
            "episode_index": episode_index,
            "tasks": [self.task_text],
            "length": len(steps),
            "env": record.env,
            "actor_episode": record.episode,
            "return": float(end.get("return", sum(s["reward"] for s in steps))),
            "success": bool(end.get("success", steps[-1]["success"])),
            "label": int(end.get("label", steps[-1]["label"])),
            "interventions": int(sum(s["intervention"] for s in steps)),
            "takeovers": int(end.get("takeovers", 0)),
        }
        # Held in memory only once info.json commits them: a failed write leaves the writer as it was.
        episodes = [*self._episodes, episode_meta]
        episode_stats = [*self._stats, {"episode_index": episode_index, "stats": stats}]
        meta = self.root / "meta"
        _write_jsonl(meta / "tasks.jsonl", tasks)
        _write_jsonl(meta / "episodes_stats.jsonl", episode_stats)
        _write_jsonl(meta / "episodes.jsonl", episodes)
        total_episodes = len(episodes)
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.task,
            "total_episodes": total_episodes,
            "total_frames": start_index + len(steps),
            "total_tasks": len(tasks),
            "total_videos": total_episodes * len(self.cameras),
            "total_chunks": _chunk_of(total_episodes - 1, chunks_size) + 1,
            "chunks_size": chunks_size,
            "fps": _fps_value(self.fps),
            "splits": {"train": f"0:{total_episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.cameras else None,
            "features": features,
        }
        atomic_write(meta / "info.json", lambda f: f.write(json.dumps(info, indent=4).encode()))
        self._info, self._episodes, self._stats, self._tasks = info, episodes, episode_stats, tasks
        return episode_index


# --------------------------------------------------------------------- reading
def _committed(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """info.json and the committed episodes (index < total_episodes), in order."""
    info_path = Path(root) / "meta" / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{root} is not a session: no meta/info.json")
    info = json.loads(info_path.read_text())
    total = int(info["total_episodes"])
    episodes = {e["episode_index"]: e for e in _read_jsonl(Path(root) / "meta" / "episodes.jsonl")}
    missing = [i for i in range(total) if i not in episodes]
    if missing:
        raise ValueError(f"{root}: meta/episodes.jsonl lacks episode(s) {missing[:5]} of {total}")
    return info, [episodes[i] for i in range(total)]


def load_session_transitions(
    root: Path, on_episode: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Every step of every episode in ``root`` as transitions for ``striata.learner.replay``.

    Keys: ``obs`` and ``next_obs`` (dicts of float32 [M, d] by observation key), ``actions`` [M, A],
    ``rewards`` [M], ``terminated`` [M] and ``intervention`` [M]. ``on_episode(done, total)`` is called
    after each episode read (progress bars).
    """
    root = Path(root)
    info, episodes = _committed(root)
    features = info["features"]
    keys = [
        k[len("observation.") :]
        for k in features
        if k.startswith("observation.") and not k.startswith(IMAGE_PREFIX)
    ]
    parts: list[dict[str, Any]] = []
    for done, episode in enumerate(episodes, start=1):
        index = int(episode["episode_index"])
        path = root / info["data_path"].format(
            episode_chunk=_chunk_of(index, int(info["chunks_size"])), episode_index=index
        )
        table = pq.read_table(path)
        parts.append({
            "obs": {k: _column(table, f"observation.{k}") for k in keys},
            "next_obs": {k: _column(table, f"next.observation.{k}") for k in keys},
            "actions": _column(table, "action"),
            "rewards": _column(table, "next.reward"),
            "terminated": _column(table, "next.terminated"),
            "intervention": _column(table, "complementary_info.intervention"),
        })  # fmt: skip
        if on_episode is not None:
            on_episode(done, len(episodes))
    if not parts:
        action_dim = features["action"]["shape"][0] if "action" in features else 0
        empty = {k: np.zeros((0, *features[f"observation.{k}"]["shape"]), np.float32) for k in keys}
        return {"obs": empty, "next_obs": dict(empty), "actions": np.zeros((0, action_dim), np.float32),
                "rewards": np.zeros(0, np.float32), "terminated": np.zeros(0, bool),
                "intervention": np.zeros(0, bool)}  # fmt: skip
    return {
        "obs": {k: np.concatenate([p["obs"][k] for p in parts]).astype(np.float32) for k in keys},
        "next_obs": {k: np.concatenate([p["next_obs"][k] for p in parts]).astype(np.float32) for k in keys},
        "actions": np.concatenate([p["actions"] for p in parts]).astype(np.float32),
        "rewards": np.concatenate([p["rewards"] for p in parts]).astype(np.float32),
        "terminated": np.concatenate([p["terminated"] for p in parts]).astype(bool),
        "intervention": np.concatenate([p["intervention"] for p in parts]).astype(bool),
    }


def read_session_episodes(root: Path) -> list[dict[str, Any]]:
    """Per committed episode: its meta line (episode_index, length, env, actor_episode, return, success,
    label, interventions, takeovers, tasks), ``data`` (parquet path) and ``videos`` (camera -> mp4 path)."""
    root = Path(root)
    info, episodes = _committed(root)
    cameras = [k[len(IMAGE_PREFIX) :] for k, v in info["features"].items() if v["dtype"] == "video"]
    out = []
    for episode in episodes:
        index = int(episode["episode_index"])
        chunk = _chunk_of(index, int(info["chunks_size"]))
        videos = {
            camera: root
            / info["video_path"].format(
                episode_chunk=chunk, video_key=IMAGE_PREFIX + camera, episode_index=index
            )
            for camera in cameras
        }
        data = root / info["data_path"].format(episode_chunk=chunk, episode_index=index)
        out.append({**episode, "data": data, "videos": videos})
    return out
