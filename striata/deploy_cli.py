"""`striata export`, `striata deploy`, `striata bridge sim`, `striata bench deploy`."""

from __future__ import annotations

import json
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from striata.errors import user_errors
from striata.robot_bridges_cli import CpusOption, RealtimeOption, SpinOption


def _deploy_errors() -> tuple[type[Exception], ...]:
    from striata.common.curve import CurveKeyError
    from striata.deploy.bridge_server import BridgeConfigError
    from striata.deploy.camera import CameraError
    from striata.deploy.client import BridgeUnavailableError
    from striata.deploy.controller import JointMismatchError, SequenceError
    from striata.deploy.intervention import InterventionAddressError
    from striata.deploy.observers import ObservationLayoutError
    from striata.evaluate import EvalError
    from striata.learner.export import PolicyArtifactError

    return (
        EvalError,
        BridgeConfigError,
        CameraError,
        CurveKeyError,
        InterventionAddressError,
        BridgeUnavailableError,
        JointMismatchError,
        SequenceError,
        ObservationLayoutError,
        PolicyArtifactError,
    )


NORMAL_STOPS = ("quit", "duration")


class SimRobotChoice(StrEnum):
    g1 = "g1"
    panda = "panda"


class CheckpointChoiceError(ValueError):
    """A --checkpoint that the run folder does not hold."""


def _robot_facts(task: str, env: Any) -> dict[str, Any]:
    """The deploy side of a task: the robot, its joint order and gains, and what the actions mean."""
    from striata.envs.robots.g1 import ANCHOR_BODY, G1
    from striata.envs.robots.panda import PANDA

    if task.startswith("g1_tracking"):
        standby_kp, standby_kd = G1.standby_kp_kd
        return {
            "robot": G1.name,
            "action_type": "joint_position",
            "joint_names": list(G1.joint_names),
            "default_joint_pos": G1.default_pos.tolist(),
            "action_scale": G1.action_scale.tolist(),
            "kp": G1.kp.tolist(),
            "kd": G1.kd.tolist(),
            "standby_kp": standby_kp.tolist(),
            "standby_kd": standby_kd.tolist(),
            "effort_limit": G1.effort_limit.tolist(),
            "anchor_body": ANCHOR_BODY,
            "clip_targets": env.cfg.clip_targets,
            "motion_fps": float(env.reference.fps),
            "motion_source": env.cfg.motion.file,
            "motion_segment_s": [env.cfg.motion.start_s, env.cfg.motion.start_s + env.reference.duration],
        }
    if task.startswith("so101"):
        from striata.envs.robots.so101 import SO101

        cfg = env.cfg
        return {
            "robot": SO101.name,
            # Arm: deltas of the last target (joint_step rad at |a| = 1); gripper: a target opening.
            "action_type": "joint_delta_gripper_target",
            "joint_names": list(SO101.joint_names),
            "default_joint_pos": SO101.default_pos.tolist(),
            "action_scale": [cfg.joint_step] * (env.action_dim - 1) + [cfg.gripper_step],
            "kp": SO101.kp.tolist(),
            "kd": SO101.kd.tolist(),
            "effort_limit": SO101.effort_limit.tolist(),
            "joint_limits": env.joint_range.tolist(),
            "gripper_open": env.controller.gripper_open,
        }
    return {
        "robot": PANDA.name,
        "action_type": "ee_delta",
        "joint_names": list(PANDA.joint_names),
        "default_joint_pos": PANDA.default_pos.tolist(),
        "action_scale": [1.0] * env.action_dim,
        "kp": PANDA.kp.tolist(),
        "kd": PANDA.kd.tolist(),
        "effort_limit": PANDA.effort_limit.tolist(),
    }


def _observation_layout(env: Any, config: Any, obs_dim: int) -> tuple[tuple[str, int], ...]:
    """The terms of the state vector the policy reads: an env with several (``observation_layouts``, e.g.
    an arm's ``state`` and ``proprio``) names them by the key the algorithm reads."""
    key = config.sac.obs_key if config.algo == "sac" else config.ppo.actor_obs_key
    layouts = getattr(env, "observation_layouts", {})
    if key in layouts:
        return tuple(layouts[key])
    return tuple(getattr(env, "observation_terms", None) or (("state", obs_dim),))


def _tracking_motion(env: Any) -> dict[str, np.ndarray]:
    from striata.envs.robots.g1 import ANCHOR_BODY

    ref = env.reference
    anchor = ref.body_indices((ANCHOR_BODY,))[0]
    return {
        "joint_pos": ref.joint_pos,
        "joint_vel": ref.joint_vel,
        "anchor_pos_w": ref.body_pos_w[:, anchor],
        "anchor_quat_w": ref.body_quat_w[:, anchor],
        "fps": np.asarray(ref.fps),
        "root_pos": ref.root_pos,
        "root_rot": ref.root_quat[:, [1, 2, 3, 0]],
        "dof_pos": ref.joint_pos,
    }


