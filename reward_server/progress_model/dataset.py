"""The reward-model data set: camera frames of a task's rollouts labelled with ground-truth progress.

The rollouts are the task's own: its progress scene (``striata.envs.progress_scene.ProgressScene``,
from the task registry by ``dataset.task``; panda_pick's is a scripted pick and its failing variants)
gives the env, whose episodes go on after success, the cameras and one behaviour per env
(``dataset.policies``; ``learned`` envs run an ONNX policy, ``rollout_policies.py``). A round renders
the task camera (or cameras: their views side by side, [H, views * W, 3]) every ``frame_every`` steps,
and with ``boundary_frames`` also the envs at the success boundary in between (a training actor labels
an episode's first success, just where it is crossed); labels are the env's ``info["progress"]`` and
``info["success"]``. Every frame gives one row with the task text (or a paraphrase) and
``mismatched_per_frame`` rows with another task's text, labelled progress 0 and success 0.

On disk: one ``<folder>/<split>/seed_XXXXXXXX.npz`` per rollout round (compressed; frames, first frames,
episode ids, rows) and ``<folder>/manifest.json`` (texts, hashes, the shards of each split, counts). A
round is a pure function of its seed and the rendering settings, so its shard is reused whenever those
settings (``render_hash``) are unchanged: more ``train_rounds`` renders only the new rounds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from striata.common.files import atomic_write
from striata.envs.progress_scene import ProgressScene
from striata.envs.registry import task_entry
from striata.reward_server.progress_model.config import DatasetConfig
from striata.reward_server.progress_model.rollout_policies import OnnxPolicy

SPLITS = ("train", "eval")
MATCHED, MISMATCHED = 0, 1
# Bumped when the shard contents change, so shards of an older layout are rendered again.
SHARD_FORMAT = 3


class DatasetError(ValueError):
    """A data-set folder that cannot be read as one."""


@dataclass
class Split:
    """One split in memory. Row ``i`` pairs ``frames[frame[i]]`` with ``texts[text[i]]``."""

    frames: np.ndarray  # uint8 [F, H, views * W, 3]
    first_frames: np.ndarray  # uint8 [F, H, views * W, 3]: the episode's first frame, per frame
    episode: np.ndarray  # int64 [F]: the rollout episode of each frame (unique within the split)
    frame: np.ndarray  # int64 [R]
    text: np.ndarray  # int64 [R]
    progress: np.ndarray  # float32 [R]
    success: np.ndarray  # float32 [R]
    kind: np.ndarray  # int64 [R]: index into the scene's kinds (the policy that made the frame)
    pairing: np.ndarray  # int64 [R]: MATCHED or MISMATCHED text
    texts: list[str]

    def __len__(self) -> int:
        return len(self.frame)


def config_hash(cfg: DatasetConfig) -> str:
    payload = cfg.model_dump(mode="json", exclude={"folder"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def render_hash(cfg: DatasetConfig) -> str:
    """Hash of what one round's shard depends on: everything but the folder and the number of rounds."""
    payload = cfg.model_dump(mode="json", exclude={"folder", "train_rounds", "eval_rounds"})
    payload["shard_format"] = SHARD_FORMAT
    if cfg.policies.learned:
        # The policies' contents, not their paths: a re-exported file is another policy.
        payload["learned_policies"] = [_file_digest(path) for path in cfg.learned_policies]
    else:
        # Without learned envs the shards do not depend on these settings: keep the old hash.
        del payload["policies"]["learned"], payload["learned_policies"]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"dataset.learned_policies: {path} does not exist (see striata export)")
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def texts_of(cfg: DatasetConfig) -> list[str]:
    return [cfg.task_text, *cfg.paraphrases, *cfg.mismatched_texts]


