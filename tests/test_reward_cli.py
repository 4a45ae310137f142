"""`striata serve-reward` config handling: bad keys and values are one line naming them, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from striata.cli import app
from striata.reward_server.backends import make_backend
from striata.reward_server.config import TorchBackendConfig, load_server_config

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


@pytest.mark.parametrize("command", ["serve-reward", "bench"])
def test_a_misspelt_model_device_is_refused_in_one_line(command):
    args = (
        ["serve-reward", "--config", str(CONFIGS / "reward_torch.yaml"), "--set", "backend.device=gpu"]
        if command == "serve-reward"
        else ["bench", "reward", "--device", "gpu"]
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "device" in result.output and "expected auto, cpu, cuda or cuda:N (got 'gpu')" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer where CUDA is missing")
def test_asking_for_cuda_without_it_names_backend_device():
    config = str(CONFIGS / "reward_torch.yaml")
    result = CliRunner().invoke(app, ["serve-reward", "--config", config, "--set", "backend.device=cuda:0"])
    assert result.exit_code == 2
    expected = "error: backend.device: device 'cuda:0' requested but CUDA is not available"
    assert result.output.strip() == expected


def test_auto_puts_the_progress_model_where_torch_finds_a_device():
    backend = make_backend(TorchBackendConfig(device="auto"))
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert backend.device == expected
    assert {p.device.type for p in backend.model.parameters()} == {expected}


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("policy.pt", "policy: 'policy.pt' is neither an ONNX file nor one of random, zero, scripted"),
        ("missing.onnx", "policy file missing.onnx does not exist"),
        ("tests/data/g1_stand.onnx", "was trained on 'g1_tracking', the config's task is 'panda_pick'"),
    ],
)
def test_audit_reward_refuses_a_policy_that_cannot_drive_the_task_in_one_line(policy, message):
    config = str(CONFIGS / "panda_pick_vlm.yaml")
    result = CliRunner().invoke(app, ["audit-reward", config, "--policy", policy, "--steps", "2"])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_audit_reward_needs_a_reward_server_in_the_config():
    result = CliRunner().invoke(app, ["audit-reward", str(CONFIGS / "panda_pick.yaml"), "--steps", "2"])
    assert result.exit_code == 2
    assert "config: reward_model: Value error, give exactly one of reward_model.server and" in result.output


def test_client_limits_that_no_request_could_pass_are_refused_in_one_line():
    config = str(CONFIGS / "reward_torch.yaml")
    result = CliRunner().invoke(app, ["serve-reward", "--config", config, "--set", "peer_burst_bytes=1000"])
    assert result.exit_code == 2
    assert "peer_burst_bytes (1000) < max_request_bytes (67108864)" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bench_reward_attacks_names_an_unknown_attack():
    result = CliRunner().invoke(app, ["bench", "reward-attacks", "--attack", "teardrop"])
    assert result.exit_code == 2
    assert "unknown 'teardrop'; allowed: frame_400mb" in result.output
