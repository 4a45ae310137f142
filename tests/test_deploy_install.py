"""A robot computer's install (issue 19): `pip install '.[deploy]'` into a clean venv runs the sim bridge
and the controller with the shipped policy, and neither process imports torch, Ray or Gymnasium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from deploy.bench import free_port

ROOT = Path(__file__).resolve().parents[1]
HEAVY = re.compile(r"\|\s+(torch|ray|gymnasium|tensorboard)(\.|$)", re.M)


@pytest.mark.timeout(600)
def test_deploy_extra_runs_the_robot_side_without_training_libraries(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "runs", "__pycache__", "*.egg-info", "build"),
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{source}[deploy]"],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list"], capture_output=True, text=True).stdout
    assert not re.search(r"^(torch|ray|gymnasium|tensorboard) ", listed, re.M), listed

    # The processes run outside the checkout: the asset and data folders as absolute paths.
    env = {**os.environ, **{k: os.path.abspath(os.environ[k]) for k in ("STRIATA_ASSETS", "STRIATA_DATA")}}
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    striata = [python, "-X", "importtime", "-m", "striata"]
    bridge = subprocess.Popen(
        [*striata, "bridge", "sim", "--robot", "g1", "--endpoint", endpoint, "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        controller = subprocess.run(
            [*striata, "deploy", "--policy", ROOT / "tests/data/g1_stand.onnx", "--robot", endpoint,
             "--no-keys", "--sequence", "interpolate@0.5,policy@3,damping@4,quit@4.5"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
        )  # fmt: skip
    finally:
        bridge.terminate()
        _, bridge_imports = bridge.communicate(timeout=30)
    assert controller.returncode == 0, controller.stderr[-3000:]
    summary = json.loads(controller.stdout)
    assert summary["stop_reason"] == "quit" and summary["phases"][-1][1] == "damping"
    assert not HEAVY.findall(controller.stderr), HEAVY.findall(controller.stderr)
    assert not HEAVY.findall(bridge_imports), HEAVY.findall(bridge_imports)
