"""`striata intervene`: the human-in-the-loop web console for a running job (actors/console)."""

from __future__ import annotations

import logging
import socket
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from striata.actors.console.leader_arm import LeaderArm

console = Console(stderr=True)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class SessionFormat(StrEnum):
    """LeRobotDataset formats a session is written in (actors/SESSIONS.md)."""

    v3_0 = "v3.0"  # LeRobot 0.4 and later
    v2_1 = "v2.1"  # LeRobot before 0.4


def register(app: typer.Typer) -> None:
    """Add this part's command to the CLI."""
    app.command("intervene")(intervene)


def intervene(
    job: Annotated[
        str,
        typer.Option(
            "--job", help="run folder of `striata train` (with hil on), or tcp://HOST:PORT of a port"
        ),
    ],
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port of the console")] = 8765,
    host: Annotated[
        str, typer.Option(help="interface to serve on; anything but 127.0.0.1 lets other machines in")
    ] = "127.0.0.1",
    sessions: Annotated[
        Path | None,
        typer.Option(help="session folder to record into; default: RUN_DIR/sessions (none for an address)"),
    ] = None,
    session_format: Annotated[
        SessionFormat,
        typer.Option(help="LeRobotDataset format of the sessions: v3.0 (LeRobot 0.4+) or v2.1 (older)"),
    ] = SessionFormat.v3_0,
    actor: Annotated[int, typer.Option(min=0, help="actor to watch first")] = 0,
    env: Annotated[int, typer.Option(min=0, help="env of that actor to watch first")] = 0,
    camera: Annotated[str | None, typer.Option(help="camera to watch; default: the task's first")] = None,
    fps: Annotated[
        float | None, typer.Option(min=0.5, help="frames per second to ask for; default: the control rate")
    ] = None,
    spacemouse: Annotated[
        bool, typer.Option(help="use a SpaceMouse on this machine when one is plugged in")
    ] = True,
    leader_arm: Annotated[
        str | None,
        typer.Option(
            help="serial port of an SO-101 leader arm (read only, torque off) that drives SO-101 tasks"
        ),
    ] = None,
    leader_config: Annotated[
        Path | None,
        typer.Option(help="the leader's Feetech arm YAML (ids, calibration); default: SO-101"),
    ] = None,
) -> None:
    """Web console: watch an env of a job, take it over by keyboard, gamepad, SpaceMouse or leader arm,
    label episodes."""
    from striata.actors.console.discovery import ConsoleError
    from striata.errors import user_errors

    with user_errors(extra=(ConsoleError,)):
        import uvicorn

        from striata.actors.console.app import create_app
        from striata.actors.console.discovery import open_job
        from striata.actors.console.hub import Hub
        from striata.actors.console.spacemouse import SpaceMouse

        found = open_job(job)
        chosen = found.port(actor)
        if chosen.num_envs is not None and env >= chosen.num_envs:
            raise ConsoleError(f"--env {env}: actor {actor} has envs 0..{chosen.num_envs - 1}")
        _check_free(host, port)
        if sessions is None and found.run_dir is not None:
            sessions = found.run_dir / "sessions"
        device = SpaceMouse.open() if spacemouse else None
        leader = _open_leader(leader_arm, leader_config) if leader_arm is not None else None
        hub = Hub(
            found,
            actor,
            env,
            sessions=sessions,
            session_format=session_format.value,
            camera=camera,
            fps=fps,
            spacemouse=device,
            leader=leader,
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if host not in LOOPBACK:
        console.print(f"warning: serving on {host}: anyone who reaches this port can drive the robot")
    console.print(f"console: http://{host}:{port}/  (job {found.description}, actor {actor}, env {env})")
    if sessions is not None:
        console.print(f"recording sessions into {sessions} (LeRobotDataset {session_format.value})")
    if device is not None:
        console.print(f"SpaceMouse: {device.name}")
    if leader is not None:
        console.print(f"{leader.name} on {leader_arm}: move it to take over")
    uvicorn.run(create_app(hub), host=host, port=port, log_level="warning")


def _open_leader(port: str, config: Path | None) -> LeaderArm:
    """The leader arm on its own Feetech bus (``deploy`` builds the reader: the console may not import it)."""
    from striata.actors.console.discovery import ConsoleError
    from striata.actors.console.leader_arm import LeaderArm
    from striata.deploy.arms.feetech import FeetechArm, FeetechBusError, load_feetech_config

    try:
        arm = FeetechArm(load_feetech_config(config, port=port))
    except FeetechBusError as exc:
        raise ConsoleError(f"--leader-arm {port}: {exc}") from None
    return LeaderArm(arm, period_s=arm.control_period_s)


def _check_free(host: str, port: int) -> None:
    """One clear line for a port in use, instead of the server's log."""
    from striata.actors.console.discovery import ConsoleError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConsoleError(f"--port {port}: cannot serve on {host} ({exc.strerror})") from None
