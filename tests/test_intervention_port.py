"""The intervention port (actors/INTERVENTION.md) on real parts: a panda_pick ``EnvActor`` built in this
process (no Ray) driven by a ZMQ DEALER client, and one `striata train` run with ``hil.enabled``
driven through its ``hil.json``.

Every wait is bounded; sockets bind 127.0.0.1 and are closed by the tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
import zmq.auth
from PIL import Image

from striata.actors.env_actor import ActorSpec, EnvActor
from striata.common.curve import CurveClient
from striata.common.intervention_port import MAX_MESSAGE_BYTES, HilConfig, InterventionPort, PortInfo
from striata.learner.chunk import validate_chunk
from striata.learner.config import PPOConfig, SACConfig

REPO = Path(__file__).resolve().parents[1]
CHUNK = 5


class Client:
    """A console's side of the port: a DEALER socket speaking msgpack maps."""

    def __init__(self, endpoint: str, curve: CurveClient | None = None) -> None:
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self.sock)
        self.sock.connect(endpoint)
        self.inbox: list[dict] = []

    def send(self, **fields) -> None:
        self.sock.send(msgpack.packb({"v": 1, **fields}, use_bin_type=True))

    def receive(self, timeout_s: float = 0.0) -> list[dict]:
        """Messages that arrived (waiting up to ``timeout_s`` for the first); also kept in ``inbox``."""
        got = []
        wait_ms = int(timeout_s * 1000)
        # After the first message, read on until the socket stays quiet for 50 ms.
        while self.sock.poll(wait_ms):
            got.append(msgpack.unpackb(self.sock.recv(), raw=False))
            wait_ms = 50
        self.inbox += got
        return got

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.inbox if m["type"] == kind]

    def close(self) -> None:
        self.sock.close(linger=0)
        self.context.term()


def settle(client: Client, timeout_s: float = 5.0) -> None:
    """Wait until the port has handled everything ``client`` sent so far: it answers in order, so the
    pong to a ping sent now comes after the replies to everything before it."""
    client.send(type="ping")
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if any(m["type"] == "pong" for m in client.receive(left)):
            return
    pytest.fail("the port did not answer a ping")


def make_actor(algo: str = "sac", envs: int = 3, **hil) -> EnvActor:
    algo_config = (SACConfig() if algo == "sac" else PPOConfig()).model_dump(mode="json")
    spec = ActorSpec(
        actor_id=0, task="panda_pick", task_config={"reward": "dense"}, num_envs=envs, chunk_length=CHUNK,
        algo=algo, algo_config=algo_config, seed=0, hil=HilConfig(enabled=True, **hil),
    )  # fmt: skip
    return EnvActor(spec, store=None)


@pytest.fixture
def opened():
    """Actors and clients a test opens, closed after it."""
    actors: list[EnvActor] = []
    clients: list[Client] = []

    def actor(**kwargs) -> EnvActor:
        actors.append(make_actor(**kwargs))
        return actors[-1]

    def client(endpoint: str) -> Client:
        clients.append(Client(endpoint))
        return clients[-1]

    yield actor, client
    for c in clients:
        c.close()
    for a in actors:
        a.close()


