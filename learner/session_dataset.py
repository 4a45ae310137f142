"""Intervene sessions on disk: every watched episode as a LeRobotDataset, format v3.0 (current LeRobot) or
v2.1 (LeRobot before 0.4).

``SessionWriter`` takes the intervention port's ``step``, ``frame`` and ``episode_end`` messages
(actors/INTERVENTION.md) as the console receives them and saves each ended episode with LeRobot's files
(pyarrow + PyAV). Every save builds the next version of the session folder beside it and swaps it in with
one rename (``striata.common.files.replace_folder``): a reader, LeRobot's included, sees the episodes of
the last finished save and nothing of a save a crash cut short. ``load_session_transitions`` reads a
session of either format back as transitions for ``striata.learner.replay`` (``striata train --demos``),
``read_session_episodes`` lists its episodes, ``read_episode_rows`` / ``read_episode_frames`` read one.
The layout, the columns and the crash-safety rules are in actors/SESSIONS.md.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import functools
import io
import json
import math
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from striata.common.files import recover_folder, replace_folder

V30, V21 = "v3.0", "v2.1"
FORMATS = (V30, V21)
CHUNKS_SIZE = 1000  # files per chunk folder, as LeRobot's
DATA_FILE_MB = 100  # v3.0: a data or episodes-meta file grows to about this, then the next one starts
VIDEO_FILE_MB = 200  # v3.0: the same for a camera's video file
DATA_PATH = {
    V30: "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
    V21: "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
}
VIDEO_PATH = {
    V30: "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    V21: "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
}
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"  # v3.0
IMAGE_PREFIX = "observation.images."
DEFAULT_VIDEO_SIZE = (128, 128)  # (height, width) of a camera no frame has shown yet
MAX_WAITING_FRAMES = 64  # per env: frames kept for an episode whose first step has not come
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # LeRobot's stats: q01 .. q99
_MB = 1 << 20

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
# pandas metadata that makes ``pd.read_parquet(meta/tasks.parquet)`` index the tasks by their text, as
# LeRobot's ``load_tasks`` expects (striata itself does not need pandas).
_TASKS_PANDAS = {
    "index_columns": ["__index_level_0__"],
    "column_indexes": [],
    "columns": [
        {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
         "metadata": None},
        {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
         "metadata": None},
    ],
    "attributes": {},
    "creator": {"library": "striata"},
}  # fmt: skip


@dataclass
class _Episode:
    env: int
    episode: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    frames: dict[str, list[tuple[int, int, bytes]]] = field(default_factory=dict)  # camera -> (t, seq, jpeg)


@dataclass
class _Committed:
    """What a session holds: info.json, and per committed episode its metadata (LeRobot's and striata's,
    without stats) and its stats, in order; the task texts by index."""

    info: dict[str, Any]
    episodes: list[dict[str, Any]]
    stats: list[dict[str, Any]]
    tasks: list[str]

    @property
    def version(self) -> str:
        return str(self.info["codebase_version"])


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


def _plain(value: float) -> float | int:
    """A whole number as an int (info.json says ``"fps": 10``, as LeRobot writes it)."""
    return round(value) if abs(value - round(value)) < 1e-6 else float(value)


def _next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    """LeRobot's ``update_chunk_file_indices``: the file after (chunk, file)."""
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


def _stretches(flags: Sequence[bool]) -> int:
    """Runs of consecutive True: the takeovers among an episode's intervention flags."""
    return sum(1 for i, flag in enumerate(flags) if flag and (i == 0 or not flags[i - 1]))


def _quantile_keys() -> list[str]:
    return [f"q{round(q * 100):02d}" for q in QUANTILES]


