"""A deployed robot's intervention port: `striata intervene --job tcp://HOST:PORT` takes over a robot under
`striata deploy --intervene tcp://HOST:PORT` the way it takes over a sim env of a training job.

The port is ``striata.common.intervention_port.InterventionPort`` with one env (index 0, the robot), speaking
actors/INTERVENTION.md unchanged; it answers its clients from a thread of its own, so a console is
answered whatever the control loop is doing. The controller owns a ``RobotHumanLoop`` and calls it from
its control loop without ever blocking: ``poll`` once per control step (it sends the camera's frames),
``begin`` when the policy phase starts, ``policy_step`` on each policy step, ``end`` when the phase is
left. What it means on a robot:

- takeover: in the policy phase the person's action replaces the policy's, in the policy's action space
  (target = default pose + action_scale * action), and goes to the bridge as an ordinary command, so the
  bridge's safety (soft joint limits, target-rate and torque limits, watchdog, e-stop) applies to it as to
  the policy. Actions are clipped to +-``intervene_action_limit``; a stale one (older than
  ``action_timeout_s``) is replaced by zeros, the default pose. A takeover outside the policy phase is
  accepted and waits: the phase's own targets apply until the policy phase starts.
- handback, or the controlling client going silent: the policy acts again from the next step.
- pause: the controller leaves the policy phase for hold (the default pose); resume starts the policy
  again (from the start of its reference, as the policy key does). A pause lasts until resumed or until
  the pausing client goes away; ``max_pause_s`` does not apply (holding the default pose needs no budget).
- label / reset: a robot cannot be reset. A label ends the *recorded* episode on that step (the step
  message and the recording carry it), a reset ends it without one; the robot goes on. Outside the policy
  phase there is no episode: both are ignored (logged).
- episodes: a stretch of the policy phase, cut by labels and resets, numbered from 0. ``step`` messages
  go to watchers one control step late (their ``next_obs`` is the next step's observation); reward and
  return are 0 and ``progress`` null (no reward model on a robot).
- frames: a robot has no simulator camera. With ``intervene_camera`` (``--intervene-camera 0``, a
  video file or a stream URL; ``striata.deploy.camera``) the console sees that camera as ``camera``; without,
  the welcome offers one camera name, ``none``, that never sends a frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from striata.common.intervention_port import (
    LABEL_NONE,
    LABEL_SUCCESS,
    LOOPBACK_HOSTS,
    HilConfig,
    InterventionPort,
    PortInfo,
)
from striata.deploy.camera import CameraStream
from striata.learner.export import PolicyMetadata

NO_CAMERA = "none"
CAMERA = "camera"
ROBOT_ENV = 0
_ADDRESS = re.compile(r"^tcp://(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5}|\*)$")


class InterventionAddressError(ValueError):
    """An --intervene address that cannot be served."""


def parse_address(address: str) -> tuple[str, int | None]:
    """``tcp://HOST:PORT`` -> (host, port); PORT ``*`` -> None (a free port, printed at start)."""
    match = _ADDRESS.match(address)
    if match is None:
        raise InterventionAddressError(f"--intervene {address!r}: expected tcp://HOST:PORT (PORT may be *)")
    host = match["host"].strip("[]")
    if match["port"] == "*":
        return host, None
    port = int(match["port"])
    if not 0 < port < 65536:
        raise InterventionAddressError(f"--intervene {address!r}: port {port} is outside 1..65535")
    return host, port


@dataclass
class _Pending:
    """A policy step whose ``step`` message waits for the next observation."""

    episode: int
    t: int
    obs: np.ndarray
    action: np.ndarray
    intervened: bool
    label: int
    last: bool  # the episode ends with this step (a label, a reset, the policy phase left)


