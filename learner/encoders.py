"""Camera frames into SAC's networks: DrQ's conv encoder and random-shift augmentation.

Frames travel as the envs render them, uint8 [B, H, W, C] (NHWC), through chunks and the replay
buffer; they become float only here, on the learner's device:

- ``frames_to_float(frames)``: uint8 NHWC -> float32 NCHW, values still in [0, 255];
- ``random_shift(frames, pad, generator)``: DrQ's augmentation on NHWC frames (uint8, before they become
  float: a quarter of the bytes to move): replicate-pad each frame by ``pad`` pixels and crop it back
  at an offset drawn per sample, so a frame moves by at most ``pad`` pixels each way;
- ``ConvEncoder``: one camera's encoder: ``x / 255 - 0.5``, a 3x3 stride-2 conv + ReLU per
  ``EncoderConfig.channels`` entry (each halves the frame: 64 -> 32 -> 16 -> 8 -> 4 with the default
  four), then Linear -> LayerNorm -> tanh to ``feature_dim`` features (DrQ/SERL's projection; the
  tanh bounds what the MLPs see, as the state vector's scale is bounded);
- ``PixelEncoder``: a ``ConvEncoder`` per camera (views differ, so they do not share weights, as in
  HIL-SERL), the features of every camera concatenated after the state vector:
  ``[state, camera_0 features, camera_1 features, ...]`` in ``SACConfig.cameras`` order.

Stride-2 convs keep the encoder cheap on a CPU: about 4 M multiply-adds per 64x64 frame, where
DrQ's stride-1 layers cost some 40 M at 84x84.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from striata.learner.config import EncoderConfig

CameraShapes = Mapping[str, tuple[int, int, int]]  # camera -> (H, W, C) of its uint8 frames


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, C] -> float32 [B, C, H, W] in [0, 255] (scaled by the encoder).

    The result is an NCHW view of channels-last memory, which CPU convolutions run faster on.
    """
    return frames.float().permute(0, 3, 1, 2)


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each frame of ``x`` [B, H, W, C] shifted by its own random (dy, dx) in [-pad, pad]^2 (DrQ).

    The same as replicate-padding by ``pad`` and cropping back at a random offset, as DrQ does, in one
    gather: a row or column shifted past the edge repeats the edge. ``pad`` 0 is the identity. The
    offsets come from ``generator``, so a checkpointed learner draws the same ones again.
    """
    if pad == 0:
        return x
    b, h, w, _ = x.shape
    offset = torch.randint(-pad, pad + 1, (b, 2), generator=generator, device=x.device)
    rows = (torch.arange(h, device=x.device) + offset[:, :1]).clamp(0, h - 1)  # [B, H]
    cols = (torch.arange(w, device=x.device) + offset[:, 1:]).clamp(0, w - 1)  # [B, W]
    # Rows of pixels picked from the flattened batch: one index_select, several times faster on a CPU
    # than indexing by (batch, row, column).
    pixels = (torch.arange(b, device=x.device)[:, None, None] * h + rows[:, :, None]) * w + cols[:, None, :]
    return x.reshape(b * h * w, -1).index_select(0, pixels.reshape(-1)).reshape(x.shape)


class ConvEncoder(nn.Module):
    """One camera: float [B, C, H, W] in [0, 255] -> features [B, feature_dim] in (-1, 1)."""

    def __init__(self, shape: tuple[int, int, int], cfg: EncoderConfig) -> None:
        super().__init__()
        self.shape = shape  # (H, W, C) of the uint8 frames it reads, for exports
        height, width, channels = shape
        layers: list[nn.Module] = []
        for out in cfg.channels:
            # In place: the ReLU's output is all its backward needs, and a frame batch's activations
            # are the encoder's largest tensors.
            layers += [nn.Conv2d(channels, out, kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True)]
            channels = out
            height, width = (height + 1) // 2, (width + 1) // 2  # what a 3x3 stride-2 pad-1 conv leaves
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.projection = nn.Sequential(
            nn.Linear(channels * height * width, cfg.feature_dim), nn.LayerNorm(cfg.feature_dim), nn.Tanh()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.convs(x / 255.0 - 0.5))


class PixelEncoder(nn.Module):
    """State vector + camera frames -> the input of SAC's actor and critics."""

    def __init__(self, cameras: CameraShapes, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cameras = list(cameras)
        self.encoders = nn.ModuleDict({name: ConvEncoder(shape, cfg) for name, shape in cameras.items()})
        self.feature_dim = len(self.cameras) * cfg.feature_dim

    def forward(self, state: torch.Tensor, frames: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``state`` [B, S] and float NCHW ``frames`` per camera -> [B, S + feature_dim]."""
        return torch.cat([state, *(self.encoders[name](frames[name]) for name in self.cameras)], dim=-1)