def _name_values(option: str, items: list[str]) -> dict[str, str]:
    """``["front=0", ...]`` -> ``{"front": "0"}``; a malformed or repeated name is a one-line error."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise typer.BadParameter(f"{item!r}: expected NAME=SOURCE", param_hint=option)
        if name in out:
            raise typer.BadParameter(f"{name!r} given twice", param_hint=option)
        out[name] = value
    return out


def export_run(
    run_dir: Path, checkpoint: int | None, output: Path, recorded_steps: int = 100
) -> dict[str, Any]:
    """Export a run's checkpoint to ONNX (+ motion side file); returns the parity figures."""
    from striata.envs.registry import make_env
    from striata.learner.export import PolicyMetadata, config_hash, export_policy, policy_inputs, stack_inputs
    from striata.run_dir import checkpoints, load_run_config
    from striata.train import build_trainer

    config = load_run_config(run_dir)
    found = checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"{run_dir}: no checkpoints yet")
    if checkpoint is None:
        path = found[-1]
    else:
        by_steps = {int(p.stem.split("_")[1]): p for p in found}
        if checkpoint not in by_steps:
            raise CheckpointChoiceError(f"--checkpoint {checkpoint}: the run holds {sorted(by_steps)}")
        path = by_steps[checkpoint]
    env = make_env(config.task, num_envs=8, seed=config.seed + 20_000, config=config.task_settings())
    trainer = build_trainer(config, env)
    trainer.load(path)
    algo = trainer.algo  # type: ignore[attr-defined]
    obs, recorded = env.reset(), []
    for _ in range(recorded_steps):
        recorded.append(policy_inputs(algo, obs))  # the policy's obs, and its camera frames if it has any
        obs, *_ = env.step(trainer.act_deterministic(obs))
    recorded_obs = stack_inputs(recorded)
    state = recorded_obs["obs"] if isinstance(recorded_obs, dict) else recorded_obs
    terms = _observation_layout(env, config, int(state.shape[1]))
    metadata = PolicyMetadata(
        task=config.task,
        algorithm=config.algo,
        control_dt=float(env.step_dt),
        physics_dt=float(env.model.opt.timestep),
        observation_names=[name for name, _ in terms],
        observation_sizes=[int(size) for _, size in terms],
        obs_dim=int(state.shape[1]),
        action_dim=int(env.action_dim),
        policy_version=int(trainer.version),
        config_hash=config_hash(config.model_dump(mode="json")),
        **_robot_facts(config.task, env),
    )
    motion = _tracking_motion(env) if config.task.startswith("g1_tracking") else None
    report = export_policy(algo, metadata, output, recorded_obs, motion)
    return {
        "checkpoint": str(path),
        "output": str(output),
        "motion_file": str(output.with_name(f"{output.stem}.motion.npz")) if motion is not None else None,
        "parity_max_abs_diff": {
            "random": report.random_max_abs_diff,
            "recorded": report.recorded_max_abs_diff,
        },
        "recorded_observations": report.recorded_samples,
        "parity_ok": report.ok,
        "policy_version": metadata.policy_version,
        "obs_dim": metadata.obs_dim,
    }


