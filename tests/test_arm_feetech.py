"""Feetech (SO-101) arm adapter: the vendor's scservo_sdk and pyserial run for real against a fake
servo bus behind a pseudo-terminal, so only the serial line itself is simulated."""

from __future__ import annotations

import time

import numpy as np
import pytest
from bridge_peer import arm_bridge, send_hold
from pydantic import ValidationError

from striata.deploy.arms.backend import ArmBackend
from striata.deploy.arms.feetech import (
    ADDR_GOAL_POSITION,
    ADDR_PRESENT_POSITION,
    ADDR_PRESENT_SPEED,
    ADDR_TORQUE_ENABLE,
    RAD_PER_STEP,
    FeetechArm,
    FeetechArmConfig,
    FeetechBusError,
    FeetechJoint,
)
from striata.deploy.arms.sts_bus import StsBus
from striata.deploy.robot import JointCommand


class FakeFeetechBus(StsBus):
    """STS servos on a serial line (``StsBus``) that record goal and torque writes.

    A servo with torque on reaches its goal position at once; tests set present speeds directly.
    """

    def __init__(self, ids: list[int]) -> None:
        self.goal_writes: list[tuple[int, int]] = []
        self.torque_writes: list[tuple[int, int]] = []
        super().__init__(ids)
        for i in ids:
            self.set_present(i, 2048)

    def set_present(self, servo: int, position: int, speed: int = 0) -> None:
        with self.lock:
            self.set_register(servo, ADDR_PRESENT_POSITION, position)
            self.set_register(servo, ADDR_PRESENT_SPEED, speed)

    def goal(self, servo: int) -> int:
        return self.register(servo, ADDR_GOAL_POSITION)

    def torque(self, servo: int) -> int:
        return self.register(servo, ADDR_TORQUE_ENABLE, 1)

    def written(self, servo: int, address: int, length: int) -> None:
        if address <= ADDR_TORQUE_ENABLE < address + length:
            self.torque_writes.append((servo, self.torque(servo)))
        if address <= ADDR_GOAL_POSITION < address + length:
            self.goal_writes.append((servo, self.goal(servo)))
        if self.torque(servo):
            self.set_register(servo, ADDR_PRESENT_POSITION, self.goal(servo))


@pytest.fixture
def bus():
    fake = FakeFeetechBus([1, 2, 3, 4, 5, 6])
    yield fake
    fake.close()


def _config(port: str) -> FeetechArmConfig:
    """The SO-101 default, with two joints given a non-trivial calibration."""
    config = FeetechArmConfig(port=port)
    config.joints[1] = config.joints[1].model_copy(update={"homing_offset": 1000, "direction": -1})
    config.joints[2] = config.joints[2].model_copy(update={"homing_offset": 3000})
    return config


def test_reads_convert_steps_and_signed_speeds_to_rad(bus: FakeFeetechBus) -> None:
    bus.set_present(1, 2048 + 1024, speed=200)
    bus.set_present(2, 1000 + 512, speed=(1 << 15) | 100)  # sign-magnitude: -100 steps/s
    bus.set_present(3, 3000 - 256)
    arm = FeetechArm(_config(bus.path))
    try:
        assert [j.name for j in arm.joints][:3] == ["shoulder_pan", "shoulder_lift", "elbow_flex"]
        q = arm.read_positions()
        dq = arm.read_velocities()
        np.testing.assert_allclose(q[:4], [np.pi / 2, -np.pi / 4, -np.pi / 8, 0.0], atol=1e-12)
        np.testing.assert_allclose(dq[:3], [200 * RAD_PER_STEP, 100 * RAD_PER_STEP, 0.0], atol=1e-12)
    finally:
        arm.close()


