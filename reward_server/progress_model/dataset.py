"""The reward-model data set: camera frames of panda_pick rollouts labelled with ground-truth progress.

Rollouts run the mixed policies of ``rollout_policies.py`` on the batched env and render the task camera
every ``frame_every`` steps; labels are the env's ``info["progress"]`` and ``info["success"]``. Episodes
go on after success (the data-set env does not terminate on it), so held cubes, drops and put-downs after
a lift are in the data. Every frame gives one row with the task text (or a paraphrase) and
``mismatched_per_frame`` rows with another task's text, labelled progress 0 and success 0.

On disk: ``<folder>/<split>/shard_XXXX.npz`` (compressed; frames, first frames, rows) and
``<folder>/manifest.json`` (texts, config hash, counts). A folder whose manifest matches the config is
reused as it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from envs.tasks.panda.config import PandaPickConfig
from envs.tasks.panda.env import CAMERAS
from envs.tasks.panda.pick import PandaPickEnv
from envs.tasks.panda.scene import WORKSPACE_CAMERA
from reward_server.progress_model.config import DatasetConfig
from reward_server.progress_model.rollout_policies import KINDS, MixedPickPolicy

SPLITS = ("train", "eval")
# Config camera names to the scene's cameras: the env's own, plus the one framed on the pick area.
SCENE_CAMERAS = {**CAMERAS, "workspace": WORKSPACE_CAMERA}
MATCHED, MISMATCHED = 0, 1


class DatasetError(ValueError):
    """A data-set folder that cannot be read as one."""


class _RolloutPickEnv(PandaPickEnv):
    """panda_pick whose episodes go on after success, so the data set sees what happens after a lift."""

    def _terminated(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)


@dataclass
class Split:
    """One split in memory. Row ``i`` pairs ``frames[frame[i]]`` with ``texts[text[i]]``."""

    frames: np.ndarray  # uint8 [F, H, W, 3]
    first_frames: np.ndarray  # uint8 [F, H, W, 3]: the episode's first frame, per frame
    frame: np.ndarray  # int64 [R]
    text: np.ndarray  # int64 [R]
    progress: np.ndarray  # float32 [R]
    success: np.ndarray  # float32 [R]
    kind: np.ndarray  # int64 [R]: index into KINDS (the policy that made the frame)
    pairing: np.ndarray  # int64 [R]: MATCHED or MISMATCHED text
    texts: list[str]

    def __len__(self) -> int:
        return len(self.frame)


def config_hash(cfg: DatasetConfig) -> str:
    payload = cfg.model_dump(mode="json", exclude={"folder"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def texts_of(cfg: DatasetConfig) -> list[str]:
    return [cfg.task_text, *cfg.paraphrases, *cfg.mismatched_texts]


def build_dataset(cfg: DatasetConfig, show_progress: bool = True) -> Path:
    """Roll out, render and label both splits under ``cfg.folder`` unless a matching one is there."""
    folder = Path(cfg.folder)
    manifest_path = folder / "manifest.json"
    digest = config_hash(cfg)
    if manifest_path.is_file() and json.loads(manifest_path.read_text()).get("config_hash") == digest:
        return folder
    rounds = [("train", cfg.seed + r) for r in range(cfg.train_rounds)]
    rounds += [("eval", cfg.eval_seed + r) for r in range(cfg.eval_rounds)]
    counts = {split: {"frames": 0, "rows": 0, "success_frames": 0} for split in SPLITS}
    steps = len(rounds) * cfg.episode_steps
    with tqdm(total=steps, desc="reward data set", unit="step", disable=not show_progress) as bar:
        for index, (split, seed) in enumerate(rounds):
            shard = _rollout_round(cfg, split, seed, on_step=bar.update)
            out = folder / split / f"shard_{index:04d}.npz"
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(out, **shard)
            counts[split]["frames"] += len(shard["frames"])
            counts[split]["rows"] += len(shard["frame"])
            counts[split]["success_frames"] += int(shard["success"][shard["pairing"] == MATCHED].sum())
    manifest = {"config_hash": digest, "texts": texts_of(cfg), "kinds": list(KINDS), "counts": counts}
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return folder


def _rollout_round(cfg: DatasetConfig, split: str, seed: int, on_step) -> dict[str, np.ndarray]:
    """One episode in every env; rows for the frames rendered every ``frame_every`` steps."""
    rng = np.random.default_rng(seed)
    mix = cfg.policies
    kinds = [kind for kind in KINDS for _ in range(getattr(mix, kind))]
    env_cfg = PandaPickConfig(episode_length_s=(cfg.episode_steps + 1) * 0.1, num_threads=1)
    env = _RolloutPickEnv(env_cfg, len(kinds), seed=seed)
    policy = MixedPickPolicy(env, kinds, cfg.noise, rng)
    camera = SCENE_CAMERAS[cfg.camera]

    def render() -> np.ndarray:
        # Without shadows unless asked for: with software OpenGL each shadow-casting light is a full pass.
        return env.render(camera, cfg.image_size, cfg.image_size, shadows=cfg.shadows)

    obs = env.reset()
    first = render()
    frames, firsts, progress, success, kind = [], [], [], [], []
    for t in range(1, cfg.episode_steps + 1):
        obs, _, _, _, info = env.step(policy(obs))
        on_step(1)
        if t % cfg.frame_every:
            continue
        frames.append(render())
        firsts.append(first)
        progress.append(info["progress"].copy())
        success.append(info["success"].astype(np.float32))
        kind.append(np.array([KINDS.index(k) for k in kinds]))
    env.close()
    return _rows(
        cfg,
        split,
        rng,
        np.concatenate(frames),
        np.concatenate(firsts),
        np.concatenate(progress).astype(np.float32),
        np.concatenate(success),
        np.concatenate(kind),
    )


def _rows(
    cfg: DatasetConfig,
    split: str,
    rng: np.random.Generator,
    frames: np.ndarray,
    firsts: np.ndarray,
    progress: np.ndarray,
    success: np.ndarray,
    kind: np.ndarray,
) -> dict[str, np.ndarray]:
    n = len(frames)
    n_task = 1 + len(cfg.paraphrases)
    # Held-out rows ask with the task text itself; training rows also with its paraphrases.
    matched_text = rng.integers(0, n_task, n) if split == "train" else np.zeros(n, dtype=np.int64)
    index = np.arange(n)
    frame = [index]
    text = [matched_text]
    labels_p = [progress]
    labels_s = [success]
    kinds = [kind]
    pairing = [np.full(n, MATCHED)]
    for _ in range(cfg.mismatched_per_frame):
        frame.append(index)
        text.append(n_task + rng.integers(0, len(cfg.mismatched_texts), n))
        labels_p.append(np.zeros(n, dtype=np.float32))
        labels_s.append(np.zeros(n, dtype=np.float32))
        kinds.append(kind)
        pairing.append(np.full(n, MISMATCHED))
    return {
        "frames": frames,
        "first_frames": firsts,
        "frame": np.concatenate(frame),
        "text": np.concatenate(text),
        "progress": np.concatenate(labels_p),
        "success": np.concatenate(labels_s),
        "kind": np.concatenate(kinds),
        "pairing": np.concatenate(pairing),
    }


def load_split(folder: Path, split: str) -> Split:
    """All shards of one split, concatenated (frame indices shifted to match)."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DatasetError(f"dataset: no manifest.json in {folder}")
    shards = sorted((folder / split).glob("shard_*.npz"))
    if not shards:
        raise DatasetError(f"dataset: no {split} shards in {folder}")
    parts: dict[str, list[np.ndarray]] = {}
    offset = 0
    for path in shards:
        with np.load(path) as shard:
            for key in shard.files:
                value = shard[key] + offset if key == "frame" else shard[key]
                parts.setdefault(key, []).append(value)
            offset += len(shard["frames"])
    merged = {key: np.concatenate(values) for key, values in parts.items()}
    return Split(texts=json.loads(manifest_path.read_text())["texts"], **merged)
