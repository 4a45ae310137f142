"""Test setup: point striata at the shared robot assets and motion clips beside the repo."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
os.environ.setdefault("STRIATA_ASSETS", str(SHARED / "assets"))
os.environ.setdefault("STRIATA_DATA", str(SHARED / "data"))
os.environ.setdefault("MUJOCO_GL", "egl")
# Motion caches of a test run stay out of the user's ~/.cache.
os.environ.setdefault("STRIATA_CACHE", tempfile.mkdtemp(prefix="striata-test-cache-"))


@pytest.fixture(scope="session")
def g1_policy(tmp_path_factory) -> Path:
    """A G1 policy made the way striata makes one: run folder, checkpoint, export (untrained weights)."""
    from striata.deploy_cli import export_run
    from striata.envs.registry import make_env
    from striata.experiment import load_experiment
    from striata.run_dir import new_run_dir
    from striata.train import build_trainer

    root = tmp_path_factory.mktemp("g1_policy")
    config = load_experiment(Path(__file__).resolve().parents[1] / "configs" / "g1_stand.yaml", {})
    run_dir = new_run_dir(config, root)
    trainer = build_trainer(config, make_env(config.task, num_envs=2, seed=0, config=config.task_settings()))
    trainer.save(run_dir / "checkpoints" / "ckpt_0.pt", extra={})
    assert export_run(run_dir, None, root / "policy.onnx", recorded_steps=5)["parity_ok"]
    return root / "policy.onnx"