def test_position_command_goes_out_through_the_sync_write(bus: FakeFeetechBus) -> None:
    arm = FeetechArm(_config(bus.path))
    try:
        arm.set_torque(True)
        assert all(bus.torque(i) == 1 for i in range(1, 7))
        q = np.array([np.pi / 2, -np.pi / 4, -np.pi / 8, 0.1, 0.0, 10.0])  # the last beyond a turn
        arm.command_positions(q)
        # Sync writes get no reply; a read after one is answered only once the write was handled.
        present = arm.read_positions()
        assert [bus.goal(i) for i in range(1, 6)] == [
            3072,
            1512,
            2744,
            2048 + round(0.1 / RAD_PER_STEP),
            2048,
        ]
        assert bus.goal(6) == 4095  # clipped to the servo's range
        np.testing.assert_allclose(present[:3], q[:3], atol=RAD_PER_STEP)
        arm.set_torque(False)
        assert all(bus.torque(i) == 0 for i in range(1, 7))
    finally:
        arm.close()


def test_backend_maps_bridge_modes_to_torque_and_targets(bus: FakeFeetechBus) -> None:
    backend = ArmBackend(FeetechArm(_config(bus.path)))
    try:
        assert backend.joint_names[0] == "shoulder_pan" and backend.control_period_s == 0.02
        np.testing.assert_allclose(backend.joint_limits[5], [-0.174533, 1.74533])
        n = len(backend.joint_names)
        zeros = np.zeros(n)
        state = backend.read_state()
        backend.write_command(JointCommand(state.q, zeros, zeros, zeros, zeros))  # zero torque
        assert bus.torque(1) == 0
        target = np.array([0.3, -0.2, 0.1, 0.0, 0.5, 5.0])  # gripper beyond its limit
        kp = np.full(n, 20.0)
        kp[4] = 0.0  # this joint holds where it is
        backend.write_command(JointCommand(target, zeros, kp, zeros, zeros))
        assert bus.torque(1) == 1
        q = backend.read_state().q
        np.testing.assert_allclose(q[:4], target[:4], atol=RAD_PER_STEP)
        assert abs(q[4] - state.q[4]) <= RAD_PER_STEP
        assert q[5] == pytest.approx(1.74533, abs=RAD_PER_STEP)
        writes = len(bus.goal_writes)
        backend.write_command(JointCommand(zeros, zeros, zeros, np.full(n, 5.0), zeros))  # damping: hold
        np.testing.assert_allclose(backend.read_state().q, q, atol=RAD_PER_STEP)
        assert bus.torque(1) == 1 and len(bus.goal_writes) > writes
    finally:
        backend.close()


def test_missing_servo_and_bad_port_are_clear_errors(bus: FakeFeetechBus) -> None:
    config = FeetechArmConfig(
        port=bus.path, joints=[*_config(bus.path).joints, FeetechJoint(name="extra", id=9, lower=-1, upper=1)]
    )
    with pytest.raises(FeetechBusError, match=r"servo ids \[9\] do not answer"):
        FeetechArm(config)
    with pytest.raises(FeetechBusError, match="port: cannot open '/dev/no-such-tty'"):
        FeetechArm(FeetechArmConfig(port="/dev/no-such-tty"))
    with pytest.raises(ValidationError, match="id used twice"):
        FeetechArmConfig(joints=[FeetechJoint(name=n, id=1, lower=-1, upper=1) for n in ("a", "b")])
    with pytest.raises(ValidationError, match=r"lower 1\.0 must be below upper -1\.0"):
        FeetechJoint(name="a", id=1, lower=1.0, upper=-1.0)


def test_cli_bridge_arm_moves_the_servos_for_a_controller(bus: FakeFeetechBus) -> None:
    """`striata bridge arm` on the fake bus; a ZMQ client speaks the deploy protocol to it."""
    from striata.deploy.protocol import PROTOCOL_VERSION

    with arm_bridge(bus.path, "--duration-s", "6") as (sock, welcome):
        assert welcome["v"] == PROTOCOL_VERSION and welcome["joint_names"][0] == "shoulder_pan"
        target = np.array([0.3, -0.2, 0.1, 0.0, 0.0, 0.0])
        for seq in range(40):  # 0.8 s at 50 Hz: the bridge ramps the targets by its step limit
            send_hold(sock, seq, welcome["session"], target)
            time.sleep(0.02)
        expected_pan = 2048 + round(0.3 / RAD_PER_STEP)
        assert abs(bus.goal(1) - expected_pan) <= 2
        assert bus.torque(1) == 1
