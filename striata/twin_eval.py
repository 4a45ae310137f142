"""`striata eval POLICY.onnx --twin`: does an exported SO-101 pick policy lift the cube on the twin?

Each episode is a deployment as a user runs one on the real arm, with the digital twin as the arm: a
fresh ``So101Twin`` (in this process) with the cube placed at rest at a random spot of the task's range
(seeded, as the task's resets draw it), the twin's cameras served over ZMQ when the policy reads frames,
`striata bridge arm --port <twin pty>` and `striata deploy --policy` fed those cameras, scripted
through the interpolation to the default pose, the policy for the task's episode length, and quit.
The cube is watched all along: an episode lifts it when the cube rises the task's ``lift_height``
(its success) above where it was placed.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from striata.deploy.arms.twin import So101Twin
from striata.deploy.arms.twin_cameras import TwinCameras
from striata.deploy.bench import free_port
from striata.envs.registry import make_config
from striata.envs.tasks.so101.config import So101PickConfig
from striata.evaluate import EvalError
from striata.learner.export import PolicyMetadata, read_metadata
from striata.sim2sim import STRIATA

# The controller's script: to the default pose from 0.3 s, the policy from 2.5 s (as the reach test).
INTERPOLATE_AT_S = 0.3
POLICY_AT_S = 2.5
WATCH_PERIOD_S = 0.02  # how often the cube's height is read (the twin steps at 2 ms)
START_TIMEOUT_S = 60.0


class TwinEvalError(EvalError):
    """A deployment on the twin that did not run through: the bridge's or the controller's own words."""


def _pick_config(metadata: PolicyMetadata) -> So101PickConfig:
    if metadata.task != "so101_pick":
        raise TwinEvalError(
            f"task {metadata.task!r}: --twin measures so101_pick policies (does the cube lift)"
        )
    config = make_config(metadata.task, {})
    assert isinstance(config, So101PickConfig)
    return config


def run_twin_episode(
    policy: Path, metadata: PolicyMetadata, cube: tuple[float, float, float], seconds: float
) -> dict[str, Any]:
    """One deployment of ``policy`` on a fresh twin with the cube at ``cube`` (x, y, yaw); its cube's
    highest rise above where it was placed (m)."""
    twin = So101Twin(visual_meshes="decimated" if metadata.cameras else "original")
    cameras = None
    bridge = None
    try:
        twin.place_cube(*cube)
        rest = float(twin.cube_position()[2])
        options: list[str] = []
        if metadata.cameras:
            size = metadata.camera_sizes[0][0] if metadata.camera_sizes else 64
            cameras = TwinCameras(twin, metadata.cameras, "tcp://127.0.0.1:*", size)
            for name in metadata.cameras:
                options += ["--policy-camera", f"{name}=zmq+{cameras.endpoint}/{name}"]
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        bridge = subprocess.Popen(
            [*STRIATA, "bridge", "arm", "--port", twin.path, "--endpoint", endpoint],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert bridge.stderr is not None
        first = bridge.stderr.readline()  # names the endpoint, or says why the bridge stopped
        if "bridge on" not in first:
            raise TwinEvalError(f"striata bridge arm: {first}{bridge.stderr.read()[-2000:]}")
        sequence = f"interpolate@{INTERPOLATE_AT_S:g},policy@{POLICY_AT_S:g},quit@{POLICY_AT_S + seconds:g}"
        highest = rest
        # Files, not pipes: a controller that talks a lot must not stall on a full pipe meanwhile.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            deploy = subprocess.Popen(
                [*STRIATA, "deploy", "--policy", str(policy), "--robot", endpoint, "--no-keys",
                 "--sequence", sequence, *options],
                stdout=out, stderr=err, text=True,
            )  # fmt: skip
            limit_s = START_TIMEOUT_S + POLICY_AT_S + seconds
            deadline = time.monotonic() + limit_s
            while deploy.poll() is None and time.monotonic() < deadline:
                highest = max(highest, float(twin.cube_position()[2]))
                time.sleep(WATCH_PERIOD_S)
            if deploy.poll() is None:
                deploy.kill()
                deploy.wait()
                raise TwinEvalError(f"striata deploy did not finish within {limit_s:.0f} s")
            if deploy.returncode != 0:
                err.seek(0)
                raise TwinEvalError(f"striata deploy exited {deploy.returncode}: {err.read()[-2000:]}")
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.communicate(timeout=30)
        if cameras is not None:
            cameras.close()
        twin.close()
    return {"cube": [round(v, 4) for v in cube], "cube_lift_m": round(highest - rest, 4)}


def evaluate_on_twin(
    policy: Path, episodes: int, seed: int = 0, on_episode: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """``episodes`` deployments of a so101_pick ``policy`` on the twin; how many lifted the cube."""
    if episodes < 1:
        raise EvalError(f"episodes: must be >= 1, got {episodes}")
    metadata = read_metadata(policy)
    config = _pick_config(metadata)
    rng = np.random.default_rng(seed)
    reports = []
    for done in range(episodes):
        cube = (
            float(rng.uniform(*config.cube_x)),
            float(rng.uniform(*config.cube_y)),
            float(rng.uniform(-config.cube_yaw, config.cube_yaw)),
        )
        reports.append(run_twin_episode(policy, metadata, cube, config.episode_length_s))
        if on_episode is not None:
            on_episode(done + 1, episodes)
    lifted = [r["cube_lift_m"] >= config.lift_height for r in reports]
    return {
        "policy": str(policy),
        "task": metadata.task,
        "through": "striata twin so101 + striata bridge arm + striata deploy",
        "cameras": metadata.cameras or [],
        "episodes": episodes,
        "episode_s": config.episode_length_s,
        "lift_height_m": config.lift_height,
        "lifted": sum(lifted),
        "lifted_fraction": round(sum(lifted) / episodes, 3),
        "runs": reports,
    }