class RobotHumanLoop:
    """The controller's side of the robot's intervention port (see the module docstring)."""

    def __init__(
        self,
        cfg: HilConfig,
        port: int | None,
        metadata: PolicyMetadata,
        action_limit: float,
        say: Callable[[str], None],
        camera: CameraStream | None = None,
    ) -> None:
        a = metadata.action_dim
        view = NO_CAMERA if camera is None else CAMERA
        info = PortInfo(
            actor_id=0, task=metadata.task, task_text=f"{metadata.robot} under striata deploy",
            num_envs=1, action_dim=a, action_low=(-action_limit,) * a, action_high=(action_limit,) * a,
            control_dt=float(metadata.control_dt), cameras=(view,),
        )  # fmt: skip
        self.camera = camera
        try:
            self.port = InterventionPort(cfg, info, view, port=port)
        except zmq.ZMQError as exc:
            where = f"tcp://{cfg.host}:{'*' if port is None else port}"
            raise InterventionAddressError(f"--intervene {where}: cannot bind ({exc})") from None
        self.endpoint = self.port.endpoint
        self.say = say
        self.episode = -1  # -1: no policy phase under way
        self._next_episode = 0
        self.t = 0
        self.interventions = 0
        self.takeovers = 0
        self._acting = False
        self._pending: _Pending | None = None
        # Over the whole run, for the controller's summary.
        self.totals = {"intervention_steps": 0, "takeovers": 0, "success": 0, "failure": 0, "resets": 0}

    # ----------------------------------------------------------------- the control loop's calls
    def poll(self) -> None:
        """Send the camera's latest frame where one is due (the port's thread handles what arrives)."""
        frame = self.camera.latest() if self.camera is not None and self.port.watched() else None
        if frame is not None:
            step = np.array([max(self.t, 0)])
            self.port.send_frames(lambda _env, _camera: frame, step, np.array([max(self.episode, 0)]))

    @property
    def paused(self) -> bool:
        return self.port.paused

    @property
    def in_episode(self) -> bool:
        return self.episode >= 0

    def begin(self) -> None:
        """The policy phase starts: a new episode."""
        self._start_episode()

    def idle(self) -> None:
        """A step outside the policy phase: labels and resets have no episode to end."""
        for label in self.port.take_ends().values():
            what = "reset" if label == LABEL_NONE else "label"
            self.say(f"intervention: {what} ignored outside the policy phase (a robot cannot be reset)")

    def policy_step(self, obs: np.ndarray, policy_action: np.ndarray) -> tuple[np.ndarray, bool, int]:
        """One policy step: (the action to execute, whether a person gave it, this step's label).

        ``obs`` [obs_dim] is the observation the action is for, and the previous step's ``next_obs``.
        """
        if self._flush(obs):
            self._start_episode()
        ends = self.port.take_ends()
        label = ends.get(ROBOT_ENV, LABEL_NONE)
        actions, controlled = self.port.actions(policy_action[None])
        action, intervened = np.asarray(actions[0], dtype=np.float64), bool(controlled[0])
        took_over = intervened and not self._acting
        self.interventions += intervened
        self.takeovers += took_over
        self._acting = intervened
        self.totals["intervention_steps"] += intervened
        self.totals["takeovers"] += took_over
        if ends:
            self.totals[{LABEL_SUCCESS: "success", LABEL_NONE: "resets"}.get(label, "failure")] += 1
        self._pending = _Pending(
            self.episode, self.t, obs.copy(), action.copy(), intervened, label, last=bool(ends)
        )
        self.t += 1
        return action, intervened, label

    def end(self, final_obs: np.ndarray) -> None:
        """The policy phase was left (hold, damping, the run's end): the episode ends with its last step."""
        if self._pending is not None:
            self._pending.last = True
            self._flush(final_obs)
        self.episode = -1

    def close(self) -> None:
        self.port.close()
        if self.camera is not None:
            self.camera.close()

    # ----------------------------------------------------------------- messages
    def _start_episode(self) -> None:
        self.episode = self._next_episode
        self._next_episode += 1
        self.t = self.interventions = self.takeovers = 0
        self._acting = False

    def _flush(self, next_obs: np.ndarray) -> bool:
        """Send the pending step with its next observation, and its episode's end if it was the last
        step; returns whether an episode ended."""
        p, self._pending = self._pending, None
        if p is None:
            return False
        success = p.label == LABEL_SUCCESS
        if p.label != LABEL_NONE:
            self.say(f"intervention: episode {p.episode} labelled {'success' if success else 'failure'}")
        if not self.port.watched():
            return p.last
        self.port.send_to_watchers(ROBOT_ENV, {
            "type": "step", "env": ROBOT_ENV, "episode": p.episode, "t": p.t, "action": p.action.tolist(),
            "reward": 0.0, "return": 0.0, "terminated": success, "truncated": p.last and not success,
            "success": success, "intervention": p.intervened, "label": p.label, "progress": None,
            "obs": {"state": np.asarray(p.obs, dtype=np.float64).tolist()},
            "next_obs": {"state": np.asarray(next_obs, dtype=np.float64).ravel().tolist()},
        })  # fmt: skip
        if p.last:
            self.port.send_to_watchers(ROBOT_ENV, {
                "type": "episode_end", "env": ROBOT_ENV, "episode": p.episode, "return": 0.0,
                "length": p.t + 1, "success": success, "label": p.label,
                "interventions": self.interventions, "takeovers": self.takeovers,
            })  # fmt: skip
        return p.last


def check_address(address: str, allow_remote: bool) -> tuple[str, int | None]:
    """``parse_address``, and a host beyond loopback only with ``allow_remote``."""
    host, port = parse_address(address)
    if host not in LOOPBACK_HOSTS and not allow_remote:
        raise InterventionAddressError(
            f"--intervene {address}: {host} is beyond loopback; add --intervene-allow-remote (and Curve keys)"
        )
    return host, port


def hil_settings(
    address: str, allow_remote: bool, curve_secret: Path | None, curve_clients: Path | None
) -> tuple[HilConfig, int | None]:
    """The port's settings for ``--intervene ADDRESS``: (``HilConfig``, port or None for a free one)."""
    host, port = check_address(address, allow_remote)
    if (curve_secret is None) != (curve_clients is None):
        raise InterventionAddressError(
            "--intervene-curve-secret and --intervene-curve-clients are given together or not at all"
        )
    cfg = HilConfig(
        enabled=True, host=host, allow_remote=allow_remote, curve_secret=curve_secret,
        curve_clients=curve_clients,
    )  # fmt: skip
    return cfg, port
