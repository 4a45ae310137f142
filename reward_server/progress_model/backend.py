"""``torch`` reward backend: the in-process progress model, scoring a whole batch in one forward pass.

Modes ``progress`` and ``success`` (both return progress in [0, 1] and ``done_prob``). A model trained on
several cameras takes one frame of each. An input the model cannot take (another mode, no frame from one
of its cameras, a frame that is not uint8 [H, W, 3], a missing
reference when the model needs one) is answered ``bad_request`` on its own; the rest of the batch is
still scored. Frames of another size are resized to the model's.

``ProgressEnsembleBackend`` scores with several trained models and answers pessimistically: the
members' lowest progress and lowest ``done_prob``, their progress spread as ``uncertainty``. A learner
shaped by one model finds the states it overrates; shaped by the minimum of models trained on
different data, it has to find states every member overrates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from striata.reward_server.backend import ScoreInput, ScoreOutput
from striata.reward_server.progress_model.checkpoint import MODEL_ID_PREFIX, load_checkpoint
from striata.reward_server.progress_model.config import RewardModelConfig
from striata.reward_server.progress_model.model import ProgressModel, resize_frames
from striata.reward_server.progress_model.text_encoder import TextEncoder

MODES = ("progress", "success")


class ProgressModelBackend:
    """Implements ``striata.reward_server.backend.RewardBackend``."""

    def __init__(
        self,
        model: ProgressModel,
        cfg: RewardModelConfig,
        model_id: str,
        revision: str,
        text_encoder: TextEncoder | None = None,
        device: str = "cpu",
    ) -> None:
        self.model = model.to(device).eval()
        self.cfg = cfg
        self.model_id = model_id
        self.revision = revision
        self.max_batch = cfg.model.max_batch
        self.device = device
        self.cameras = cfg.dataset.views
        self.image_size = cfg.dataset.image_size
        self.text_encoder = text_encoder or TextEncoder(device)
        self.forward_passes = 0

    @classmethod
    def load(
        cls, checkpoint_path: str | Path, device: str = "cpu", text_encoder: TextEncoder | None = None
    ) -> ProgressModelBackend:
        """A trained checkpoint folder (or its model.safetensors), as written by ``striata train-reward``."""
        model, cfg, card = load_checkpoint(Path(checkpoint_path), device)
        return cls(model, cfg, card["model_id"], card["revision"], text_encoder, device)

    @classmethod
    def random_init(
        cls, seed: int = 0, cfg: RewardModelConfig | None = None, device: str = "cpu"
    ) -> ProgressModelBackend:
        """The same architecture with random weights (throughput benchmarks, tests)."""
        cfg = cfg or RewardModelConfig()
        torch.manual_seed(seed)
        model = ProgressModel(cfg.model, len(cfg.dataset.views))
        return cls(model, cfg, f"{MODEL_ID_PREFIX}/random-init", f"seed-{seed}", device=device)

    def score(self, inputs: list[ScoreInput]) -> list[ScoreOutput]:
        outputs = [ScoreOutput() for _ in inputs]
        valid: list[int] = []
        for i, item in enumerate(inputs):
            problem = self._problem(item)
            if problem:
                outputs[i] = ScoreOutput(status="bad_request", detail=problem)
            else:
                valid.append(i)
        if not valid:
            return outputs
        try:
            progress, done = self._forward([inputs[i] for i in valid])
        except (RuntimeError, ValueError) as exc:
            for i in valid:
                outputs[i] = ScoreOutput(status="model_error", detail=f"{type(exc).__name__}: {exc}")
            return outputs
        for j, i in enumerate(valid):
            outputs[i] = ScoreOutput(progress=float(progress[j]), done_prob=float(done[j]))
        return outputs

    def _problem(self, item: ScoreInput) -> str:
        if item.mode not in MODES:
            return f"mode {item.mode!r}: the progress model answers {', '.join(MODES)}"
        if not isinstance(item.task, str) or not item.task.strip():
            return "task: empty task text"
        sources = [("frames", item.frames)]
        if self.cfg.model.use_reference:
            sources.append(("reference_frames", item.reference_frames))
        for camera in self.cameras:
            for field, frames in sources:
                frame = frames.get(camera)
                if frame is None:
                    return f"{field}: no {camera!r} camera frame (got {sorted(frames)})"
                bad = _bad_frame(frame)
                if bad:
                    return f"{field}[{camera!r}]: {bad}"
        return ""

    def _forward(self, items: list[ScoreInput]) -> tuple[np.ndarray, np.ndarray]:
        frames = self._stack_views([item.frames for item in items])
        reference = None
        if self.cfg.model.use_reference:
            reference = self._stack_views([item.reference_frames for item in items])
        text = torch.from_numpy(self.text_encoder.encode([item.task for item in items])).to(self.device)
        with torch.inference_mode():
            progress, logit = self.model(frames, text, reference)
        self.forward_passes += 1
        return progress.cpu().numpy(), torch.sigmoid(logit).cpu().numpy()

    def _stack_views(self, frames: list[dict[str, np.ndarray]]) -> torch.Tensor:
        """One uint8 [B, S, views * S, 3] tensor: each item's camera frames, resized, side by side.

        Frames of one shape are copied and resized together, not one by one. The stacking copy also makes
        the tensor writable: frames decoded off the wire are read-only views.
        """
        size = self.image_size
        out = np.empty((len(frames), size, len(self.cameras) * size, 3), dtype=np.uint8)
        for view, camera in enumerate(self.cameras):
            columns = slice(view * size, (view + 1) * size)
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for i, item in enumerate(frames):
                by_shape.setdefault(item[camera].shape, []).append(i)
            for rows in by_shape.values():
                out[rows, :, columns] = resize_frames(np.stack([frames[i][camera] for i in rows]), size)
        return torch.from_numpy(out).to(self.device)


class ProgressEnsembleBackend:
    """Implements ``striata.reward_server.backend.RewardBackend``: the pessimistic combination of members."""

    def __init__(self, members: list[ProgressModelBackend]) -> None:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 models, got {len(members)}")
        self.members = members
        self.model_id = "+".join(member.model_id for member in members)
        self.revision = "+".join(member.revision for member in members)
        self.max_batch = min(member.max_batch for member in members)

    @classmethod
    def load(cls, checkpoint_paths: list[Path], device: str = "cpu") -> ProgressEnsembleBackend:
        encoder = TextEncoder(device)
        return cls([ProgressModelBackend.load(path, device, encoder) for path in checkpoint_paths])

    def score(self, inputs: list[ScoreInput]) -> list[ScoreOutput]:
        answers = [member.score(inputs) for member in self.members]
        outputs = []
        for per_member in zip(*answers, strict=True):
            failed = next((out for out in per_member if out.status != "ok"), None)
            if failed is not None:
                outputs.append(failed)
                continue
            progress = np.array([out.progress for out in per_member])
            outputs.append(
                ScoreOutput(
                    progress=float(progress.min()),
                    done_prob=min(out.done_prob for out in per_member),
                    uncertainty=float(progress.std()),
                )
            )
        return outputs


def _bad_frame(frame: object) -> str:
    if not isinstance(frame, np.ndarray):
        return f"expected a numpy array, got {type(frame).__name__}"
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) < 8:
        return f"expected uint8 [H, W, 3] with H, W >= 8, got {frame.dtype} {list(frame.shape)}"
    return ""
