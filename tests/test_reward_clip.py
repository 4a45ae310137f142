"""The ``clip`` backend (VLM-RM goal-baseline projection) on a tiny random CLIP the test builds and saves,
loaded through the backend's real loading code; the reward is checked against the formula."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from striata.reward_server.backend import ScoreInput
from striata.reward_server.clip_backend import ClipBackend
from striata.reward_server.config import ClipBackendConfig

transformers = pytest.importorskip("transformers")

LAYERS = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
GOAL, BASELINE = "a cube lifted by the gripper", "a robot arm on a table"


def _byte_vocab() -> dict[str, int]:
    """A byte-level BPE vocabulary with no merges: every byte alone and as a word end (GPT-2 byte map)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    shifted = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(shifted))]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    path = tmp_path_factory.mktemp("tiny-clip")
    vocab = _byte_vocab()
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    config = CLIPConfig(
        text_config={**LAYERS, "vocab_size": len(vocab), "max_position_embeddings": 77,
                     "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"]},
        vision_config={**LAYERS, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(path)
    return path


def _images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(count)]


def _reference_embeddings(path, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit image, goal and baseline embeddings computed straight from the saved model."""
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        image = model.get_image_features(pixel_values=pixels)
        tokens = processor(text=[GOAL, BASELINE], return_tensors="pt", padding=True)
        text = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
    return image, text[0], text[1]


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_projection_reward_matches_vlmrm_formula(tiny_clip, alpha):
    backend = ClipBackend.load(
        ClipBackendConfig(path=str(tiny_clip), goal_prompt=GOAL, baseline_prompt=BASELINE, alpha=alpha)
    )
    images = _images(3)
    outputs = backend.score([ScoreInput(task="ignored: goal_prompt is set", mode="progress",
                                        frames={"front": image}) for image in images])  # fmt: skip
    x, g, b = _reference_embeddings(tiny_clip, images)
    d = (g - b) / (g - b).norm()
    projection = alpha * torch.outer(d, d) + (1 - alpha) * torch.eye(len(d))
    for output, xi in zip(outputs, x, strict=True):
        reward = 1 - 0.5 * float((projection @ (xi - g)).square().sum())
        assert output.status == "ok"
        assert output.progress == pytest.approx((reward + 1) / 2, abs=1e-5)
    if alpha == 0.0:  # the plain goal similarity: R = cos(x, g)
        assert outputs[0].progress == pytest.approx((float(x[0] @ g) + 1) / 2, abs=1e-5)


def test_task_text_is_the_goal_by_default_and_cameras_are_averaged(tiny_clip):
    backend = ClipBackend.load(ClipBackendConfig(path=str(tiny_clip), baseline_prompt=BASELINE))
    images = _images(2)
    one, two, other_task, bad_mode = backend.score(
        [
            ScoreInput(task=GOAL, mode="progress", frames={"front": images[0]}),
            ScoreInput(task=GOAL, mode="progress", frames={"front": images[0], "wrist": images[1]}),
            ScoreInput(task="open the drawer", mode="progress", frames={"front": images[0]}),
            ScoreInput(task=GOAL, mode="pairwise_delta", frames={"front": images[0]}),
        ]
    )
    assert one.status == two.status == other_task.status == "ok"
    assert 0.0 <= one.progress <= 1.0 and one.progress != two.progress and one.progress != other_task.progress
    assert bad_mode.status == "bad_request" and np.isnan(bad_mode.progress)
    assert backend.model_id == f"clip:{tiny_clip}" and "alpha=1.0" in backend.revision


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open_clip is not installed")
def test_open_clip_model_loads_and_scores():
    backend = ClipBackend.load(
        ClipBackendConfig(path="ViT-B-32", library="open_clip", baseline_prompt=BASELINE)
    )
    (output,) = backend.score([ScoreInput(task=GOAL, mode="progress", frames={"front": _images(1)[0]})])
    assert output.status == "ok" and 0.0 <= output.progress <= 1.0
