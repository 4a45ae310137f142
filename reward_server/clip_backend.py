"""The ``clip`` backend: VLM-RM's goal-baseline projection reward (Rocamonde et al., 2023) on a CLIP model.

With unit embeddings x (image), g (goal prompt) and b (baseline prompt), d = (g - b) / |g - b| and the
partial projection P = alpha d d^T + (1 - alpha) I, the reward is R = 1 - |P (x - g)|^2 / 2, in [-1, 1]
for unit vectors; progress is (R + 1) / 2. alpha = 1 keeps only the goal-baseline direction,
alpha = 0 is the plain CLIP goal similarity. The model comes from a local path: a transformers
folder (``CLIPModel`` + ``CLIPProcessor``) or an open_clip model name plus checkpoint file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from striata.reward_server.backend import ScoreInput, ScoreOutput, backend_device
from striata.reward_server.config import ClipBackendConfig

MAX_BATCH = 64


class ClipBackend:
    modes = ("progress", "success")

    def __init__(
        self,
        config: ClipBackendConfig,
        encode_images: Callable[[list[np.ndarray]], torch.Tensor],
        encode_texts: Callable[[list[str]], torch.Tensor],
        model_id: str,
    ) -> None:
        self.config = config
        self.model_id = model_id
        # Prompts and alpha change every score: they belong to the cache key.
        self.revision = (
            f"vlmrm:alpha={config.alpha}:baseline={config.baseline_prompt}:goal={config.goal_prompt}"
        )
        self.max_batch = MAX_BATCH
        self._encode_images = encode_images
        self._encode_texts = encode_texts
        self._projections: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def load(cls, config: ClipBackendConfig) -> ClipBackend:
        config = config.model_copy(update={"device": backend_device(config.device)})
        if config.library == "open_clip":
            return cls._load_open_clip(config)
        return cls._load_transformers(config)

    @classmethod
    def _load_transformers(cls, config: ClipBackendConfig) -> ClipBackend:
        from transformers import CLIPModel, CLIPProcessor

        model = CLIPModel.from_pretrained(config.path).to(config.device).eval()
        processor = CLIPProcessor.from_pretrained(config.path)

        def encode_images(images: list[np.ndarray]) -> torch.Tensor:
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(config.device)
            return _features(model.get_image_features(pixel_values=pixels))

        def encode_texts(texts: list[str]) -> torch.Tensor:
            tokens = processor(text=texts, return_tensors="pt", padding=True, truncation=True).to(
                config.device
            )
            return _features(
                model.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
            )

        return cls(config, encode_images, encode_texts, model_id=f"clip:{config.path}")

    @classmethod
    def _load_open_clip(cls, config: ClipBackendConfig) -> ClipBackend:
        import open_clip
        from PIL import Image

        model, _, preprocess = open_clip.create_model_and_transforms(
            config.path, pretrained=config.open_clip_pretrained, device=config.device
        )
        model.eval()
        tokenizer = open_clip.get_tokenizer(config.path)

        def encode_images(images: list[np.ndarray]) -> torch.Tensor:
            batch = torch.stack([preprocess(Image.fromarray(image)) for image in images]).to(config.device)
            return model.encode_image(batch)

        def encode_texts(texts: list[str]) -> torch.Tensor:
            return model.encode_text(tokenizer(texts).to(config.device))

        return cls(config, encode_images, encode_texts, model_id=f"open_clip:{config.path}")

    @torch.inference_mode()
    def score(self, inputs: list[ScoreInput]) -> list[ScoreOutput]:
        outputs: list[ScoreOutput | None] = [None] * len(inputs)
        images: list[np.ndarray] = []
        owners: list[int] = []
        for index, item in enumerate(inputs):
            if item.mode not in self.modes:
                outputs[index] = ScoreOutput(
                    "bad_request",
                    detail=f"mode {item.mode!r}: the clip backend takes {', '.join(self.modes)}",
                )
                continue
            # Several cameras of one request: their embeddings are averaged.
            for camera in sorted(item.frames):
                images.append(item.frames[camera])
                owners.append(index)
        if images:
            embeddings = _unit(self._encode_images(images).float().cpu())
            owner_ids = torch.tensor(owners)
            for index in sorted(set(owners)):
                x = _unit(embeddings[owner_ids == index].mean(dim=0))
                outputs[index] = self._reward(x, inputs[index].task)
        return [o if o is not None else ScoreOutput("model_error", detail="no output") for o in outputs]

    def _reward(self, x: torch.Tensor, task: str) -> ScoreOutput:
        goal, projection = self._projection(task)
        residual = projection @ (x - goal)
        reward = 1.0 - 0.5 * float(residual.square().sum())
        progress = min(1.0, max(0.0, (reward + 1.0) / 2.0))
        return ScoreOutput(progress=progress, detail=f"vlmrm reward {reward:.4f}")

    def _projection(self, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        goal_text = self.config.goal_prompt or task
        if goal_text not in self._projections:
            goal, baseline = _unit(self._encode_texts([goal_text, self.config.baseline_prompt]).float().cpu())
            direction = _unit(goal - baseline)
            alpha = self.config.alpha
            projection = alpha * torch.outer(direction, direction) + (1 - alpha) * torch.eye(len(direction))
            self._projections[goal_text] = (goal, projection)
        return self._projections[goal_text]


def _features(output: object) -> torch.Tensor:
    """transformers 5 returns a model output with the projected features as ``pooler_output``."""
    return output.pooler_output if hasattr(output, "pooler_output") else output  # type: ignore[return-value]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
