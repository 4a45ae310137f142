"""Config schema shared by every task: physics rate, control decimation, episode length.

Configs are pydantic models with unknown keys forbidden, so a typo in a YAML file or a
``--set`` override fails with the key's name instead of being silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WarpOptions(StrictModel):
    """Settings of the MuJoCo Warp backend (``backend: warp``)."""

    device: str | None = Field(default=None, description="Warp device ('cuda:0', 'cpu'); default: Warp's")
    nconmax: int | None = Field(default=None, ge=1, description="contacts allocated per world")
    njmax: int | None = Field(default=None, ge=1, description="constraint rows allocated per world")


class TaskConfig(StrictModel):
    physics_dt: float = Field(gt=0)
    decimation: int = Field(ge=1)
    episode_length_s: float = Field(gt=0)
    num_threads: int | None = Field(default=None, ge=1, description="physics threads; default: all cores")
    backend: Literal["cpu", "warp"] = Field(
        default="cpu", description="physics: MuJoCo's CPU batch, or mujoco-warp (GPU, or Warp's CPU device)"
    )
    warp: WarpOptions = Field(default_factory=WarpOptions)

    @property
    def control_dt(self) -> float:
        return self.physics_dt * self.decimation

    @property
    def max_episode_steps(self) -> int:
        return max(1, round(self.episode_length_s / self.control_dt))
