"""Must-show sim-to-sim: the G1 standing policy striata trained and exported runs on `striata bridge sim`
through the whole state machine, and the G1 stays up for 20 s of policy (pelvis height measured in
the bridge process)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bridge_peer import FULL_RUN_PHASES

from striata.deploy.bench import free_port

POLICY = Path(__file__).parent / "data" / "g1_stand.onnx"
STRIATA = (sys.executable, "-m", "striata")
STANDING_M = 0.6  # the G1's pelvis stands at ~0.75 m; fallen, it lies at ~0.1 m
POLICY_S = 20.0
POLICY_AT_S = 4.0  # zero torque 0.5 s, interpolate 2 s, hold 1.5 s

pytestmark = pytest.mark.skipif(
    not POLICY.is_file(),
    reason="tests/data/g1_stand.onnx is absent: the lead commits the exported G1 standing policy there",
)


def test_trained_g1_policy_stands_20s_on_the_sim_bridge(tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bridge = subprocess.Popen(
        [*STRIATA, "bridge", "sim", "--robot", "g1", "--endpoint", endpoint, "--duration", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    record = tmp_path / "run.npz"
    damping_at = POLICY_AT_S + POLICY_S + 1.0  # a second to spare: the bridge may tick a little behind
    sequence = f"interpolate@0.5,policy@{POLICY_AT_S},damping@{damping_at},quit@{damping_at + 0.5}"
    try:
        controller = subprocess.run(
            [*STRIATA, "deploy", "--policy", str(POLICY), "--robot", endpoint, "--no-keys",
             "--sequence", sequence, "--record", str(record)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        bridge.send_signal(signal.SIGINT)
        bridge_out, bridge_err = bridge.communicate(timeout=30)
    assert controller.returncode == 0, controller.stderr[-3000:] + bridge_out[-1000:]
    summary = json.loads(controller.stdout)
    assert [phase for _, phase in summary["phases"]] == FULL_RUN_PHASES
    assert summary["stop_reason"] == "quit"

    assert bridge.returncode == 0, bridge_err[-3000:]
    heights = json.loads(bridge_out.strip().splitlines()[-1])["base_height_by_phase"]
    print(json.dumps(heights, indent=2))
    assert heights["policy"]["seconds"] >= POLICY_S
    assert heights["policy"]["min_m"] > STANDING_M, heights
    assert heights["hold"]["min_m"] > STANDING_M, heights

    recorded = np.load(record)
    assert recorded["obs"].shape[1] == 154 and len(recorded["obs"]) >= 0.9 * POLICY_S / 0.02
    assert np.isfinite(recorded["actions"]).all()