def build_dataset(cfg: DatasetConfig, show_progress: bool = True) -> Path:
    """Roll out, render and label both splits under ``cfg.folder``, reusing the shards already there."""
    folder = Path(cfg.folder)
    manifest_path = folder / "manifest.json"
    digest, render_digest = config_hash(cfg), render_hash(cfg)
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    rounds = {
        "train": [cfg.seed + r for r in range(cfg.train_rounds)],
        "eval": [cfg.eval_seed + r for r in range(cfg.eval_rounds)],
    }
    shards = {split: [f"{split}/seed_{seed:08d}.npz" for seed in seeds] for split, seeds in rounds.items()}
    every = shards["train"] + shards["eval"]
    if old.get("config_hash") == digest and all((folder / name).is_file() for name in every):
        return folder
    if old.get("render_hash") != render_digest:
        # Shards rendered with other settings (or by an older layout) cannot be reused.
        for stale in folder.glob("*/*.npz"):
            stale.unlink()
    scene = task_entry(cfg.task).progress_scene()
    folder.mkdir(parents=True, exist_ok=True)
    # Written before rendering, so the shards of an interrupted build are reused by the next one.
    manifest_path.write_text(json.dumps({"render_hash": render_digest}))
    todo = [
        (split, seed, folder / name)
        for split in SPLITS
        for seed, name in zip(rounds[split], shards[split], strict=True)
        if not (folder / name).is_file()
    ]
    with tqdm(
        total=len(todo) * cfg.episode_steps, desc="reward data set", unit="step", disable=not show_progress
    ) as bar:
        for split, seed, out in todo:
            shard = _rollout_round(cfg, scene, split, seed, on_step=bar.update)
            atomic_write(out, lambda f, shard=shard: np.savez_compressed(f, **shard))
    counts = {split: {"frames": 0, "rows": 0, "success_frames": 0} for split in SPLITS}
    for split in SPLITS:
        for name in shards[split]:
            with np.load(folder / name) as shard:
                matched = shard["pairing"] == MATCHED
                counts[split]["frames"] += len(shard["frames"])
                counts[split]["rows"] += len(shard["frame"])
                counts[split]["success_frames"] += int(shard["success"][matched].sum())
    manifest = {
        "config_hash": digest,
        "render_hash": render_digest,
        "texts": texts_of(cfg),
        "kinds": list(scene.kinds),
        "shards": shards,
        "counts": counts,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return folder


def _rollout_round(
    cfg: DatasetConfig, scene: ProgressScene[Any], split: str, seed: int, on_step
) -> dict[str, np.ndarray]:
    """One episode in every env; rows for the frames rendered every ``frame_every`` steps, and with
    ``boundary_frames`` for those of the envs at the success boundary in between."""
    rng = np.random.default_rng(seed)
    mix = cfg.policies
    kinds = [kind for kind in scene.kinds for _ in range(getattr(mix, kind))]
    env = scene.make_env(cfg.episode_steps, len(kinds), seed)
    learned = OnnxPolicy(cfg.learned_policies[seed % len(cfg.learned_policies)]) if mix.learned else None
    policy = scene.make_policy(env, kinds, cfg.noise, rng, learned)
    cameras = tuple(scene.cameras[view] for view in cfg.views)

    def render(ids: np.ndarray | None = None) -> np.ndarray:
        # Without shadows unless asked for: with software OpenGL each shadow-casting light is a full pass.
        return env.render(cameras, cfg.image_size, cfg.image_size, ids=ids, shadows=cfg.shadows)

    obs = env.reset()
    first = render()
    kind_ids = np.array([scene.kinds.index(k) for k in kinds])
    was_success = np.zeros(len(kinds), dtype=bool)
    frames, firsts, episode, progress, success, kind = [], [], [], [], [], []
    for t in range(1, cfg.episode_steps + 1):
        obs, _, _, _, info = env.step(policy(obs))
        on_step(1)
        now_success = info["success"].astype(bool)
        if t % cfg.frame_every == 0:
            ids = np.arange(len(kinds))
        elif cfg.boundary_frames:
            ids = np.flatnonzero(scene.near_success(env) | (now_success != was_success))
        else:
            ids = np.arange(0)
        was_success = now_success
        if not ids.size:
            continue
        frames.append(render(ids))
        firsts.append(first[ids])
        episode.append(ids)
        progress.append(info["progress"][ids])
        success.append(now_success[ids].astype(np.float32))
        kind.append(kind_ids[ids])
    env.close()
    return _rows(
        cfg,
        split,
        rng,
        np.concatenate(frames),
        np.concatenate(firsts),
        np.concatenate(episode),
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
    episode: np.ndarray,
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
        "episode": episode,
        "frame": np.concatenate(frame),
        "text": np.concatenate(text),
        "progress": np.concatenate(labels_p),
        "success": np.concatenate(labels_s),
        "kind": np.concatenate(kinds),
        "pairing": np.concatenate(pairing),
    }


def load_split(folder: Path, split: str) -> Split:
    """The manifest's shards of one split, concatenated (frame and episode indices shifted to match)."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DatasetError(f"dataset: no manifest.json in {folder}")
    manifest = json.loads(manifest_path.read_text())
    names = manifest.get("shards", {}).get(split)
    if not names:
        raise DatasetError(f"dataset: no {split} shards in {folder} (an unfinished build?)")
    parts: dict[str, list[np.ndarray]] = {}
    frames = episodes = 0
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"dataset: {path} is listed in the manifest but missing")
        with np.load(path) as shard:
            offsets = {"frame": frames, "episode": episodes}
            for key in shard.files:
                parts.setdefault(key, []).append(shard[key] + offsets.get(key, 0))
            frames += len(shard["frames"])
            episodes += int(shard["episode"].max()) + 1
    merged = {key: np.concatenate(values) for key, values in parts.items()}
    return Split(texts=manifest["texts"], **merged)
