"""SO-101 digital twin (deploy/arms/twin.py): the vendor's scservo_sdk, the Feetech adapter and
`striata bridge arm` drive the MuJoCo SO-101 through its simulated servo bus on a pty."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from bridge_peer import arm_bridge, send_hold

from striata.deploy.arms.feetech import ADDR_TORQUE_ENABLE, RAD_PER_STEP, FeetechArm, FeetechArmConfig
from striata.deploy.arms.twin import So101Twin
from striata.envs.robots.so101 import SO101

PAN, LIFT = 0, 1


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; the twin runs in real time on a possibly loaded machine."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.01)


@pytest.fixture
def twin() -> Iterator[So101Twin]:
    sim = So101Twin()
    yield sim
    sim.close()


def test_feetech_arm_reads_commands_and_releases_the_simulated_joints(twin: So101Twin) -> None:
    arm = FeetechArm(FeetechArmConfig(port=twin.path))
    try:
        # The twin starts holding the default pose; the bus reads the simulated joints to a step.
        np.testing.assert_allclose(arm.read_positions(), twin.joint_positions(), atol=RAD_PER_STEP)
        np.testing.assert_allclose(arm.read_positions(), SO101.default_pos, atol=0.01)

        arm.set_torque(True)
        target = arm.read_positions()
        target[PAN] = 0.5
        arm.command_positions(target)
        _wait_for(lambda: abs(twin.joint_positions()[PAN] - 0.5) < 0.01, 10.0, "shoulder_pan reaches 0.5 rad")
        np.testing.assert_allclose(arm.read_positions(), twin.joint_positions(), atol=0.02)  # moving on

        # Torque off: the shoulder cannot hold the arm up any more and it swings down.
        lift = twin.joint_positions()[LIFT]
        arm.set_torque(False)
        assert all(twin.tables[i][ADDR_TORQUE_ENABLE] == 0 for i in range(1, 7))
        _wait_for(lambda: abs(twin.joint_positions()[LIFT] - lift) > 0.1, 10.0, "the limp shoulder falls")

        twin.reset()
        np.testing.assert_allclose(twin.joint_positions(), SO101.default_pos, atol=1e-9)
        np.testing.assert_allclose(arm.read_positions(), SO101.default_pos, atol=RAD_PER_STEP)
        assert twin.cube_position() == pytest.approx([0.2, 0.0, 0.0125], abs=1e-3)
    finally:
        arm.close()


def test_bridge_arm_hold_command_moves_the_twin(twin: So101Twin) -> None:
    """`striata bridge arm --port <twin>`, driven by a ZMQ client as a deploy controller would."""
    with arm_bridge(twin.path) as (sock, welcome):
        target = SO101.default_pos.copy()
        target[PAN] = 0.3
        deadline = time.monotonic() + 15.0
        seq = 0
        # Commands at the bridge's 50 Hz until the simulated joint is there: the bridge ramps targets.
        while abs(twin.joint_positions()[PAN] - 0.3) > 0.01:
            assert time.monotonic() < deadline, f"shoulder_pan at {twin.joint_positions()[PAN]}, not 0.3"
            send_hold(sock, seq, welcome["session"], target)
            seq += 1
            time.sleep(0.02)
        np.testing.assert_allclose(twin.joint_positions()[LIFT:], target[LIFT:], atol=0.05)


def test_cli_twin_serves_a_bus_the_adapter_can_open() -> None:
    twin = subprocess.Popen(
        [sys.executable, "-m", "striata", "twin", "so101", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        path = twin.stdout.readline().strip()
        assert path.startswith("/dev/"), twin.communicate(timeout=30)
        arm = FeetechArm(FeetechArmConfig(port=path))
        try:
            np.testing.assert_allclose(arm.read_positions(), SO101.default_pos, atol=0.01)
        finally:
            arm.close()
    finally:
        twin.terminate()
        _, err = twin.communicate(timeout=30)
    assert twin.returncode == 0, err
