"""Unitree G1 backend against the simulated G1 on loopback DDS: state in, CRC-valid commands out."""

from __future__ import annotations

import time

import numpy as np
import pytest
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic
from pydantic import ValidationError

from deploy.robot import JointCommand
from deploy.unitree.backend import G1ConnectionError, UnitreeG1Backend, UnitreeG1Config
from deploy.unitree.crc import lowcmd_crc
from deploy.unitree.dds import delete_entities, open_participant
from deploy.unitree.hg_idl import LOWCMD_TOPIC, LowCmd_, zero_lowcmd
from deploy.unitree.motor_map import G1_MOTOR_INDEX
from deploy.unitree.sim_g1 import SimulatedG1
from envs.robots.g1 import G1, G1_JOINT_NAMES

# One DDS domain per test, so that no test hears another's robot.
DOMAIN_ROUND_TRIP, DOMAIN_TIMEOUT, DOMAIN_BAD_CRC, DOMAIN_EMPTY = 41, 42, 43, 44


def _wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _hold_command(joint_names: list[str]) -> JointCommand:
    """Standby-gain hold of the default pose, in ``joint_names`` order."""
    order = [G1_JOINT_NAMES.index(n) for n in joint_names]
    kp, kd = G1.standby_kp_kd
    zeros = np.zeros(len(order))
    return JointCommand(G1.default_pos[order], zeros, kp[order], kd[order], zeros.copy())


def test_round_trip_state_in_crc_valid_commands_out_in_policy_order() -> None:
    policy_order = list(np.random.default_rng(1).permutation(G1_JOINT_NAMES))
    with SimulatedG1(DOMAIN_ROUND_TRIP, mode_machine=7) as sim:
        backend = UnitreeG1Backend(
            UnitreeG1Config(domain_id=DOMAIN_ROUND_TRIP, interface="lo", joint_names=policy_order)
        )
        try:
            assert backend.joint_names == policy_order
            knee = policy_order.index("left_knee_joint")
            np.testing.assert_allclose(backend.joint_limits[knee], [-0.087267, 2.8798], atol=1e-6)
            assert backend.effort_limits[knee] == 139.0

            first = backend.read_state()
            assert first.q.shape == (29,) and first.dq.shape == (29,) and first.tau.shape == (29,)
            assert abs(np.linalg.norm(first.imu_quat_wxyz) - 1.0) < 1e-5
            # Motors are off until the first LowCmd, so the limbs hang anywhere inside their ranges.
            assert np.all(first.q >= backend.joint_limits[:, 0] - 0.05)
            assert np.all(first.q <= backend.joint_limits[:, 1] + 0.05)
            order = [G1_JOINT_NAMES.index(n) for n in policy_order]

            command = _hold_command(policy_order)
            lowcmd = backend.build_lowcmd(command)
            for j, name in enumerate(policy_order):
                motor = lowcmd.motor_cmd[G1_MOTOR_INDEX[name]]
                assert motor.mode == 1
                assert motor.q == pytest.approx(command.q_target[j], abs=1e-6)
                assert motor.kp == pytest.approx(command.kp[j], abs=1e-4)
            assert all(m.mode == 0 and m.kp == 0.0 for m in lowcmd.motor_cmd[29:])
            assert lowcmd.mode_machine == 7 and lowcmd.mode_pr == 0
            assert lowcmd.crc == lowcmd_crc(lowcmd)

            sent = 0
            next_tick = time.perf_counter()
            for _ in range(500):  # 1 s at the G1's 500 Hz
                state = backend.read_state()
                backend.write_command(command)
                sent += 1
                next_tick += backend.control_period_s
                time.sleep(max(0.0, next_tick - time.perf_counter()))
            assert _wait_until(lambda: sim.snapshot().lowcmds_received >= sent, 2.0)
            assert state.tick > first.tick
            # Commands in policy order reached the right motors: every joint went to its default.
            error = np.abs(state.q - G1.default_pos[order])
            assert error.max() < 0.1, dict(zip(policy_order, error.round(3), strict=True))
        finally:
            backend.close()
    stats = sim.stats
    assert stats.lowcmds_received == sent == backend.lowcmds_sent
    assert stats.lowcmds_bad_crc == 0
    assert stats.lowcmds_wrong_mode_machine == 0
    assert stats.lowstates_published > 400


def test_no_lowstate_is_a_clear_error_not_a_hang() -> None:
    config = UnitreeG1Config(domain_id=DOMAIN_EMPTY, connect_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(G1ConnectionError, match=r"no rt/lowstate from a G1 within 0\.3 s on interface 'lo'"):
        UnitreeG1Backend(config)
    assert time.monotonic() - started < 2.0

    sim = SimulatedG1(DOMAIN_TIMEOUT).start()
    backend = UnitreeG1Backend(UnitreeG1Config(domain_id=DOMAIN_TIMEOUT, state_timeout_ms=50))
    try:
        backend.read_state()
        sim.stop()
        with pytest.raises(G1ConnectionError, match="state_timeout_ms=50"):
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                backend.read_state()
                time.sleep(0.005)
    finally:
        backend.close()


def test_sim_drops_and_counts_lowcmds_with_a_bad_crc() -> None:
    with SimulatedG1(DOMAIN_BAD_CRC) as sim:
        participant = open_participant(DOMAIN_BAD_CRC, "lo")
        topic = Topic(participant, LOWCMD_TOPIC, LowCmd_)
        writer = DataWriter(participant, topic)
        try:
            assert _wait_until(lambda: writer.get_publication_matched_status().current_count > 0, 3.0)
            cmd = zero_lowcmd()
            cmd.mode_machine = sim.mode_machine
            cmd.motor_cmd[0].mode = 1
            cmd.motor_cmd[0].kd = 8.0
            cmd.crc = lowcmd_crc(cmd) ^ 1
            for _ in range(5):
                writer.write(cmd)
            cmd.crc = lowcmd_crc(cmd)
            writer.write(cmd)
            assert _wait_until(lambda: sim.snapshot().lowcmds_received == 6, 2.0)
        finally:
            delete_entities(writer, topic, participant)
    assert sim.stats.lowcmds_bad_crc == 5
    assert sim.stats.lowcmds_wrong_mode_machine == 0


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="domain_id"):
        UnitreeG1Config(domain_id=300)
    with pytest.raises(ValidationError, match="mode_pr"):
        UnitreeG1Config(mode_pr=2)
    with pytest.raises(ValidationError, match="state_timeout_ms"):
        UnitreeG1Config(state_timeout_ms=0)
