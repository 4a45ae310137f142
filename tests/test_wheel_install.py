"""The built wheel in a clean venv (issue 19): one top-level package, `striata`, holding every part of the
checkout; no other installed distribution provides that name; and a robot computer's install
(`striata[deploy]`) runs the sim bridge and the controller with the shipped policy without importing torch,
Ray or Gymnasium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

from striata.deploy.bench import free_port

ROOT = Path(__file__).resolve().parents[1]
HEAVY = re.compile(r"\|\s+(torch|ray|gymnasium|tensorboard)(\.|$)", re.M)


@pytest.mark.slow
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
    built = subprocess.run(
        [python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", source],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("striata-*.whl")
    assert_wheel_holds_the_checkout(wheel)
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{wheel}[deploy]"],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list"], capture_output=True, text=True).stdout
    assert not re.search(r"^(torch|ray|gymnasium|tensorboard) ", listed, re.M), listed

    assert_one_top_level_name(python, tmp_path)

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


def assert_wheel_holds_the_checkout(wheel: Path) -> None:
    """Every Python file of every part is in the wheel under ``striata/<part>/`` (the package list in
    pyproject.toml names each folder), and nothing lies outside ``striata/`` but its metadata."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"striata"}, tops
    for part in ("common", "envs", "learner", "reward_server", "actors", "deploy"):
        for path in (ROOT / part).rglob("*.py"):
            member = f"striata/{path.relative_to(ROOT).as_posix()}"
            assert member in names, f"{member} is missing from the wheel: add its folder to pyproject.toml"
    assert "striata/actors/console/static/index.html" in names


def assert_one_top_level_name(python: Path, cwd: Path) -> None:
    """`import striata.envs` works, `import envs` fails, `pip show -f` lists one top-level package, and no
    other installed distribution provides the name ``striata``."""
    check = subprocess.run([python, "-c", CHECK_NAMES], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert check.returncode == 0, check.stderr[-3000:]
    shown = subprocess.run(
        [python, "-m", "pip", "show", "-f", "striata"], capture_output=True, text=True, timeout=60
    ).stdout
    files = shown.split("Files:", 1)[1].split()
    tops = {name.split("/")[0] for name in files if not name.startswith("..")}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"striata"}, tops


CHECK_NAMES = """
import importlib.metadata, importlib.util
import striata.envs, striata.deploy.controller
for name in ("envs", "learner", "actors", "deploy", "reward_server", "common"):
    assert importlib.util.find_spec(name) is None, f"`import {name}` should fail, found {name}"
providers = importlib.metadata.packages_distributions().get("striata")
assert providers == ["striata"], providers
"""