def test_hello_watch_sends_steps_and_jpeg_frames(opened):
    new_actor, new_client = opened
    # This client does not ping while the test steps the actor (the first frame sets up GL: seconds).
    actor = new_actor(client_timeout_s=30.0)
    client = new_client(actor.hil.port.endpoint)
    client.send(type="hello", client="test")
    client.send(type="watch", env=1, fps=60)
    settle(client)
    welcome = client.of_type("welcome")[0]
    assert welcome["task"] == "panda_pick" and welcome["num_envs"] == 3 and welcome["action_dim"] == 4
    assert welcome["action_low"] == [-1.0] * 4 and welcome["action_high"] == [1.0] * 4
    assert welcome["control_dt"] == pytest.approx(0.1) and welcome["default_camera"] == "front"
    assert "front" in welcome["cameras"]

    result = actor.step_chunk()
    client.receive(1.0)
    steps = client.of_type("step")
    assert [m["env"] for m in steps] == [1] * CHUNK
    assert [m["t"] for m in steps] == list(range(CHUNK))
    np.testing.assert_allclose([m["action"] for m in steps], result.chunk["actions"][:, 1], rtol=1e-6)
    np.testing.assert_allclose(steps[0]["obs"]["state"], result.chunk["obs"][0, 1], rtol=1e-5)
    np.testing.assert_allclose(steps[0]["next_obs"]["state"], result.chunk["obs"][1, 1], rtol=1e-5)
    assert not any(m["intervention"] for m in steps) and all(m["label"] == -1 for m in steps)
    assert all(0.0 <= m["progress"] <= 1.0 for m in steps)  # panda_pick's own progress (no reward model)
    frames = client.of_type("frame")
    assert frames and all(f["env"] == 1 and f["camera"] == "front" for f in frames)
    images = [np.asarray(Image.open(io.BytesIO(f["jpeg"]))) for f in frames]
    assert all(image.shape == (120, 160, 3) for image in images)
    assert images[0].std() > 5  # a rendered scene, not a blank frame

    client.send(type="unwatch")
    settle(client)
    client.inbox.clear()
    actor.step_chunk()
    client.receive(0.2)
    assert not client.of_type("step") and not client.of_type("frame")


def test_takeover_actions_reach_the_chunk_flagged_and_paced(opened):
    new_actor, new_client = opened
    actor = new_actor(action_timeout_s=30.0, client_timeout_s=30.0)
    client = new_client(actor.hil.port.endpoint)
    other = new_client(actor.hil.port.endpoint)
    client.send(type="watch", env=1)
    client.send(type="takeover", env=1)
    client.send(type="action", env=1, action=[0.5, -0.25, 1.0, 2.0])  # 2.0 is clipped to 1.0
    settle(client)
    assert client.of_type("control") == [{"v": 1, "type": "control", "env": 1, "controlled": True}]
    other.send(type="takeover", env=1)
    other.send(type="action", env=1, action=[0.0, 0.0, 0.0, 0.0])
    other.send(type="label", env=1, success=True)
    settle(other)
    assert [m["reason"] for m in other.of_type("error")] == ["busy", "not_controller", "busy"]

    start = time.monotonic()
    result = actor.step_chunk()
    elapsed = time.monotonic() - start
    chunk = result.chunk
    validate_chunk(chunk)
    np.testing.assert_allclose(chunk["actions"][:, 1], np.tile([0.5, -0.25, 1.0, 1.0], (CHUNK, 1)))
    assert chunk["intervention"][:, 1].all() and not chunk["intervention"][:, [0, 2]].any()
    assert not np.allclose(chunk["actions"][:, 0], [0.5, -0.25, 1.0, 1.0])
    assert result.stats.intervention_steps == CHUNK
    assert (chunk["human_label"] == -1).all()
    # Taken over: real time, control_dt = 0.1 s a step (the first step starts at once).
    assert elapsed >= (CHUNK - 1) * 0.1 * 0.9
    client.receive(1.0)
    assert all(m["intervention"] for m in client.of_type("step"))

    client.send(type="handback", env=1)
    settle(client)
    assert client.of_type("control")[-1]["controlled"] is False
    assert not actor.step_chunk().chunk["intervention"].any()


def test_a_stale_action_becomes_the_neutral_one(opened):
    new_actor, new_client = opened
    actor = new_actor(action_timeout_s=0.05, client_timeout_s=30.0)
    client = new_client(actor.hil.port.endpoint)
    client.send(type="takeover", env=0)
    client.send(type="action", env=0, action=[1.0, 1.0, 1.0, 1.0])
    settle(client)
    time.sleep(0.1)
    chunk = actor.step_chunk().chunk
    assert chunk["intervention"][:, 0].all()
    np.testing.assert_array_equal(chunk["actions"][:, 0], np.zeros((CHUNK, 4)))


