"""Taking over a robot under `striata deploy --intervene`: a sim G1 behind a real bridge server, the real
controller and its intervention port, and a client speaking actors/INTERVENTION.md over ZMQ. The person's
actions must reach the robot through the bridge's safety, be flagged in the recording, and every control
rule (handback, stale actions, bad actions, labels, pause) must hold while the robot keeps running."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from typer.testing import CliRunner

from striata.deploy.bench import free_port
from striata.deploy.bridge_server import BridgeServer
from striata.deploy.controller import Controller, ControllerConfig, JointMap
from striata.deploy.robot import JointCommand
from striata.deploy.safety import SafetyConfig
from striata.deploy.sim_robot import SimRobot
from striata.learner.export import make_session, read_metadata
from striata.learner.session_dataset import SessionWriter, load_session_transitions, read_session_episodes


class ObservedSim(SimRobot):
    """The sim G1, remembering the last command the bridge applied (after its safety filter)."""

    def __init__(self) -> None:
        super().__init__("g1")
        self.applied: JointCommand | None = None

    def write_command(self, command: JointCommand) -> None:
        self.applied = command
        super().write_command(command)


class GantrySim(ObservedSim):
    """The sim G1 kept on its gantry (the elastic band) in every phase."""

    def on_controller_phase(self, phase: str) -> None:
        self.phase = phase


def _serve(sim: ObservedSim) -> Iterator[tuple[BridgeServer, ObservedSim, str]]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = BridgeServer(sim, endpoint, SafetyConfig(), on_phase=sim.on_controller_phase)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, kwargs={"stop": stop}, daemon=True)
    thread.start()
    yield server, sim, endpoint
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture
def bridge() -> Iterator[tuple[BridgeServer, ObservedSim, str]]:
    yield from _serve(ObservedSim())


@pytest.fixture
def gantry_bridge() -> Iterator[tuple[BridgeServer, ObservedSim, str]]:
    yield from _serve(GantrySim())


class Console:
    """A DEALER client of the intervention port that keeps every message it receives."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.messages: list[dict[str, Any]] = []

    def send(self, kind: str, **fields: Any) -> None:
        self.sock.send(msgpack.packb({"v": 1, "type": kind, **fields}))

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.sock.poll(max(1, int(left * 1000))):
                self.messages.append(msgpack.unpackb(self.sock.recv(), raw=False))

    def wait_for(
        self, kind: str, timeout_s: float = 10.0, since: int | None = None, **match: Any
    ) -> dict[str, Any]:
        """The first message of ``kind`` (with the ``match`` fields) received from now on, or from the
        ``since``-th message received."""
        seen = len(self.messages) if since is None else since
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for message in self.messages[seen:]:
                if message["type"] == kind and all(message.get(k) == v for k, v in match.items()):
                    return message
            seen = len(self.messages)
            self.pump(0.02)
        raise AssertionError(f"no {kind} {match} within {timeout_s} s; last: {self.messages[-3:]}")

    def drive(self, action: list[float], seconds: float) -> None:
        """Send ``action`` every 50 ms (a page sends at a fixed rate while it has control)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.send("action", env=0, action=action)
            self.pump(0.05)

    def close(self) -> None:
        self.send("bye")
        self.sock.close(linger=0)


def test_takeover_of_a_deployed_robot_goes_through_the_bridge(
    bridge, g1_policy: Path, tmp_path: Path
) -> None:
    server, sim, endpoint = bridge
    metadata = read_metadata(g1_policy)
    names = metadata.joint_names
    default, scale = np.asarray(metadata.default_joint_pos), np.asarray(metadata.action_scale)
    port = free_port()
    record = tmp_path / "run.npz"
    config = ControllerConfig(
        policy=g1_policy,
        robot=endpoint,
        keys=False,
        interpolate_s=0.3,
        record=record,
        sequence="interpolate@0.1,policy@0.5",
        duration_s=30.0,  # a bound in case the test fails before it quits
        intervene=f"tcp://127.0.0.1:{port}",
    )
    controller = Controller(config, log=io.StringIO())
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(controller.run()), daemon=True)
    thread.start()
    console = Console(f"tcp://127.0.0.1:{port}")
    try:
        console.send("hello", client="test")
        welcome = console.wait_for("welcome")
        assert welcome["num_envs"] == 1 and welcome["action_dim"] == len(names) == 29
        assert welcome["control_dt"] == pytest.approx(metadata.control_dt)
        assert welcome["action_low"] == [-1.0] * 29 and welcome["action_high"] == [1.0] * 29
        assert welcome["cameras"] == ["none"]  # a robot has no simulator camera: no frames
        console.send("watch", env=0)
        first = console.wait_for("step")  # the policy phase has started
        assert first["intervention"] is False and len(first["obs"]["state"]) == metadata.obs_dim

        console.send("takeover", env=0)
        assert console.wait_for("control")["controlled"] is True
        console.send("action", env=0, action=[float("nan")] * 29)
        assert console.wait_for("error")["reason"] == "bad_field"
        console.send("action", env=0, action=[0.1] * 28)
        assert console.wait_for("error")["reason"] == "bad_field"

        # The person holds the default pose with the left shoulder pitched: a constant action.
        shoulder = names.index("left_shoulder_pitch_joint")
        action = np.zeros(29)
        action[shoulder] = -0.6
        console.drive(action.tolist(), 0.6)
        commanded = server.latest_command()
        applied = sim.applied
        joints = JointMap(names, sim.joint_names)
        wanted = joints.to_robot(default + scale * action)
        np.testing.assert_allclose(commanded.q_target, wanted, atol=1e-9)  # sent as an ordinary command
        assert commanded.phase == "policy"
        # After the bridge's target-rate ramp, the robot is driven to the person's target (in its limits).
        robot_shoulder = sim.joint_names.index("left_shoulder_pitch_joint")
        assert applied.q_target[robot_shoulder] == pytest.approx(wanted[robot_shoulder], abs=1e-6)
        assert np.all(applied.q_target >= server.filter.lower) and np.all(
            applied.q_target <= server.filter.upper
        )

        console.pump(0.5)  # no action for longer than action_timeout_s: zeros, the default pose
        mark = len(console.messages)
        console.send("label", env=0, success=True)  # ends the recorded episode; the robot goes on
        labelled = console.wait_for("step", since=mark, label=1)
        assert labelled["intervention"] is True and labelled["terminated"] and labelled["success"]
        ended = console.wait_for("episode_end", since=mark)
        assert ended["label"] == 1 and ended["episode"] == labelled["episode"]
        assert ended["interventions"] > 30 and ended["length"] == labelled["t"] + 1
        assert console.wait_for("step", since=mark, episode=labelled["episode"] + 1, t=0)["intervention"]

        outside = action.copy()
        outside[shoulder] = -7.0  # out of bounds: clipped to the limit (the bridge clamps the joint)
        console.drive(outside.tolist(), 0.15)
        console.send("handback", env=0)
        assert console.wait_for("control")["controlled"] is False
        console.wait_for("step", intervention=False)
        console.pump(0.3)

        console.send("pause", paused=True)
        assert console.wait_for("paused")["paused"] is True
        deadline = time.monotonic() + 5
        while server.status()["phase"] != "hold" and time.monotonic() < deadline:
            console.pump(0.02)
        assert server.status()["phase"] == "hold"
        console.send("pause", paused=False)
        console.wait_for("step", timeout_s=5.0)  # the policy runs again after the pause
        assert server.status()["phase"] == "policy"
    finally:
        console.close()
        controller.events.put("quit")
        thread.join(timeout=15)
    assert not thread.is_alive()

    assert result["stop_reason"] == "quit"
    phases = [phase for _, phase in result["phases"]]
    assert phases == ["zero_torque", "interpolate", "hold", "policy", "hold", "policy"]
    recorded = np.load(record)
    acted, label = recorded["intervention"], recorded["label"]
    actions, policy_actions = recorded["actions"], recorded["policy_actions"]
    assert len(acted) == len(actions) == len(label) == len(recorded["obs"])
    assert result["intervention"]["intervention_steps"] == int(acted.sum())
    assert result["intervention"]["success"] == 1 and list(label).count(1) == 1 and acted[label == 1].all()
    # Every policy step sent default + action_scale * the executed action.
    policy_rows = recorded["phase"] == list(recorded["phase_names"]).index("policy")
    np.testing.assert_allclose(recorded["q_target"][policy_rows], default + scale * actions, atol=1e-6)
    # The person's steps: the constant action, zeros when it went stale, the clipped one; one stretch.
    clipped = action.copy()
    clipped[shoulder] = -1.0
    human = actions[acted]
    is_action = np.all(np.isclose(human, action, atol=1e-6), axis=1)
    is_zero = np.all(human == 0.0, axis=1)
    is_clipped = np.all(np.isclose(human, clipped, atol=1e-6), axis=1)
    assert np.all(is_action | is_zero | is_clipped)
    assert is_action.sum() >= 20 and is_zero.sum() >= 8 and is_clipped.sum() >= 3
    assert np.count_nonzero(np.diff(acted.astype(int)) == 1) == 1
    # The policy's steps are the policy's own actions, and the policy ran on every step's observation.
    np.testing.assert_allclose(actions[~acted], policy_actions[~acted], atol=1e-6)
    replayed = make_session(g1_policy).run(["actions"], {"obs": recorded["obs"]})[0]
    np.testing.assert_allclose(replayed, policy_actions, atol=1e-5)
    after_handback = acted[len(acted) - np.argmax(acted[::-1]) :]
    assert len(after_handback) >= 15 and not after_handback.any()

    # The robot's messages make a console session like a sim env's (actors/SESSIONS.md), frames aside.
    with SessionWriter(
        tmp_path / "session", task=metadata.task, task_text=welcome["task_text"], fps=50, cameras=["none"]
    ) as writer:
        for message in console.messages:
            if message["type"] == "step":
                writer.add_step(message)
            elif message["type"] == "episode_end" and message["episode"] == labelled["episode"]:
                assert writer.end_episode(message) == 0
    # The labelled episode whole; the next one, in which the person was still acting at its first step,
    # is kept too, unfinished (``ended`` false), since the console stopped before its end.
    first, *rest = read_session_episodes(tmp_path / "session")
    assert (
        first["length"] == labelled["t"] + 1
        and first["ended"]
        and first["interventions"] == ended["interventions"]
    )
    assert all(not episode["ended"] for episode in rest)
    loaded = load_session_transitions(tmp_path / "session")  # what `striata train --demos` reads
    assert len(loaded["actions"]) == sum(episode["length"] for episode in [first, *rest])
    assert int(loaded["intervention"].sum()) == sum(episode["interventions"] for episode in [first, *rest])


def test_a_pause_far_from_the_default_pose_goes_back_at_the_interpolations_speed_then_resumes(
    gantry_bridge, g1_policy: Path
) -> None:
    """A pause while the person holds the left shoulder's yaw at its limit: hold starts from where the robot
    is (not the default pose, which the bridge's ramp would reach at 25 rad/s), and the policy, unpaused,
    waits until every joint is within the start tolerance of its default pose. The G1 stays on its gantry
    throughout (a session on a gantry; on the floor the yanked arm drops the standing policy's G1, and a
    fallen G1 cannot reach its default pose)."""
    server, sim, endpoint = gantry_bridge
    metadata = read_metadata(g1_policy)
    names = metadata.joint_names
    default = np.asarray(metadata.default_joint_pos)
    port = free_port()
    log = io.StringIO()
    config = ControllerConfig(
        policy=g1_policy,
        robot=endpoint,
        keys=False,
        interpolate_s=1.0,
        sequence="interpolate@0.1,policy@0.5",
        duration_s=30.0,
        intervene=f"tcp://127.0.0.1:{port}",
        intervene_action_limit=10.0,
    )
    controller = Controller(config, log=log)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(controller.run()), daemon=True)
    thread.start()
    console = Console(f"tcp://127.0.0.1:{port}")
    robot_shoulder = sim.joint_names.index("left_shoulder_yaw_joint")
    try:
        console.send("hello", client="test")
        console.wait_for("welcome")
        console.send("watch", env=0)
        console.wait_for("step", timeout_s=15.0)
        console.send("takeover", env=0)
        assert console.wait_for("control")["controlled"] is True
        action = np.zeros(29)
        action[names.index("left_shoulder_yaw_joint")] = 10.0  # far past the joint's upper limit
        console.drive(action.tolist(), 1.5)
        shoulder_default = default[names.index("left_shoulder_yaw_joint")]
        assert sim.applied is not None
        where = sim.applied.q_target[robot_shoulder]  # toward its limit, as far as the bridge lets it
        away = abs(shoulder_default - where)
        assert away > 2.0, where

        console.send("pause", paused=True)
        deadline = time.monotonic() + 5
        while server.status()["phase"] != "hold" and time.monotonic() < deadline:
            console.pump(0.01)
        first_hold = server.latest_command()
        assert first_hold is not None and first_hold.phase == "hold"
        assert abs(first_hold.q_target[robot_shoulder] - where) < 0.5 * away  # near where it was
        console.send("pause", paused=False)
        console.send("handback", env=0)
        deadline = time.monotonic() + 10
        while server.status()["phase"] != "policy" and time.monotonic() < deadline:
            console.send("ping")  # a console silent for 2 s is dropped (INTERVENTION.md)
            console.pump(0.2)
        assert server.status()["phase"] == "policy", log.getvalue()  # the policy runs again
    finally:
        console.close()
        controller.events.put("quit")
        thread.join(timeout=15)
    assert not thread.is_alive()
    assert [phase for _, phase in result["phases"]][-3:] == ["policy", "hold", "policy"]
    assert "policy waits: left_shoulder_yaw_joint" in log.getvalue(), log.getvalue()


def test_intervene_address_must_be_loopback_unless_allowed(g1_policy: Path) -> None:
    from striata.cli import app

    result = CliRunner().invoke(
        app, ["deploy", "--policy", str(g1_policy), "--no-keys", "--intervene", "tcp://0.0.0.0:5999"]
    )
    assert result.exit_code == 2, result.output
    assert "beyond loopback; add --intervene-allow-remote" in result.output
    result = CliRunner().invoke(app, ["deploy", "--policy", str(g1_policy), "--intervene", "udp://x"])
    assert result.exit_code == 2 and "expected tcp://HOST:PORT" in result.output


def _write_video(path: Path, frames: int = 30) -> None:
    """An mp4 whose frames go from black to white: a recorded view standing in for a camera."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), int(255 * i / (frames - 1)), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_the_console_sees_the_robot_through_a_camera(bridge, g1_policy: Path, tmp_path: Path) -> None:
    """`--intervene-camera`: frames of an OpenCV source (here a video file, looped) reach the watcher."""
    from PIL import Image

    _, _, endpoint = bridge
    video = tmp_path / "view.mp4"
    _write_video(video)
    port = free_port()
    config = ControllerConfig(
        policy=g1_policy, robot=endpoint, keys=False, interpolate_s=0.3, duration_s=4.0,
        sequence="interpolate@0.1,policy@0.5", intervene=f"tcp://127.0.0.1:{port}",
        intervene_camera=str(video),
    )  # fmt: skip
    controller = Controller(config, log=io.StringIO())
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    console = Console(f"tcp://127.0.0.1:{port}")
    try:
        console.send("hello", client="test")
        assert console.wait_for("welcome")["cameras"] == ["camera"]
        console.send("watch", env=0, camera="camera", fps=20)
        frames = [console.wait_for("frame", timeout_s=10.0) for _ in range(1)]
        console.pump(1.5)
        frames += [m for m in console.messages if m["type"] == "frame"]
        images = [np.asarray(Image.open(io.BytesIO(f["jpeg"]))) for f in frames]
        assert all(image.shape == (120, 160, 3) for image in images)
        assert len(frames) >= 10  # ~20 per second asked for
        assert len({int(image.mean()) // 8 for image in images}) > 2  # the view moves on
    finally:
        console.close()
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_a_camera_that_cannot_be_opened_is_one_line(g1_policy: Path, tmp_path: Path) -> None:
    from striata.cli import app

    result = CliRunner().invoke(
        app,
        ["deploy", "--policy", str(g1_policy), "--robot", "tcp://127.0.0.1:1", "--no-keys",
         "--intervene", "tcp://127.0.0.1:*", "--intervene-camera", str(tmp_path / "missing.mp4")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--camera" in result.output and "missing.mp4" in result.output
