"""Progress-model checkpoints: weights as safetensors plus a JSON card (config, model id, revisions).

The revision is a hash of the weights file, so a served score names exactly the weights that made it;
loading reads tensors only (safetensors), never pickled objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save

from striata.common.files import atomic_write
from striata.reward_server.progress_model.config import RewardModelConfig
from striata.reward_server.progress_model.model import ProgressModel
from striata.reward_server.progress_model.text_encoder import file_revision

WEIGHTS = "model.safetensors"
CARD = "model.json"
MODEL_ID_PREFIX = "striata/progress-cnn"


class CheckpointError(ValueError):
    """A checkpoint folder that is missing files or does not match its card."""


def save_checkpoint(
    folder: Path, model: ProgressModel, cfg: RewardModelConfig, extra: dict[str, Any]
) -> dict[str, Any]:
    """Write weights and card atomically (temp file + rename); returns the card."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = save({k: v.detach().contiguous() for k, v in model.state_dict().items()})
    atomic_write(folder / WEIGHTS, lambda f: f.write(weights))
    card = {
        "model_id": f"{MODEL_ID_PREFIX}/{cfg.name}",
        "revision": file_revision(folder / WEIGHTS),
        "config": cfg.model_dump(mode="json"),
        **extra,
    }
    atomic_write(folder / CARD, lambda f: f.write(json.dumps(card, indent=2).encode()))
    return card


def load_checkpoint(
    path: Path, device: str = "cpu"
) -> tuple[ProgressModel, RewardModelConfig, dict[str, Any]]:
    """A checkpoint folder (or its model.safetensors) -> model in eval mode, its config and card."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    weights, card_path = folder / WEIGHTS, folder / CARD
    for needed in (weights, card_path):
        if not needed.is_file():
            raise CheckpointError(f"checkpoint: {needed} does not exist")
    card = json.loads(card_path.read_text())
    revision = file_revision(weights)
    if card.get("revision") != revision:
        raise CheckpointError(
            f"checkpoint: {weights} has revision {revision}, card says {card.get('revision')}"
        )
    cfg = RewardModelConfig.model_validate(card["config"])
    model = ProgressModel(cfg.model, len(cfg.dataset.views))
    model.load_state_dict(load_file(str(weights), device=device))
    return model.to(device).eval(), cfg, card