def test_labels_end_episodes_with_the_label(opened):
    new_actor, new_client = opened
    actor = new_actor(action_timeout_s=30.0, client_timeout_s=30.0)
    client = new_client(actor.hil.port.endpoint)
    client.send(type="watch", env=0)
    client.send(type="takeover", env=0)
    client.send(type="label", env=0, success=True)
    client.send(type="label", env=2, success=False)
    settle(client)
    result = actor.step_chunk()
    chunk, stats = result.chunk, result.stats
    validate_chunk(chunk)
    assert chunk["terminated"][0, 0] and not chunk["truncated"][0, 0] and chunk["human_label"][0, 0] == 1
    assert chunk["truncated"][0, 2] and not chunk["terminated"][0, 2] and chunk["human_label"][0, 2] == 0
    assert (chunk["human_label"][1:] == -1).all() and (chunk["human_label"][:, 1] == -1).all()
    assert chunk["final_obs"].shape[0] == chunk["truncated"].sum()
    # Episodes are reported in env order of the step they ended: env 0 (success), env 2 (failure).
    assert stats.episode_successes == [True, False]
    assert stats.episode_lengths == [1, 1]
    assert stats.episode_interventions == [1, 0] and stats.episode_takeovers == [1, 0]
    assert stats.human_labels == {"success": 1, "failure": 1}
    client.receive(1.0)
    ends = client.of_type("episode_end")
    assert len(ends) == 1 and ends[0]["env"] == 0 and ends[0]["label"] == 1 and ends[0]["success"] is True
    assert ends[0]["interventions"] == 1 and ends[0]["takeovers"] == 1 and ends[0]["length"] == 1
    steps = client.of_type("step")
    assert steps[0]["terminated"] and steps[0]["label"] == 1 and steps[0]["success"]
    assert steps[1]["episode"] != steps[0]["episode"] and steps[1]["t"] == 0


def test_a_silent_client_loses_its_takeover(opened):
    new_actor, new_client = opened
    actor = new_actor(action_timeout_s=30.0, client_timeout_s=0.5)
    silent = new_client(actor.hil.port.endpoint)
    alive = new_client(actor.hil.port.endpoint)
    silent.send(type="takeover", env=1)
    silent.send(type="watch", env=1)
    settle(silent)
    alive.send(type="takeover", env=2)
    settle(alive)
    quiet_until = time.monotonic() + 0.7
    while time.monotonic() < quiet_until:  # only the alive client keeps pinging
        settle(alive)
        time.sleep(0.1)
    silent.inbox.clear()
    # Two steps at real-time pace stay within the alive client's timeout.
    actor.spec = dataclasses.replace(actor.spec, chunk_length=2)
    chunk = actor.step_chunk().chunk
    assert not chunk["intervention"][:, 1].any()
    assert chunk["intervention"][:, 2].all()
    silent.receive(0.2)
    assert not silent.of_type("step")  # its watch ended with it
    # Once gone, the env can be taken over by another client.
    alive.send(type="takeover", env=1)
    settle(alive)
    assert alive.of_type("control")[-1] == {"v": 1, "type": "control", "env": 1, "controlled": True}


def test_garbage_gets_errors_and_the_actor_keeps_stepping(opened):
    new_actor, new_client = opened
    actor = new_actor(client_timeout_s=30.0)
    client = new_client(actor.hil.port.endpoint)
    bad = [
        (b"\xc1", "bad_message"),
        (msgpack.packb([1, 2, 3]), "bad_message"),
        (msgpack.packb({"v": 2, "type": "ping"}), "bad_version"),
        (msgpack.packb({"type": "ping"}), "bad_version"),
        (msgpack.packb({"v": 1, "type": "fly"}), "unknown_type"),
        (msgpack.packb({"v": 1, "type": "takeover", "env": 99}), "bad_env"),
        (msgpack.packb({"v": 1, "type": "takeover", "env": -1}), "bad_env"),
        (msgpack.packb({"v": 1, "type": "takeover", "env": "1"}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "takeover", "env": True}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "action", "env": 0, "action": [float("nan"), 0, 0, 0]}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "action", "env": 0, "action": [float("inf"), 0, 0, 0]}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "action", "env": 0, "action": [0, 0, 0]}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "action", "env": 0, "action": ["a", 0, 0, 0]}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "action", "env": 0, "action": [0, 0, 0, 0]}), "not_controller"),
        (msgpack.packb({"v": 1, "type": "watch", "env": 0, "fps": -1}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "watch", "env": 0, "camera": "nope"}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "label", "env": 0, "success": "yes"}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "pause", "paused": 1}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "hello", "client": "x" * 200}), "bad_field"),
        (msgpack.packb({"v": 1, "type": "ping", "pad": b"\0" * (MAX_MESSAGE_BYTES + 1)}), "too_large"),
    ]
    for payload, _ in bad:
        client.sock.send(payload)
    client.sock.send_multipart([msgpack.packb({"v": 1, "type": "ping"}), b"extra"])
    settle(client)
    reasons = [m["reason"] for m in client.of_type("error")]
    assert reasons == [reason for _, reason in bad] + ["bad_message"]
    assert all(isinstance(m["detail"], str) and m["detail"] for m in client.of_type("error"))

    result = actor.step_chunk()
    assert result.stats.env_steps == 3 * CHUNK
    assert not result.chunk["intervention"].any()
    client.send(type="hello", client="still here")
    settle(client)
    assert client.of_type("welcome")


