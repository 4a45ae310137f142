"""Unitree G1 backend against the simulated G1 on loopback DDS: state in, CRC-valid commands out, with
the vendor SDK's discovery settings (multicast on the interface), unicast peers or a user's own XML."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic
from pydantic import ValidationError

from striata.deploy.gain_stability import gain_limits
from striata.deploy.robot import JointCommand, StateLost
from striata.deploy.unitree.backend import G1ConnectionError, UnitreeG1Backend, UnitreeG1Config
from striata.deploy.unitree.crc import lowcmd_crc
from striata.deploy.unitree.dds import DdsConfigError, cyclonedds_config, delete_entities, open_participant
from striata.deploy.unitree.hg_idl import (
    LOWCMD_TOPIC,
    LOWSTATE_TOPIC,
    LowCmd_,
    LowState_,
    zero_lowcmd,
    zero_lowstate,
)
from striata.deploy.unitree.motor_map import G1_MOTOR_INDEX
from striata.deploy.unitree.sim_g1 import SimulatedG1, build_g1_motor_scene
from striata.envs.robots.g1 import G1, G1_JOINT_NAMES

# One DDS domain per test, so that no test hears another's robot.
DOMAIN_ROUND_TRIP, DOMAIN_TIMEOUT, DOMAIN_BAD_CRC, DOMAIN_EMPTY = 41, 42, 43, 44
DOMAIN_PEERS, DOMAIN_XML, DOMAIN_BAD_XML, DOMAIN_GAINS, DOMAIN_TORN = 48, 49, 50, 54, 55


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
        # What goes in and out, not how fast: a loaded machine may pause the simulated G1 for 100 ms
        # (the state timeout has its own test below).
        backend = UnitreeG1Backend(
            UnitreeG1Config(
                domain_id=DOMAIN_ROUND_TRIP, interface="lo", joint_names=policy_order, state_timeout_ms=2000
            )
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


def test_no_lowstate_at_start_is_an_error_and_a_lost_state_is_state_lost_not_a_hang() -> None:
    config = UnitreeG1Config(domain_id=DOMAIN_EMPTY, connect_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(G1ConnectionError, match=r"no rt/lowstate from a G1 within 0\.3 s on interface 'lo'"):
        UnitreeG1Backend(config)
    assert time.monotonic() - started < 2.0

    sim = SimulatedG1(DOMAIN_TIMEOUT, mode_machine=9).start()
    backend = UnitreeG1Backend(UnitreeG1Config(domain_id=DOMAIN_TIMEOUT, state_timeout_ms=50))
    try:
        backend.read_state()
        sim.stop()
        with pytest.raises(StateLost, match="state_timeout_ms=50"):
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                backend.read_state()
                time.sleep(0.005)
        # The bridge damps while the state is lost: commands still go out, mode_machine as last seen.
        damping = _hold_command(backend.joint_names)
        damping.kp[:] = 0.0
        backend.write_command(damping)
        assert backend.lowcmds_sent == 1
        assert backend.build_lowcmd(damping).mode_machine == 9
    finally:
        backend.close()


def test_default_dds_config_is_the_vendor_sdks_and_peers_or_a_users_xml_replace_it() -> None:
    # unitree_sdk2py's ChannelFactoryInitialize(domain, "lo"): one interface, default priority and
    # multicast, nothing else that changes discovery.
    domain = ET.fromstring(cyclonedds_config("lo").split("?>", 1)[1]).find("Domain")
    interface = domain.find("General/Interfaces/NetworkInterface")
    assert interface.attrib == {"name": "lo", "priority": "default", "multicast": "default"}
    assert domain.find("General/AllowMulticast") is None and domain.find("Discovery") is None

    unicast = ET.fromstring(cyclonedds_config("lo", ("127.0.0.1",)).split("?>", 1)[1]).find("Domain")
    assert unicast.find("General/AllowMulticast").text == "false"
    assert [p.attrib["Address"] for p in unicast.iterfind("Discovery/Peers/Peer")] == ["127.0.0.1"]

    # Unicast discovery and a user's own XML both reach the simulated G1 (same process, same config).
    with SimulatedG1(DOMAIN_PEERS, peers=("127.0.0.1",)) as sim:
        backend = UnitreeG1Backend(UnitreeG1Config(domain_id=DOMAIN_PEERS, peers=("127.0.0.1",)))
        backend.close()
    assert sim.stats.lowstates_published > 0
    xml = cyclonedds_config("lo")
    with SimulatedG1(DOMAIN_XML, dds_config_xml=xml):
        backend = UnitreeG1Backend(UnitreeG1Config(domain_id=DOMAIN_XML, dds_config_xml=xml))
        backend.read_state()
        backend.close()
    with pytest.raises(DdsConfigError, match=f"domain_id: {DOMAIN_XML} is already open"):
        open_participant(DOMAIN_XML, "lo", ("127.0.0.1",))
    with pytest.raises(DdsConfigError, match="on the given DDS config"):
        bad = "<CycloneDDS><Domain><General><Nonsense/></General></Domain></CycloneDDS>"
        open_participant(DOMAIN_BAD_XML, "lo", config_xml=bad)


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


def test_gain_limits_of_a_simulated_g1_lower_what_it_cannot_hold_and_say_so_once_per_joint() -> None:
    limits = gain_limits(
        build_g1_motor_scene(0.002), 0.005, G1_JOINT_NAMES, joint_positions=[G1.default_pos], model_name="g1"
    )
    reports: list[str] = []
    with SimulatedG1(DOMAIN_GAINS):
        backend = UnitreeG1Backend(
            UnitreeG1Config(domain_id=DOMAIN_GAINS), gain_limits=limits, report=reports.append
        )
        try:
            hold = _hold_command(backend.joint_names)
            backend.write_command(hold)  # the standby gains hold at 5 ms: sent as they are
            assert backend.gains_clipped == 0 and reports == []
            damping = JointCommand(hold.q_target, hold.dq_target, np.zeros(29), np.full(29, 5.0), hold.tau_ff)
            backend.write_command(damping)
            backend.write_command(damping)
        finally:
            backend.close()
    assert backend.gains_clipped == 2 and backend.lowcmds_sent == 3
    _, expected_kd = limits.clip(damping.kp, damping.kd)
    lowered = [G1_JOINT_NAMES[j] for j in np.flatnonzero(expected_kd < 5.0)]
    assert "left_ankle_roll_joint" in lowered and "left_knee_joint" not in lowered
    assert [line.split()[2] for line in reports] == lowered  # "[bridge] gains: <joint> ..."
    assert all("kp=0 kd=5 is unstable on g1 at a 0.005 s step" in line for line in reports)


def test_a_torn_lowstate_is_dropped_like_a_late_one() -> None:
    # Unitree's simulator sometimes publishes a LowState copied while mj_step had cleared sensordata.
    participant = open_participant(DOMAIN_TORN, "lo")
    topic = Topic(participant, LOWSTATE_TOPIC, LowState_)
    writer = DataWriter(participant, topic)
    good, torn = zero_lowstate(), zero_lowstate()
    torn.imu_state.quaternion = [0.0, 0.0, 0.0, 0.0]
    connected, stop = threading.Event(), threading.Event()

    def publish() -> None:
        while not stop.is_set():
            writer.write(torn if connected.is_set() else good)
            time.sleep(0.002)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        backend = UnitreeG1Backend(UnitreeG1Config(domain_id=DOMAIN_TORN))
        connected.set()
        try:
            with pytest.raises(StateLost):
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    assert np.linalg.norm(backend.read_state().imu_quat_wxyz) == pytest.approx(1.0)
                    time.sleep(0.005)
            assert backend.lowstates_dropped > 10
        finally:
            backend.close()
    finally:
        stop.set()
        thread.join()
        delete_entities(writer, topic, participant)
