"""Training the progress model on the rollout data set, and its held-out audit.

``train_reward_model`` builds (or reuses) the data set, fits the model with a progress bar, scores the
held-out rollouts (other seeds) and writes the checkpoint. Loss: binary cross-entropy of the predicted
progress against the ground-truth progress (a soft target in [0, 1]) plus the success BCE.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from striata.envs.registry import task_entry
from striata.learner.progress_audit import audit
from striata.reward_server.progress_model.checkpoint import save_checkpoint
from striata.reward_server.progress_model.config import RewardModelConfig
from striata.reward_server.progress_model.dataset import (
    MATCHED,
    MISMATCHED,
    Split,
    build_dataset,
    load_split,
)
from striata.reward_server.progress_model.model import ProgressModel, join_views, split_views
from striata.reward_server.progress_model.text_encoder import TextEncoder


def train_reward_model(
    cfg: RewardModelConfig, out: Path | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Data set -> trained model -> held-out audit -> checkpoint in ``out`` (default ``cfg.out``)."""
    out = Path(out or cfg.out)
    start = time.perf_counter()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    # Late in training some gradients underflow to denormals, which CPUs process ~100x slower: epochs
    # went from 8 s to 85 s in a two-view run. Flushed to zero they cost nothing.
    torch.set_flush_denormal(True)
    rng = np.random.default_rng(cfg.train.seed)

    folder = build_dataset(cfg.dataset, show_progress)
    data_s = time.perf_counter() - start
    train, held_out = load_split(folder, "train"), load_split(folder, "eval")
    encoder = TextEncoder()
    model = ProgressModel(cfg.model, len(cfg.dataset.views))
    losses = _fit(model, cfg, train, encoder, rng, show_progress)
    metrics = evaluate(model, held_out, encoder, cfg.train.batch_size)
    scene_cameras = task_entry(cfg.dataset.task).progress_scene().cameras
    card = save_checkpoint(
        out,
        model,
        cfg,
        {
            # What actors must send: frames of this scene camera, at this size, rendered this way.
            "camera": cfg.dataset.camera,
            "scene_camera": [scene_cameras[view] for view in cfg.dataset.views]
            if isinstance(cfg.dataset.camera, list)
            else scene_cameras[cfg.dataset.camera],
            "frame_size": [cfg.dataset.image_size, cfg.dataset.image_size],
            "shadows": cfg.dataset.shadows,
            "text_model_id": encoder.model_id,
            "text_model_revision": encoder.revision,
            "held_out": metrics,
        },
    )
    return {
        "checkpoint": str(out),
        "model_id": card["model_id"],
        "revision": card["revision"],
        "dataset": str(folder),
        "train_rows": len(train),
        "train_frames": len(train.frames),
        "held_out_frames": len(held_out.frames),
        "loss_first_epoch": round(losses[0], 4),
        "loss_last_epoch": round(losses[-1], 4),
        "held_out": {k: round(v, 4) for k, v in metrics.items()},
        "dataset_s": round(data_s, 1),
        "total_s": round(time.perf_counter() - start, 1),
    }


def _fit(
    model: ProgressModel,
    cfg: RewardModelConfig,
    data: Split,
    encoder: TextEncoder,
    rng: np.random.Generator,
    show_progress: bool,
) -> list[float]:
    """Mean loss of every epoch."""
    train_cfg = cfg.train
    frames = torch.from_numpy(data.frames)
    firsts = torch.from_numpy(data.first_frames)
    texts = torch.from_numpy(encoder.encode(data.texts))
    progress = torch.from_numpy(data.progress)
    success = torch.from_numpy(data.success)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    batches = max(1, len(data) // train_cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=train_cfg.lr, total_steps=train_cfg.epochs * batches
    )
    bce = nn.BCEWithLogitsLoss()
    losses: list[float] = []
    model.train()
    bar = tqdm(range(train_cfg.epochs), desc="train reward model", unit="epoch", disable=not show_progress)
    for _ in bar:
        order = torch.from_numpy(rng.permutation(len(data)))
        total = 0.0
        for b in range(batches):
            rows = order[b * train_cfg.batch_size : (b + 1) * train_cfg.batch_size]
            frame = torch.from_numpy(data.frame)[rows]
            x = _shift(frames[frame], train_cfg.shift_pixels, rng, model.views)
            reference = (
                _shift(firsts[frame], train_cfg.shift_pixels, rng, model.views)
                if cfg.model.use_reference
                else None
            )
            predicted, logit = model(x, texts[torch.from_numpy(data.text)[rows]], reference)
            loss = nn.functional.binary_cross_entropy(predicted.clamp(1e-6, 1 - 1e-6), progress[rows])
            loss = loss + train_cfg.success_weight * bce(logit, success[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        losses.append(total / batches)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    return losses


def _shift(frames: torch.Tensor, pixels: int, rng: np.random.Generator, views: int = 1) -> torch.Tensor:
    """Random translation by up to ``pixels`` (edge-padded crop), one offset per view: DrQ-style."""
    if pixels == 0:
        return frames
    if views > 1:
        return join_views(_shift(split_views(frames, views), pixels, rng), views)
    n, h, w = frames.shape[:3]
    padded = nn.functional.pad(frames.permute(0, 3, 1, 2).float(), (pixels,) * 4, mode="replicate")
    dy, dx = torch.from_numpy(rng.integers(0, 2 * pixels + 1, (2, n)))
    rows = (torch.arange(h)[None, :] + dy[:, None])[:, :, None]
    cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, :]
    # Advanced indices around the channel slice put the batch, row and column axes first: NHWC.
    return padded[torch.arange(n)[:, None, None], :, rows, cols].to(torch.uint8)


def predict(
    model: ProgressModel, data: Split, encoder: TextEncoder, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted progress and success probability for every row of ``data``."""
    texts = torch.from_numpy(encoder.encode(data.texts))
    frames = torch.from_numpy(data.frames)
    firsts = torch.from_numpy(data.first_frames)
    progress, success = [], []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            frame = torch.from_numpy(data.frame[start : start + batch_size])
            text = texts[torch.from_numpy(data.text[start : start + batch_size])]
            reference = firsts[frame] if model.cfg.use_reference else None
            p, logit = model(frames[frame], text, reference)
            progress.append(p.numpy())
            success.append(torch.sigmoid(logit).numpy())
    return np.concatenate(progress), np.concatenate(success)


def evaluate(model: ProgressModel, data: Split, encoder: TextEncoder, batch_size: int) -> dict[str, float]:
    """Held-out audit: Spearman on task-text rows; success P/R/F1 on all rows (mismatched ones are
    negatives); how much progress and success the model gives frames paired with another task's text."""
    progress, success = predict(model, data, encoder, batch_size)
    matched = data.pairing == MATCHED
    mismatched = data.pairing == MISMATCHED
    figures = audit(progress[matched], data.progress[matched], success, data.success)
    figures["success_f1_task_text"] = audit(
        progress[matched], data.progress[matched], success[matched], data.success[matched]
    )["success_f1"]
    figures["progress_mae"] = float(np.abs(progress[matched] - data.progress[matched]).mean())
    if mismatched.any():
        figures["mismatched_mean_progress"] = float(progress[mismatched].mean())
        figures["mismatched_success_rate"] = float((success[mismatched] >= 0.5).mean())
    return figures