def test_ppo_stores_the_log_prob_of_the_human_action(opened):
    new_actor, new_client = opened
    actor = new_actor(algo="ppo", action_timeout_s=30.0, client_timeout_s=30.0)
    client = new_client(actor.hil.port.endpoint)
    client.send(type="takeover", env=0)
    client.send(type="action", env=0, action=[0.9, -0.9, 0.9, -0.9])
    settle(client)
    chunk = actor.step_chunk().chunk
    validate_chunk(chunk, require=("log_prob", "value"))
    assert chunk["intervention"][:, 0].all()
    for t in range(CHUNK):
        expected = actor.policy.log_prob(chunk["obs"][t], chunk["actions"][t])
        np.testing.assert_allclose(chunk["log_prob"][t, 0], expected[0], rtol=1e-5)
    assert np.isfinite(chunk["log_prob"]).all()


def test_pause_holds_the_actor_for_at_most_max_pause_s(opened):
    new_actor, new_client = opened
    actor = new_actor(max_pause_s=0.5, client_timeout_s=30.0)
    client = new_client(actor.hil.port.endpoint)
    client.send(type="pause", paused=True)
    settle(client)
    start = time.monotonic()
    actor.step_chunk()
    assert 0.45 <= time.monotonic() - start < 5.0
    client.receive(0.5)
    paused = client.of_type("paused")
    assert paused[0]["paused"] is True
    assert paused[-1] == {"v": 1, "type": "paused", "paused": False, "reason": "max_pause_s"}


def test_curve_keys_admit_listed_consoles_only(tmp_path):
    for name in ("port", "console", "stranger"):
        zmq.auth.create_certificates(tmp_path, name)
    listed = tmp_path / "consoles"
    listed.mkdir()
    (listed / "console.key").write_bytes((tmp_path / "console.key").read_bytes())
    cfg = HilConfig(enabled=True, curve_secret=tmp_path / "port.key_secret", curve_clients=listed)
    info = PortInfo(0, "panda_pick", "lift the cube", 1, 4, (-1.0,) * 4, (1.0,) * 4, 0.1, ("front",))
    port = InterventionPort(cfg, info)
    clients = [
        Client(port.endpoint, CurveClient(tmp_path / f"{name}.key_secret", tmp_path / "port.key"))
        for name in ("console", "stranger")
    ]
    try:
        for client in clients:
            client.send(type="hello", client="curve")
        assert clients[0].receive(5.0)[0]["task_text"] == "lift the cube"
        assert not clients[1].receive(0.5)  # an unlisted key never gets through
    finally:
        for client in clients:
            client.close()
        port.close()


# ----------------------------------------------------------------- through `striata train`
TRAIN_ARGS = [
    "configs/panda_pick.yaml",
    *("--set", "hil.enabled=true"),
    *("--set", "actors.num_actors=2"),
    *("--set", "actors.envs_per_actor=2"),
    *("--set", "actors.chunk_length=5"),
    *("--set", "actors.num_cpus=0.5"),
    *("--set", "learner.learning_starts=100000"),
    *("--set", "eval.every_s=600"),
    *("--set", "eval.episodes=2"),
    *("--set", "eval.num_envs=2"),
    *("--set", "task_config.episode_length_s=3"),
    *("--set", "max_minutes=3"),
]


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}\n{log.read_text()[-3000:]}")