def _stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's per-episode stats of one feature over its rows (min, max, mean, std, count, q01..q99), as
    lists; rows holding NaN (a progress the reward model did not give) are left out, and ``count`` says
    how many were used."""
    data = values.astype(np.float64)
    keep = data.ndim == 1  # scalars: shape [1] like LeRobot's keepdims
    rows = np.isfinite(data) if keep else np.isfinite(data).all(axis=1)
    data = data[rows]
    if not len(data):
        zeros = np.zeros(1 if keep else values.shape[1]).tolist()
        return {"min": zeros, "max": zeros, "mean": zeros, "std": zeros, "count": [0]} | {
            key: zeros for key in _quantile_keys()
        }
    quantiles = np.quantile(data, QUANTILES, axis=0)
    out = {
        "min": np.atleast_1d(np.min(data, axis=0)).tolist(),
        "max": np.atleast_1d(np.max(data, axis=0)).tolist(),
        "mean": np.atleast_1d(np.mean(data, axis=0)).tolist(),
        "std": np.atleast_1d(np.std(data, axis=0)).tolist(),
        "count": [len(data)],
    }
    for key, value in zip(_quantile_keys(), quantiles, strict=True):
        out[key] = np.atleast_1d(value).tolist()
    return out


def _image_stats(images: np.ndarray) -> dict[str, list]:
    """Per-channel stats of [L, H, W, 3] uint8 frames in [0, 1], shaped [3, 1, 1] as LeRobot's."""
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0

    def channel(values: np.ndarray) -> list:
        return values.reshape(3, 1, 1).tolist()

    out = {
        "min": channel(pixels.min(axis=0)),
        "max": channel(pixels.max(axis=0)),
        "mean": channel(pixels.mean(axis=0)),
        "std": channel(pixels.std(axis=0)),
        "count": [len(images)],
    }
    for key, value in zip(_quantile_keys(), np.quantile(pixels, QUANTILES, axis=0), strict=True):
        out[key] = channel(value)
    return out


def _aggregate_stats(episodes: Sequence[Mapping[str, Mapping[str, list]]]) -> dict[str, dict[str, list]]:
    """LeRobot's ``aggregate_stats`` (meta/stats.json): count-weighted means, pooled variance, min of mins,
    max of maxes, count-weighted quantiles; episodes that counted no row of a feature are left out."""
    out: dict[str, dict[str, list]] = {}
    for name in episodes[0] if episodes else ():
        parts = [e[name] for e in episodes if name in e and e[name]["count"][0] > 0]
        if not parts:
            out[name] = dict(episodes[-1][name])
            continue
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        mean_shape = np.asarray(parts[0]["mean"]).shape
        weights = counts.reshape(-1, *([1] * len(mean_shape)))
        total = counts.sum()

        def stacked(key: str, parts: list = parts) -> np.ndarray:
            return np.stack([np.asarray(p[key], dtype=np.float64) for p in parts])

        mean = (stacked("mean") * weights).sum(axis=0) / total
        variance = ((stacked("std") ** 2 + (stacked("mean") - mean) ** 2) * weights).sum(axis=0) / total
        out[name] = {
            "min": stacked("min").min(axis=0).tolist(),
            "max": stacked("max").max(axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(variance).tolist(),
            "count": [int(total)],
        }
        for key in _quantile_keys():
            if all(key in p for p in parts):
                out[name][key] = ((stacked(key) * weights).sum(axis=0) / total).tolist()
    return out


def _column(table: pa.Table, name: str) -> np.ndarray:
    """A parquet column as numpy: [L] for scalars, [L, d] for fixed-size lists."""
    column = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(table), column.type.list_size)
    return column.to_numpy(zero_copy_only=False)


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _put(data: bytes, f: BinaryIO) -> None:
    f.write(data)


