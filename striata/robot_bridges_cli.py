"""`striata bridge unitree-g1` and `striata bridge arm`: a robot backend inside the deploy bridge server;
`striata twin so101`: a simulated SO-101 servo bus for `striata bridge arm --port` to drive."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from striata.errors import user_errors

if TYPE_CHECKING:
    from striata.deploy.gain_stability import GainLimits
    from striata.deploy.safety import SafetyConfig

SafetyOption = Annotated[
    list[str] | None,
    typer.Option("--safety", help="bridge safety setting key=value, e.g. watchdog_s=0.1 (repeatable)"),
]
EndpointOption = Annotated[str, typer.Option(help="ZMQ endpoint the bridge binds for the controller")]
AllowRemoteOption = Annotated[
    bool, typer.Option("--allow-remote", help="allow binding beyond loopback (then use CurveZMQ keys)")
]
DurationOption = Annotated[float | None, typer.Option(help="stop after this many seconds (default: Ctrl-C)")]
RealtimeOption = Annotated[
    bool, typer.Option(help="ask for SCHED_FIFO scheduling of the loop (needs root or CAP_SYS_NICE)")
]
CpusOption = Annotated[
    list[int] | None,
    typer.Option(
        "--cpu",
        help="run the loop only on this CPU (repeatable): a core kept for it, away from the other loop's",
    ),
]
SpinOption = Annotated[
    bool,
    typer.Option(
        help="poll the socket between ticks instead of sleeping: the lowest round trip, for a loop with a "
        "core of its own (not with --realtime)"
    ),
]


def _checked_settings(safety: list[str] | None, endpoint: str, allow_remote: bool) -> SafetyConfig:
    """The bridge's safety settings and endpoint, checked before any robot is touched (a typo is one
    line at once, not after the connection to the robot)."""
    from striata.deploy.bridge_server import check_endpoint
    from striata.deploy.safety import SafetyConfig
    from striata.overrides import parse_overrides

    check_endpoint(endpoint, allow_remote)
    return SafetyConfig(**parse_overrides(safety or []))


def _serve(
    backend,
    endpoint: str,
    safety: SafetyConfig,
    robot_name: str,
    allow_remote: bool,
    duration_s: float | None,
    realtime: bool,
    spin: bool,
    cpus: list[int] | None = None,
) -> dict:
    """Run the deploy bridge server around ``backend`` until Ctrl-C/SIGTERM; print its counters."""
    from striata.deploy.bridge_server import BridgeServer

    try:
        server = BridgeServer(
            backend,
            endpoint,
            safety,
            robot_name=robot_name,
            allow_remote=allow_remote,
            realtime=realtime,
            spin=spin,
            cpus=cpus,
        )
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        typer.echo(f"{robot_name} bridge on {endpoint}", err=True)
        stats = server.serve(stop=stop, duration_s=duration_s)
    finally:
        backend.close()
    return stats.as_dict()


def _sim_gain_limits(
    sim_model: Path | None, sim_timestep: float | None, state_lag_steps: int, joint_names: tuple[str, ...]
) -> GainLimits | None:
    """The gain bounds of a simulated G1 (None without --sim-model); both options or neither."""
    if sim_model is None and sim_timestep is None:
        return None
    from striata.deploy.gain_stability import UnstableGainsError, gain_limits, load_model
    from striata.envs.robots.g1 import G1

    if sim_model is None or sim_timestep is None or sim_timestep <= 0:
        raise UnstableGainsError(
            "sim_model, sim_timestep: give both (the simulator's MJCF and its physics step > 0 s), or neither"
        )
    model = load_model(sim_model)
    default_pose = dict(zip(G1.joint_names, G1.default_pos, strict=True))
    return gain_limits(
        model,
        sim_timestep,
        joint_names,
        state_lag_steps=state_lag_steps,
        joint_positions=[[default_pose[name] for name in joint_names]],
        model_name=sim_model.name,
    )


def register(bridge_app: typer.Typer, twin_app: typer.Typer) -> None:
    """Add this part's commands to the CLI."""

    @twin_app.command("so101")
    def so101_twin(
        config: Annotated[
            Path | None, typer.Option(help="arm YAML whose ids and calibration to simulate; default: SO-101")
        ] = None,
        cube: Annotated[bool, typer.Option(help="the so101_pick cube on the table")] = True,
        cameras: Annotated[
            str | None,
            typer.Option(help="serve these cameras (front,wrist) as the so101 tasks draw them, over ZMQ"),
        ] = None,
        camera_endpoint: Annotated[
            str, typer.Option(help="where the cameras publish (PORT *: a free one, printed on stderr)")
        ] = "tcp://127.0.0.1:*",
        camera_fps: Annotated[float, typer.Option(min=1, max=120, help="frames a second per camera")] = 30.0,
        image_size: Annotated[int, typer.Option(min=16, max=512, help="frame height and width (px)")] = 64,
        duration: DurationOption = None,
    ) -> None:
        """Serve a simulated SO-101 (MuJoCo) as a Feetech servo bus on a pty; prints the pty's path."""
        import zmq

        from striata.deploy.arms.feetech import FeetechBusError, load_feetech_config
        from striata.deploy.arms.twin import So101Twin, TwinConfigError
        from striata.deploy.arms.twin_cameras import TwinCameraError, TwinCameras

        names = [name.strip() for name in cameras.split(",")] if cameras else []
        served = None
        with user_errors(extra=(FeetechBusError, TwinConfigError, TwinCameraError, zmq.ZMQError)):
            twin = So101Twin(
                load_feetech_config(config), cube=cube, visual_meshes="decimated" if names else "original"
            )
            if names:
                served = TwinCameras(twin, names, camera_endpoint, image_size, camera_fps)
                print(
                    f"cameras {','.join(names)} on {served.endpoint} (zmq+{served.endpoint}/NAME)",
                    file=sys.stderr,
                )
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        try:
            # The one line on stdout, for a script to pass on as `striata bridge arm --port`.
            print(twin.path, flush=True)
            stop.wait(duration)
        finally:
            if served is not None:
                served.close()
            twin.close()

    @bridge_app.command("unitree-g1")
    def unitree_g1(
        interface: Annotated[
            str, typer.Option(help="network interface the G1 (or Unitree's simulator: lo) is on")
        ] = "lo",
        domain_id: Annotated[int, typer.Option(help="DDS domain id (the G1 uses 0)")] = 0,
        peer: Annotated[
            list[str] | None,
            typer.Option(
                "--peer",
                help="unicast discovery to this address, multicast off (repeatable); default: the vendor "
                "SDK's multicast discovery on --interface",
            ),
        ] = None,
        dds_config: Annotated[
            Path | None,
            typer.Option(help="a Cyclone DDS XML file that replaces the settings from --interface/--peer"),
        ] = None,
        endpoint: EndpointOption = "tcp://127.0.0.1:6000",
        state_timeout_ms: Annotated[
            float, typer.Option(help="no LowState for this long: the bridge damps until it is back")
        ] = 100.0,
        connect_timeout_s: Annotated[float, typer.Option(help="wait this long for the first LowState")] = 5.0,
        mode_pr: Annotated[int, typer.Option(help="0: ankle pitch/roll joint space, 1: A/B motors")] = 0,
        sim_model: Annotated[
            Path | None,
            typer.Option(
                help="a simulated G1: its MJCF (e.g. unitree_mujoco's g1_29dof.xml); gains that model "
                "cannot hold at --sim-timestep are brought within its bounds (deploy/gain_stability.py)"
            ),
        ] = None,
        sim_timestep: Annotated[
            float | None,
            typer.Option(help="the simulator's physics step in s (unitree_mujoco's config.py: 0.005)"),
        ] = None,
        sim_state_lag_steps: Annotated[
            int,
            typer.Option(help="1: bound as for a PD that reads the state one step old (a limb in the air)"),
        ] = 0,
        safety: SafetyOption = None,
        allow_remote: AllowRemoteOption = False,
        duration_s: DurationOption = None,
        realtime: RealtimeOption = False,
        spin: SpinOption = False,
        cpu: CpusOption = None,
    ) -> None:
        """Bridge a Unitree G1 over its own DDS topics (rt/lowstate, rt/lowcmd) to a deploy controller."""
        from striata.deploy.bridge_server import BridgeConfigError
        from striata.deploy.gain_stability import UnstableGainsError
        from striata.deploy.realtime import request_realtime
        from striata.deploy.unitree.backend import G1ConnectionError, UnitreeG1Backend, UnitreeG1Config
        from striata.deploy.unitree.dds import DdsConfigError, cyclonedds_config, read_config_file
        from striata.deploy.unitree.hg_idl import LOWSTATE_TOPIC

        with user_errors(extra=(G1ConnectionError, DdsConfigError, BridgeConfigError, UnstableGainsError)):
            settings = _checked_settings(safety, endpoint, allow_remote)
            config = UnitreeG1Config(
                interface=interface,
                domain_id=domain_id,
                peers=tuple(peer or ()),
                dds_config_xml=read_config_file(dds_config) if dds_config is not None else None,
                state_timeout_ms=state_timeout_ms,
                connect_timeout_s=connect_timeout_s,
                mode_pr=mode_pr,
            )
            limits = _sim_gain_limits(sim_model, sim_timestep, sim_state_lag_steps, config.joint_names)
            xml = config.dds_config_xml or cyclonedds_config(config.interface, config.peers)
            typer.echo(f"[bridge] DDS config (domain {domain_id}):\n{xml}", err=True)
            if realtime:
                # Before the DDS participant exists: its receive threads inherit this thread's scheduling,
                # and a starved receive thread loses rt/lowstate as surely as a starved loop would.
                typer.echo(f"[bridge] scheduling: {request_realtime()}", err=True)
            backend = UnitreeG1Backend(config, gain_limits=limits)
            typer.echo(f"[bridge] first {LOWSTATE_TOPIC} after {backend.connect_s:.3f} s", err=True)
            stats = _serve(
                backend, endpoint, settings, "unitree_g1", allow_remote, duration_s, realtime, spin, cpu
            )
            stats["connect_s"] = round(backend.connect_s, 4)
            stats["lowcmds_sent"] = backend.lowcmds_sent
            stats["lowstates_dropped"] = backend.lowstates_dropped
            stats["gains_clipped"] = backend.gains_clipped
        print(json.dumps(stats))

    @bridge_app.command("arm")
    def arm(
        config: Annotated[
            Path | None, typer.Option(help="arm YAML (deploy/ARMS.md); default: an SO-101")
        ] = None,
        port: Annotated[
            str | None, typer.Option(help="serial port of the servo bus, e.g. /dev/ttyACM0")
        ] = None,
        endpoint: EndpointOption = "tcp://127.0.0.1:6001",
        safety: SafetyOption = None,
        allow_remote: AllowRemoteOption = False,
        duration_s: DurationOption = None,
        realtime: RealtimeOption = False,
        spin: SpinOption = False,
        cpu: CpusOption = None,
    ) -> None:
        """Bridge a real arm (Feetech STS bus: SO-100/SO-101) to a deploy controller."""
        from striata.deploy.arms.backend import ArmBackend
        from striata.deploy.arms.feetech import FeetechArm, FeetechBusError, load_feetech_config
        from striata.deploy.bridge_server import BridgeConfigError

        with user_errors(extra=(FeetechBusError, BridgeConfigError)):
            settings = _checked_settings(safety, endpoint, allow_remote)
            arm_config = load_feetech_config(config, port=port)
            backend = ArmBackend(FeetechArm(arm_config))
            name = arm_config.name
            stats = _serve(backend, endpoint, settings, name, allow_remote, duration_s, realtime, spin, cpu)
        print(json.dumps(stats))