def register(app: typer.Typer, bridge_app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this part's commands to the CLI."""

    @app.command("export")
    def export_command(
        run_dir: Annotated[Path, typer.Argument(help="run folder (runs/<name>-<time>)")],
        output: Annotated[Path, typer.Option("-o", "--output", help="ONNX file to write")] = Path(
            "policy.onnx"
        ),
        checkpoint: Annotated[
            int | None, typer.Option(help="env steps of the checkpoint (ckpt_N.pt); default: newest")
        ] = None,
    ) -> None:
        """Export a trained policy to ONNX with its metadata; prints the torch/onnxruntime parity."""
        with user_errors(extra=(CheckpointChoiceError, *_deploy_errors())):
            result = export_run(run_dir, checkpoint, output)
        print(json.dumps(result, indent=2))
        if not result["parity_ok"]:
            print("error: ONNX parity above 1e-5", file=sys.stderr)
            raise typer.Exit(1)

    @app.command("deploy")
    def deploy_command(
        policy: Annotated[Path, typer.Option(help="exported policy (.onnx)")],
        robot: Annotated[str, typer.Option(help="bridge endpoint")] = "tcp://127.0.0.1:6000",
        sequence: Annotated[
            str | None,
            typer.Option(help="timed events EVENT@SECONDS,...: interpolate, policy, damping, quit"),
        ] = None,
        record: Annotated[Path | None, typer.Option(help="NPZ recording of observations and actions")] = None,
        interpolate_s: Annotated[float, typer.Option(help="seconds to reach the default pose")] = 2.0,
        start_tolerance_rad: Annotated[
            float, typer.Option(help="the policy starts once every joint is this near its default pose (rad)")
        ] = 0.5,
        duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
        require_same_order: Annotated[
            bool, typer.Option(help="refuse a robot with another joint order")
        ] = False,
        keys: Annotated[
            bool, typer.Option(help="read keys on stdin: s start, p policy, d damping, q quit")
        ] = True,
        realtime: RealtimeOption = False,
        cpu: CpusOption = None,
        align_to_state: Annotated[
            bool, typer.Option(help="each step waits (<= 1.5 bridge ticks) for the bridge's next state")
        ] = False,
        prime_cache_s: Annotated[
            float, typer.Option(help="throwaway runs this long before each step warm the policy (0: off)")
        ] = 0.001,
        curve_secret: Annotated[
            Path | None, typer.Option(help="CurveZMQ: this controller's .key_secret")
        ] = None,
        curve_server_key: Annotated[
            Path | None, typer.Option(help="CurveZMQ: the bridge's public .key")
        ] = None,
        intervene: Annotated[
            str | None,
            typer.Option(
                help="serve an intervention port at tcp://HOST:PORT (PORT *: a free one) for "
                "`striata intervene --job tcp://HOST:PORT`: take over, pause, label"
            ),
        ] = None,
        intervene_allow_remote: Annotated[
            bool, typer.Option(help="let --intervene bind beyond loopback (then use Curve keys)")
        ] = False,
        intervene_curve_secret: Annotated[
            Path | None, typer.Option(help="CurveZMQ: the intervention port's .key_secret")
        ] = None,
        intervene_curve_clients: Annotated[
            Path | None, typer.Option(help="CurveZMQ: folder of the authorised consoles' .key files")
        ] = None,
        intervene_action_limit: Annotated[
            float, typer.Option(help="a person's actions are clipped to +-this (policy action units)")
        ] = 1.0,
        intervene_camera: Annotated[
            str | None, typer.Option(help="the console's view: an OpenCV device index (0), video file or URL")
        ] = None,
        policy_camera: Annotated[
            list[str] | None,
            typer.Option(
                help="a camera input of the policy, NAME=SOURCE (repeatable): an OpenCV device index, file "
                "or URL, or zmq+tcp://HOST:PORT/NAME (`striata twin so101 --cameras`)"
            ),
        ] = None,
        target: Annotated[
            str | None,
            typer.Option(help="so101_reach policies: where the tip goes, X,Y,Z (m, arm base frame, z up)"),
        ] = None,
    ) -> None:
        """Run a policy on a robot bridge: zero torque -> default pose -> hold -> policy -> damping."""
        from striata.deploy.controller import ControllerConfig

        with user_errors(ControllerConfig, extra=_deploy_errors()):
            from striata.deploy.controller import Controller

            config = ControllerConfig(
                policy=policy,
                robot=robot,
                sequence=sequence,
                record=record,
                interpolate_s=interpolate_s,
                start_tolerance_rad=start_tolerance_rad,
                duration_s=duration,
                require_same_order=require_same_order,
                keys=keys,
                realtime=realtime,
                cpus=cpu,
                align_to_state=align_to_state,
                prime_cache_s=prime_cache_s,
                curve_secret=curve_secret,
                curve_server_key=curve_server_key,
                intervene=intervene,
                intervene_allow_remote=intervene_allow_remote,
                intervene_curve_secret=intervene_curve_secret,
                intervene_curve_clients=intervene_curve_clients,
                intervene_action_limit=intervene_action_limit,
                intervene_camera=intervene_camera,
                policy_cameras=_name_values("--policy-camera", policy_camera or []),
                target=None if target is None else target.split(","),
            )
            summary = Controller(config).run()
        print(json.dumps(summary, indent=2))
        if summary["stop_reason"] not in NORMAL_STOPS:
            print(f"error: {summary['stop_reason']}", file=sys.stderr)
            raise typer.Exit(1)

    @bridge_app.command("sim")
    def bridge_sim_command(
        robot: Annotated[SimRobotChoice, typer.Option(help="robot model")] = SimRobotChoice.g1,
        endpoint: Annotated[str, typer.Option(help="ZMQ endpoint to bind")] = "tcp://127.0.0.1:6000",
        viewer: Annotated[bool, typer.Option(help="open the MuJoCo viewer")] = False,
        duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
        allow_remote: Annotated[bool, typer.Option(help="allow binding beyond loopback")] = False,
        realtime: RealtimeOption = False,
        spin: SpinOption = False,
        cpu: CpusOption = None,
        curve_secret: Annotated[Path | None, typer.Option(help="CurveZMQ: the bridge's .key_secret")] = None,
        curve_clients: Annotated[
            Path | None, typer.Option(help="CurveZMQ: folder of authorised controllers' .key files")
        ] = None,
        track: Annotated[
            Path | None,
            typer.Option(
                help="a G1 tracking policy: measure the robot against its clip from the policy phase on, "
                "with the task's own terms (the report's 'tracking'; striata eval --sim-bridge)"
            ),
        ] = None,
        track_clip: Annotated[
            str | None, typer.Option(help="with --track: the clip, where the policy's side file lacks it")
        ] = None,
    ) -> None:
        """A MuJoCo G1 or Panda at 500 Hz behind the bridge protocol, with the bridge's safety."""
        from striata.common.curve import CurveKeyError, CurveServer
        from striata.deploy.bridge_server import BridgeConfigError, BridgeServer
        from striata.deploy.safety import SafetyConfig
        from striata.deploy.sim_robot import SimRobot

        with user_errors(extra=_deploy_errors()):
            curve = None
            if curve_secret is not None or curve_clients is not None:
                if curve_secret is None or curve_clients is None:
                    raise CurveKeyError("CurveZMQ needs both --curve-secret and --curve-clients")
                curve = CurveServer(curve_secret, curve_clients)
            if track is not None and robot != SimRobotChoice.g1:
                raise BridgeConfigError(f"track: measures a G1 tracking policy, not on robot {robot.value!r}")
            if track is None:
                sim = SimRobot(robot.value, viewer=viewer)
            else:
                from striata.evaluate import eval_config
                from striata.sim2sim import MonitoredSimRobot

                sim = MonitoredSimRobot(eval_config(track, track_clip)[1], viewer=viewer)
            server = BridgeServer(
                sim,
                endpoint,
                SafetyConfig(),
                robot_name=f"sim-{robot}",
                allow_remote=allow_remote,
                on_phase=sim.on_controller_phase,
                realtime=realtime,
                spin=spin,
                curve=curve,
                cpus=cpu,
            )
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        print(f"[bridge] sim {robot} on {endpoint}", file=sys.stderr, flush=True)
        try:
            with user_errors(extra=_deploy_errors()):
                stats = server.serve(stop=stop, duration_s=duration)
        finally:
            sim.close()
        report = {
            **stats.as_dict(),
            "scheduling": server.priority,
            "base_height_by_phase": sim.height_report(),
        }
        if track is not None:
            report["tracking"] = sim.monitor.report()
        print(json.dumps(report))

    @bench_app.command("deploy")
    def bench_deploy_command(
        as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
        seconds: Annotated[float, typer.Option(min=3, help="length of the measured run")] = 30.0,
        policy: Annotated[Path, typer.Option(help="G1 tracking policy")] = Path("tests/data/g1_stand.onnx"),
        prime_cache_s: Annotated[
            float, typer.Option(help="the controller's cache warming before each step (0: off)")
        ] = 0.001,
        bridge_spin: Annotated[
            bool, typer.Option(help="the bridge polls its socket between ticks (a core of its own)")
        ] = True,
        pin: Annotated[
            bool, typer.Option(help="the bridge on the first CPU, the controller on the second (2+ CPUs)")
        ] = True,
    ) -> None:
        """ONNX latency, control-period error and bridge round trip of the G1 policy on the sim bridge."""
        with user_errors(extra=_deploy_errors()):
            from striata.deploy.bench import bench_deploy

            result = bench_deploy(policy, seconds, prime_cache_s, bridge_spin, pin)
        print(json.dumps(result) if as_json else json.dumps(result, indent=2))

    @bench_app.command("bridge-attacks")
    def bench_bridge_attacks_command(
        as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
        robot: Annotated[
            SimRobotChoice, typer.Option(help="sim robot behind the bridge")
        ] = SimRobotChoice.panda,
        command_s: Annotated[
            float, typer.Option(min=0.5, help="seconds the controller commands during each attack")
        ] = 1.5,
        realtime: Annotated[
            bool, typer.Option(help="the bridge's loop asks for SCHED_FIFO, as `bridge --realtime` does")
        ] = True,
    ) -> None:
        """Tick gaps, watchdog and memory of a sim bridge under hostile peers, beside a quiet baseline."""
        with user_errors():
            from striata.deploy.attack_bench import bench_bridge_attacks

            result = bench_bridge_attacks(robot.value, command_s, realtime=realtime)
        print(json.dumps(result) if as_json else json.dumps(result, indent=2))