def _write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """A new file of the next version (``replace_folder`` syncs the folder before publishing it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        write(f)


def _link_rest(root: Path, staged: Path) -> None:
    """Carry every file of the current version the save did not write into the next one. Hard links: a
    file is never changed in place (a save writes a new one), so both versions can share it."""
    if not root.is_dir():
        return
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith("."):  # temporaries, an old writer's meta/.lock
                continue
            source = Path(folder) / name
            target = staged / source.relative_to(root)
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:  # a filesystem without hard links
                shutil.copy2(source, target)


def encode_video(images: np.ndarray, fps: float) -> bytes:
    """[L, H, W, 3] uint8 frames as an H.264 yuv420p mp4 (frame i at i / fps). Every other frame is a
    keyframe (cheap seeking, as LeRobot's g=2) and there are no B-frames, so that decode order is
    presentation order and episodes can be appended to one file by remuxing (``_append_video``)."""
    rate = Fraction(fps).limit_denominator(1000)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = images.shape[2], images.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "g": "2", "bf": "0", "preset": "veryfast"}
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def _append_video(previous: Path | None, segment: bytes, start_s: float, f: BinaryIO) -> None:
    """Write to ``f`` the packets of ``previous`` (a file of earlier episodes) unchanged, then those of
    ``segment`` (one episode's mp4) shifted to start at ``start_s``: a remux, no re-encoding, so the
    earlier episodes' frames and times stay exactly as they were."""
    sources: list[tuple[Any, float]] = [(io.BytesIO(segment), start_s)]
    if previous is not None:
        sources.insert(0, (str(previous), 0.0))
    with av.open(f, mode="w", format="mp4") as output:
        stream = None
        for source, shift_s in sources:
            with av.open(source) as container:
                template = container.streams.video[0]
                if stream is None:
                    stream = output.add_stream_from_template(template, opaque=True)
                    stream.time_base = template.time_base
                shift = round(shift_s / template.time_base)
                for packet in container.demux(template):
                    if packet.dts is None:  # the demuxer's flush packet
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = stream
                    output.mux(packet)


class SessionWriter:
    """Episodes of an intervene session on disk, as a LeRobotDataset of ``version`` v3.0 or v2.1.

    Messages are keyed by (env, episode); an episode is saved when its ``episode_end`` comes, whole as
    far as its steps reached the writer: its metadata says from which step (``first_t``) and how many
    of its steps the session lacks (``missed_steps``, ``missed_interventions``). One whose end will not
    come (``close``, or the env's next episode starting) is saved if a person acted in it. Opening a
    root that already holds a session appends after its episodes (same format, fps and cameras) after
    clearing what a crash left beside it. ``data_file_mb`` / ``video_file_mb`` (v3.0, a new root only):
    the size a data or video file grows to before the next one starts. Thread-safe; ``end_episode`` and
    ``close`` encode videos, so callers on an event loop run them in a thread.
    """

    def __init__(
        self,
        root: Path,
        *,
        task: str,
        task_text: str,
        fps: float,
        cameras: Sequence[str],
        version: str = V30,
        data_file_mb: float = DATA_FILE_MB,
        video_file_mb: float = VIDEO_FILE_MB,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"SessionWriter: fps must be > 0, got {fps}")
        if version not in FORMATS:
            raise ValueError(f"SessionWriter: version must be one of {list(FORMATS)}, got {version!r}")
        self.root = Path(root)
        self.task = task
        self.task_text = task_text or task
        self.fps = float(fps)
        self.cameras = list(cameras)
        self.version = version
        self._file_mb = (float(data_file_mb), float(video_file_mb))
        self._lock = threading.Lock()
        self._open: dict[tuple[int, int], _Episode] = {}
        self._latest: dict[int, int] = {}  # env -> its newest open episode
        # env -> frames whose episode has no step yet: (episode or None, camera, (t, seq, jpeg))
        self._orphans: dict[int, list[tuple[int | None, str, tuple[int, int, bytes]]]] = {}
        self._seq = 0
        self._closed = False
        # The lock lies beside the root (the folder a symlink points to): the root itself is swapped for
        # its next version at every save.
        real = self.root.resolve()
        real.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = (real.parent / f".{real.name}.lock").open("w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise ValueError(f"session root {self.root} is open in another SessionWriter") from None
        try:
            recover_folder(self.root)
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
        """An ``episode_end`` message: save that episode; its episode_index (-1: no step of it came)."""
        _field(episode_end, _END_FIELDS, "episode_end")
        env, episode = int(episode_end["env"]), int(episode_end["episode"])
        with self._lock:
            record = self._open.pop((env, episode), None)
            if self._latest.get(env) == episode:
                del self._latest[env]
            if record is None or not record.steps:
                return -1
            return self._save(record, episode_end)

    def close(self) -> None:
        """Save the episodes that did not end and that a person acted in (the rest are dropped), and
        release the root; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                for record in self._open.values():
                    self._unended(record)
            finally:
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
        # An older episode of the same env that never got its end will not get one.
        for key in [k for k in self._open if k[0] == env and k[1] != episode]:
            self._unended(self._open.pop(key))
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

    def _unended(self, record: _Episode) -> None:
        """An episode whose ``episode_end`` will not come (the console stopped watching it, or its end was
        lost): saved as far as it came if a person acted in it, for those steps are their demonstration
        (``ended`` false in its metadata); else dropped."""
        if any(step["intervention"] for step in record.steps):
            self._save(record, None)

    def _load_existing(self) -> None:
        self._state: _Committed | None = None
        self._video_sizes: dict[str, tuple[int, int]] = {}
        self._shapes: dict[str, list[int]] | None = None  # vector columns -> shape
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            return
        state = _read_committed(self.root)
        info = state.info
        if state.version != self.version:
            raise ValueError(
                f"{info_path}: a session in format {state.version}, this writer writes {self.version}; "
                "record in the session's format or in another folder"
            )
        if abs(float(info["fps"]) - self.fps) > 1e-6:
            raise ValueError(f"{info_path}: fps {info['fps']} on disk, this writer records {self.fps}")
        on_disk = sorted(k[len(IMAGE_PREFIX) :] for k, v in info["features"].items() if v["dtype"] == "video")
        if on_disk != sorted(self.cameras):
            raise ValueError(
                f"{info_path}: cameras {on_disk} on disk, this writer records {sorted(self.cameras)}"
            )
        self._state = state
        self._shapes = {
            name: feature["shape"]
            for name, feature in info["features"].items()
            if name == "action"
            or (name.startswith(("observation.", "next.observation.")) and feature["dtype"] != "video")
        }
        for camera in self.cameras:
            shape = info["features"][IMAGE_PREFIX + camera]["shape"]
            self._video_sizes[camera] = (int(shape[0]), int(shape[1]))
        if self.version == V21:
            self._remove_uncommitted_v21(len(state.episodes))

    def _remove_uncommitted_v21(self, total: int) -> None:
        """Delete what a crash of an earlier striata (which wrote in place) left in a v2.1 root: temporary
        files and files of episodes past info.json's total_episodes. None of it is committed."""
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

    # ----------------------------------------------------------------- saving
    def _save(self, record: _Episode, end: Mapping[str, Any] | None) -> int:
        """Build the session's next version beside it with this episode added, then swap it in. A failure
        (or a crash) before the swap leaves the session and this writer as they were. ``end``: the
        episode's ``episode_end``, None for one that did not end (``_unended``)."""
        state = self._state
        episodes = state.episodes if state is not None else []
        tasks = list(state.tasks) if state is not None else []
        if self.task_text not in tasks:
            tasks.append(self.task_text)
        episode_index = len(episodes)
        start_index = int(state.info["total_frames"]) if state is not None else 0
        table = self._table(record, episode_index, start_index, tasks.index(self.task_text))
        # Cameras with frames first: they fix the sizes a camera without any borrows (SESSIONS.md).
        order = sorted(self.cameras, key=lambda camera: camera not in record.frames)
        videos = {camera: self._frames(record, camera) for camera in order}
        stats = {name: _stats(_column(table, name)) for name in table.column_names}
        for camera, images in videos.items():
            stats[IMAGE_PREFIX + camera] = _image_stats(images)
        segments = {camera: encode_video(images, self.fps) for camera, images in videos.items()}
        steps = record.steps
        interventions = int(sum(s["intervention"] for s in steps))
        ended = end is not None
        end = end or {}
        meta = {
            "episode_index": episode_index,
            "tasks": [self.task_text],
            "length": len(steps),
            "env": record.env,
            "actor_episode": record.episode,
            "return": float(end.get("return", sum(s["reward"] for s in steps))),
            "success": bool(end.get("success", steps[-1]["success"])),
            "label": int(end.get("label", steps[-1]["label"])),
            "interventions": interventions,
            "takeovers": int(end.get("takeovers", _stretches([s["intervention"] for s in steps]))),
            # What of the episode the session lacks: the steps before the console watched (first_t), any
            # a client too slow to read lost (the actor's own counts say how many there were), and for an
            # episode that did not end, those after its last row.
            "ended": ended,
            "first_t": steps[0]["t"],
            "missed_steps": max(int(end.get("length", steps[-1]["t"] + 1)) - len(steps), 0),
            "missed_interventions": max(int(end.get("interventions", interventions)) - interventions, 0),
        }
        features = self._features(table)
        with replace_folder(self.root) as staged:
            if self.version == V30:
                info, meta = self._stage_v30(staged, table, segments, meta, stats, tasks, features)
            else:
                info = self._stage_v21(staged, table, segments, meta, stats, tasks, features)
            _link_rest(self.root, staged)
        # Adopted only now that the new version is the session: a failed save leaves the writer as it was.
        self._state = _Committed(info, [*episodes, meta], [*(state.stats if state else []), stats], tasks)
        return episode_index

    def _info(self, total_episodes: int, total_frames: int, tasks: list[str]) -> dict[str, Any]:
        """info.json's keys common to both formats."""
        return {
            "codebase_version": self.version,
            "robot_type": self.task,
            "total_episodes": total_episodes,
            "total_frames": total_frames,
            "total_tasks": len(tasks),
        }

    def _stage_v21(
        self,
        staged: Path,
        table: pa.Table,
        segments: dict[str, bytes],
        meta: dict[str, Any],
        stats: dict[str, Any],
        tasks: list[str],
        features: dict[str, Any],
    ) -> dict[str, Any]:
        """v2.1: one parquet file and one mp4 per camera for the episode; the meta files rewritten."""
        state = self._state
        index = meta["episode_index"]
        chunks_size = int(state.info["chunks_size"]) if state is not None else CHUNKS_SIZE
        chunk = index // chunks_size
        for camera, segment in segments.items():
            path = VIDEO_PATH[V21].format(
                episode_chunk=chunk, video_key=IMAGE_PREFIX + camera, episode_index=index
            )
            _write(staged / path, functools.partial(_put, segment))
        path = DATA_PATH[V21].format(episode_chunk=chunk, episode_index=index)
        _write(staged / path, functools.partial(pq.write_table, table))
        episodes = [*(state.episodes if state else []), meta]
        all_stats = [*(state.stats if state else []), stats]
        lines = [{"task_index": i, "task": task} for i, task in enumerate(tasks)]
        stat_lines = [{"episode_index": i, "stats": s} for i, s in enumerate(all_stats)]
        for name, rows in (("tasks", lines), ("episodes_stats", stat_lines), ("episodes", episodes)):
            _write(staged / "meta" / f"{name}.jsonl", functools.partial(_put, _jsonl(rows)))
        total = len(episodes)
        info = {
            **self._info(total, (state.info["total_frames"] if state else 0) + len(table), tasks),
            "total_videos": total * len(self.cameras),
            "total_chunks": (total - 1) // chunks_size + 1,
            "chunks_size": chunks_size,
            "fps": _plain(self.fps),
            "splits": {"train": f"0:{total}"},
            "data_path": DATA_PATH[V21],
            "video_path": VIDEO_PATH[V21] if self.cameras else None,
            "features": features,
        }
        _write(staged / "meta" / "info.json", functools.partial(_put, json.dumps(info, indent=4).encode()))
        return info

    def _stage_v30(
        self,
        staged: Path,
        table: pa.Table,
        segments: dict[str, bytes],
        meta: dict[str, Any],
        stats: dict[str, Any],
        tasks: list[str],
        features: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """v3.0: the episode's rows appended to the current data file, its frames to each camera's current
        video file, its metadata row to the current episodes file (each written as a new file: the current
        one with the episode added, or the next file once the current one is large enough), and the other
        meta files rewritten. Returns info.json and the episode's metadata with its locations."""
        state = self._state
        info_in = state.info if state is not None else {}
        last = state.episodes[-1] if state is not None and state.episodes else None
        chunks_size = int(info_in.get("chunks_size", CHUNKS_SIZE))
        data_mb = float(info_in.get("data_files_size_in_mb", self._file_mb[0]))
        video_mb = float(info_in.get("video_files_size_in_mb", self._file_mb[1]))

        def slot(
            key: str, template: str, adding: int, cap_mb: float, **names: str
        ) -> tuple[int, int, Path | None]:
            """(chunk, file) of the episode's part, and the current file it goes after (None: a new one)."""
            if last is None:
                return 0, 0, None
            chunk, file = int(last[f"{key}/chunk_index"]), int(last[f"{key}/file_index"])
            current = self.root / template.format(chunk_index=chunk, file_index=file, **names)
            if current.stat().st_size + adding >= cap_mb * _MB:
                return (*_next_file(chunk, file, chunks_size), None)
            return chunk, file, current

        start = int(last["dataset_to_index"]) if last is not None else 0
        chunk, file, current = slot("data", DATA_PATH[V30], table.nbytes, data_mb)
        rows = table if current is None else pa.concat_tables([pq.read_table(current), table])
        path = DATA_PATH[V30].format(chunk_index=chunk, file_index=file)
        _write(staged / path, functools.partial(pq.write_table, rows))
        located: dict[str, Any] = {
            "episode_index": meta["episode_index"],
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": start,
            "dataset_to_index": start + len(table),
        }
        for camera, segment in segments.items():
            video_key = IMAGE_PREFIX + camera
            key = f"videos/{video_key}"
            chunk, file, current = slot(key, VIDEO_PATH[V30], len(segment), video_mb, video_key=video_key)
            begin = float(last[f"{key}/to_timestamp"]) if current is not None else 0.0
            path = VIDEO_PATH[V30].format(video_key=video_key, chunk_index=chunk, file_index=file)
            _write(staged / path, functools.partial(_append_video, current, segment, begin))
            located |= {
                f"{key}/chunk_index": chunk,
                f"{key}/file_index": file,
                f"{key}/from_timestamp": begin,
                f"{key}/to_timestamp": begin + len(table) / self.fps,
            }
        chunk, file, _ = slot("meta/episodes", EPISODES_PATH, 0, data_mb)
        meta = {**located, **meta, "meta/episodes/chunk_index": chunk, "meta/episodes/file_index": file}
        episodes = [*(state.episodes if state else []), meta]
        all_stats = [*(state.stats if state else []), stats]
        # The episodes file is rebuilt from memory: the rows of the episodes it holds, this one's last.
        rows_meta = [
            _episode_row(e, s)
            for e, s in zip(episodes, all_stats, strict=True)
            if (e["meta/episodes/chunk_index"], e["meta/episodes/file_index"]) == (chunk, file)
        ]
        path = EPISODES_PATH.format(chunk_index=chunk, file_index=file)
        _write(staged / path, functools.partial(pq.write_table, pa.Table.from_pylist(rows_meta)))
        tasks_table = pa.table(
            {"task_index": pa.array(range(len(tasks)), pa.int64()), "__index_level_0__": pa.array(tasks)}
        ).replace_schema_metadata({"pandas": json.dumps(_TASKS_PANDAS)})
        _write(staged / "meta" / "tasks.parquet", functools.partial(pq.write_table, tasks_table))
        aggregated = json.dumps(_aggregate_stats(all_stats), indent=4).encode()
        _write(staged / "meta" / "stats.json", functools.partial(_put, aggregated))
        total = len(episodes)
        info = {
            **self._info(total, int(meta["dataset_to_index"]), tasks),
            "chunks_size": chunks_size,
            "data_files_size_in_mb": _plain(data_mb),
            "video_files_size_in_mb": _plain(video_mb),
            "fps": _plain(self.fps),
            "splits": {"train": f"0:{total}"},
            "data_path": DATA_PATH[V30],
            "video_path": VIDEO_PATH[V30] if self.cameras else None,
            "features": features,
        }
        _write(staged / "meta" / "info.json", functools.partial(_put, json.dumps(info, indent=4).encode()))
        return info, meta


def _episode_row(meta: Mapping[str, Any], stats: Mapping[str, Mapping[str, list]]) -> dict[str, Any]:
    """One row of a v3.0 episodes file: the metadata, then the stats flattened as ``stats/<feature>/<stat>``
    (LeRobot's ``flatten_dict``), then the row's own location last, as LeRobot orders them."""
    row = {k: v for k, v in meta.items() if not k.startswith("meta/episodes/")}
    for name, values in stats.items():
        for key, value in values.items():
            row[f"stats/{name}/{key}"] = value
    row["meta/episodes/chunk_index"] = meta["meta/episodes/chunk_index"]
    row["meta/episodes/file_index"] = meta["meta/episodes/file_index"]
    return row


# --------------------------------------------------------------------- reading
def _read_committed(root: Path) -> _Committed:
    """The episodes of a session (``total_episodes`` of info.json), with their stats and the task texts."""
    meta = Path(root) / "meta"
    info_path = meta / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{root} is not a session: no meta/info.json")
    info = json.loads(info_path.read_text())
    version, total = info.get("codebase_version"), int(info["total_episodes"])
    by_index: dict[int, dict[str, Any]] = {}
    stats: dict[int, dict[str, Any]] = {}
    if version == V21:
        by_index = {int(e["episode_index"]): e for e in _read_jsonl(meta / "episodes.jsonl")}
        stats = {int(s["episode_index"]): s["stats"] for s in _read_jsonl(meta / "episodes_stats.jsonl")}
        listed = sorted(_read_jsonl(meta / "tasks.jsonl"), key=lambda t: t["task_index"])
        tasks = [str(t["task"]) for t in listed]
    elif version == V30:
        for path in sorted((meta / "episodes").glob("*/*.parquet")):  # LeRobot's order of the files
            for row in pq.read_table(path).to_pylist():
                index = int(row["episode_index"])
                by_index[index] = {k: v for k, v in row.items() if not k.startswith("stats/")}
                nested: dict[str, dict[str, Any]] = {}
                for key, value in row.items():
                    if key.startswith("stats/"):
                        name, stat = key[len("stats/") :].rsplit("/", 1)
                        nested.setdefault(name, {})[stat] = value
                stats[index] = nested
        listed = pq.read_table(meta / "tasks.parquet").sort_by("task_index")
        tasks = [str(t) for t in listed.column("__index_level_0__").to_pylist()]
    else:
        raise ValueError(f"{info_path}: codebase_version {version!r}; striata reads {list(FORMATS)}")
    missing = [i for i in range(total) if i not in by_index]
    if missing:
        raise ValueError(f"{root}: the episodes metadata lacks episode(s) {missing[:5]} of {total}")
    return _Committed(
        info, [by_index[i] for i in range(total)], [stats.get(i, {}) for i in range(total)], tasks
    )


def _located(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """info.json, and the committed episodes with where each lies (``read_session_episodes``)."""
    state = _read_committed(root)
    info = state.info
    cameras = [k[len(IMAGE_PREFIX) :] for k, v in info["features"].items() if v["dtype"] == "video"]
    fps = float(info["fps"])
    out = []
    if state.version == V21:
        chunks_size = int(info["chunks_size"])
        for episode in state.episodes:
            index, length = int(episode["episode_index"]), int(episode["length"])
            names = {"episode_chunk": index // chunks_size, "episode_index": index}
            out.append({
                **episode,
                "data": root / info["data_path"].format(**names),
                "rows": (0, length),
                "videos": {c: root / info["video_path"].format(video_key=IMAGE_PREFIX + c, **names)
                           for c in cameras},
                "video_span": {c: (0.0, length / fps) for c in cameras},
            })  # fmt: skip
        return info, out
    # v3.0: an episode's rows are a slice of its data file, which starts at its first episode's index.
    file_start: dict[tuple[int, int], int] = {}
    for episode in state.episodes:
        location = (int(episode["data/chunk_index"]), int(episode["data/file_index"]))
        file_start.setdefault(location, int(episode["dataset_from_index"]))
    for episode in state.episodes:
        chunk, file = int(episode["data/chunk_index"]), int(episode["data/file_index"])
        start = file_start[(chunk, file)]
        videos, spans = {}, {}
        for camera in cameras:
            key = f"videos/{IMAGE_PREFIX}{camera}"
            videos[camera] = root / info["video_path"].format(
                video_key=IMAGE_PREFIX + camera,
                chunk_index=int(episode[f"{key}/chunk_index"]),
                file_index=int(episode[f"{key}/file_index"]),
            )
            spans[camera] = (float(episode[f"{key}/from_timestamp"]), float(episode[f"{key}/to_timestamp"]))
        out.append({
            **episode,
            "data": root / info["data_path"].format(chunk_index=chunk, file_index=file),
            "rows": (int(episode["dataset_from_index"]) - start, int(episode["dataset_to_index"]) - start),
            "videos": videos,
            "video_span": spans,
        })  # fmt: skip
    return info, out


def read_session_episodes(root: Path) -> list[dict[str, Any]]:
    """Per committed episode of a v3.0 or v2.1 session: its metadata (episode_index, tasks, length and
    striata's env, actor_episode, return, success, label, interventions, takeovers, first_t, missed_steps,
    missed_interventions; v3.0 also LeRobot's locations), and where it lies: ``data`` (the parquet file)
    and ``rows`` (its rows there, start and stop), ``videos`` (camera -> mp4 file) and ``video_span``
    (camera -> its first and end time in that file, seconds). ``read_episode_rows`` and
    ``read_episode_frames`` read them."""
    return _located(Path(root))[1]


def read_episode_rows(episode: Mapping[str, Any]) -> pa.Table:
    """The parquet rows of one episode of ``read_session_episodes``."""
    start, stop = episode["rows"]
    return pq.read_table(episode["data"]).slice(start, stop - start)


def read_episode_frames(episode: Mapping[str, Any], camera: str) -> np.ndarray:
    """[L, H, W, 3] uint8: the video frames of one episode of ``read_session_episodes``, one per row."""
    start_s, stop_s = episode["video_span"][camera]
    half_frame = 0.5 * (stop_s - start_s) / max(int(episode["length"]), 1)
    frames = []
    with av.open(str(episode["videos"][camera])) as container:
        stream = container.streams.video[0]
        container.seek(int(start_s / stream.time_base), stream=stream)  # the keyframe at or before it
        for frame in container.decode(stream):
            if frame.time < start_s - half_frame:
                continue
            if frame.time >= stop_s - half_frame:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


def load_session_transitions(
    root: Path, on_episode: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Every step of every episode in ``root`` (v3.0 or v2.1) as transitions for ``striata.learner.replay``.

    Keys: ``obs`` and ``next_obs`` (dicts of float32 [M, d] by observation key), ``actions`` [M, A],
    ``rewards`` [M], ``terminated`` [M] and ``intervention`` [M]. ``on_episode(done, total)`` is called
    after each episode read (progress bars).
    """
    info, episodes = _located(Path(root))
    features = info["features"]
    keys = [
        k[len("observation.") :]
        for k in features
        if k.startswith("observation.") and not k.startswith(IMAGE_PREFIX)
    ]
    files: dict[Path, pa.Table] = {}  # a v3.0 data file holds many episodes: read it once
    parts: list[dict[str, Any]] = []
    for done, episode in enumerate(episodes, start=1):
        if episode["data"] not in files:
            files[episode["data"]] = pq.read_table(episode["data"])
        start, stop = episode["rows"]
        table = files[episode["data"]].slice(start, stop - start)
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