def _received(client: Client, kind: str, **fields) -> list[dict]:
    """Messages of ``kind`` with ``fields`` received so far (after reading what is waiting)."""
    client.receive(0.1)
    return [m for m in client.of_type(kind) if all(m.get(k) == v for k, v in fields.items())]


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _start_train(tmp_path: Path, log: Path) -> subprocess.Popen:
    """The small hil job of these tests, in its own process group (the test kills the group)."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "striata", "train", *TRAIN_ARGS, "--runs", str(tmp_path / "runs")],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


def test_train_publishes_ports_and_counts_what_a_person_did(tmp_path):
    log = tmp_path / "train.log"
    proc = _start_train(tmp_path, log)
    client = None
    try:
        hil = _wait_for(
            lambda: next((_json(p) for p in (tmp_path / "runs").glob("*/hil.json")), None),
            120, "hil.json", proc, log,
        )  # fmt: skip
        run_dir = next((tmp_path / "runs").glob("*"))
        assert hil["v"] == 1 and hil["task"] == "panda_pick" and hil["finished"] is False
        assert sorted(a["actor_id"] for a in hil["actors"]) == [0, 1]
        assert all(a["endpoint"].startswith("tcp://127.0.0.1:") and a["num_envs"] == 2 for a in hil["actors"])

        client = Client(hil["actors"][0]["endpoint"])
        client.send(type="hello", client="test")
        client.send(type="watch", env=0)
        client.send(type="takeover", env=0)
        _wait_for(lambda: _received(client, "control", controlled=True), 30, "control", proc, log)
        # Drive for a while at 20 Hz (the actor steps at 10 Hz while taken over), then label success.
        target = 15
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            client.send(type="action", env=0, action=[0.0, 0.0, -0.5, 1.0])
            client.receive(0.05)
            if sum(m["intervention"] for m in client.of_type("step")) >= target:
                break
        client.send(type="label", env=0, success=True)
        _wait_for(
            lambda: _received(client, "episode_end", label=1), 30, "the labelled episode's end", proc, log
        )
        client.send(type="handback", env=0)
        client.send(type="bye")
        taken = sum(1 for m in client.of_type("step") if m["intervention"])
        assert taken >= target
        assert np.asarray(Image.open(io.BytesIO(client.of_type("frame")[-1]["jpeg"]))).shape == (120, 160, 3)
        labelled = [m for m in client.of_type("step") if m["label"] == 1]
        assert len(labelled) == 1 and labelled[0]["terminated"] and labelled[0]["intervention"]
        # The learner has every flagged step once the chunks holding them came in.
        _wait_for(
            lambda: (s := _json(run_dir / "status.json")) and s["hil"]["intervention_transitions"] >= taken,
            60, "the learner to receive the intervention transitions", proc, log,
        )  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["intervention_transitions"] >= taken
    assert summary["human_labels"] == {"success": 1, "failure": 0}
    assert summary["demo_size"] == summary["intervention_transitions"]  # SAC copied each into the demo buffer
    assert json.loads((run_dir / "hil.json").read_text())["finished"] is True


@pytest.mark.slow
def test_a_replaced_actor_is_published_with_its_new_port(tmp_path):
    log = tmp_path / "train.log"
    proc = _start_train(tmp_path, log)
    try:
        hil = _wait_for(
            lambda: next((_json(p) for p in (tmp_path / "runs").glob("*/hil.json")), None),
            120, "hil.json", proc, log,
        )  # fmt: skip
        run_dir = next((tmp_path / "runs").glob("*"))
        victim = next(a for a in hil["actors"] if a["actor_id"] == 1)
        os.kill(victim["pid"], signal.SIGKILL)
        replaced = _wait_for(
            lambda: next(
                (a for a in (_json(run_dir / "hil.json") or {"actors": []})["actors"]
                 if a["actor_id"] == 1 and a["pid"] != victim["pid"]),
                None,
            ),
            120, "hil.json to list the replacement", proc, log,
        )  # fmt: skip
        assert replaced["endpoint"] != victim["endpoint"]
        client = Client(replaced["endpoint"])
        try:
            client.send(type="hello", client="test")
            assert (
                _wait_for(lambda: _received(client, "welcome"), 30, "welcome", proc, log)[0]["actor_id"] == 1
            )
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert json.loads((run_dir / "hil.json").read_text())["finished"] is True
