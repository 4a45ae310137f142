"""`striata train-reward`: the in-process progress model trained on sim rollouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from striata.overrides import SetOption


def register(app: typer.Typer) -> None:
    """Add this part's commands to the CLI."""
    app.command("train-reward")(train_reward)


def train_reward(
    config: Annotated[Path, typer.Option("--config", help="reward-model YAML (configs/reward_model_*.yaml)")],
    overrides: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="checkpoint folder; default: the config's `out`")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Build the rollout data set, train the progress model, audit it on held-out rollouts (JSON)."""
    from striata.errors import user_errors
    from striata.reward_server.progress_model.checkpoint import CheckpointError
    from striata.reward_server.progress_model.config import RewardModelConfig
    from striata.reward_server.progress_model.dataset import DatasetError
    from striata.reward_server.progress_model.text_encoder import TextEncoderError

    with user_errors(RewardModelConfig, extra=(CheckpointError, DatasetError, TextEncoderError)):
        from striata.overrides import parse_overrides
        from striata.reward_server.progress_model.train import train_reward_model

        cfg = load_reward_config(config, parse_overrides(overrides or []))
        result = train_reward_model(cfg, out, show_progress=not quiet)
    print(json.dumps(result, indent=2))


def load_reward_config(path: Path, overrides: dict):
    """The YAML at ``path`` with ``--set`` overrides laid over it, validated."""
    from striata.experiment import merge_overrides, read_yaml_mapping
    from striata.reward_server.progress_model.config import RewardModelConfig

    return RewardModelConfig.model_validate(merge_overrides(read_yaml_mapping(path), overrides))
