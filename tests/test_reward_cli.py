"""`striata serve-reward` config handling: bad keys and values are one line naming them, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from reward_server.config import load_server_config
from striata.cli import app

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["reward_torch", "reward_openai", "reward_clip"])
def test_example_configs_validate(name):
    config = load_server_config(CONFIGS / f"{name}.yaml", {"max_batch": 8})
    assert config.max_batch == 8 and config.host == "127.0.0.1"
    assert config.backend.kind == name.removeprefix("reward_")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("backend.profile=bogus", "backend.openai.profile"),
        ("max_batch=0", "max_batch"),
        ("colour=blue", "unknown key 'colour'"),
    ],
)
def test_serve_reward_rejects_bad_config(override, message):
    result = CliRunner().invoke(
        app, ["serve-reward", "--config", str(CONFIGS / "reward_openai.yaml"), "--set", override]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_serve_reward_rejects_non_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: [unclosed")
    result = CliRunner().invoke(app, ["serve-reward", "--config", str(bad)])
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_an_ensemble_of_one_checkpoint_is_refused_in_one_line():
    config = str(CONFIGS / "reward_torch.yaml")
    result = CliRunner().invoke(app, ["serve-reward", "--config", config, "--set", "backend.checkpoint=[m]"])
    assert result.exit_code == 2
    assert "backend.torch.checkpoint" in result.output
    assert "ensemble of 2 or more models, got 1" in result.output
    assert len(result.output.strip().splitlines()) == 1
