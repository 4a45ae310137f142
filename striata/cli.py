"""The ``striata`` command line: one entry point that wires the parts together."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from striata.errors import user_errors
from striata.overrides import SetOption, parse_overrides
from striata.progress import step_progress

app = typer.Typer(
    help="striata: distributed actor-learner robot RL.", no_args_is_help=True, add_completion=False
)
bench_app = typer.Typer(help="Benchmarks that print JSON figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
bridge_app = typer.Typer(help="Robot-side bridges that speak the deploy protocol.", no_args_is_help=True)
app.add_typer(bridge_app, name="bridge")
twin_app = typer.Typer(help="Simulated robots behind the real robots' interfaces.", no_args_is_help=True)
app.add_typer(twin_app, name="twin")
console = Console(stderr=True)


class Policy(StrEnum):
    random = "random"
    zero = "zero"
    scripted = "scripted"


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="experiment YAML (configs/*.yaml)")] = None,
    overrides: SetOption = None,
    address: Annotated[
        str | None, typer.Option(help="join an existing Ray cluster: 'auto' or HOST:PORT; default: local Ray")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="continue the run in this folder from its newest checkpoint")
    ] = None,
    runs: Annotated[Path, typer.Option(help="folder that holds run folders")] = Path("runs"),
    demos: Annotated[
        list[Path] | None,
        typer.Option(help="SAC/RLPD demonstrations: a session folder or .npz buffer files (repeatable)"),
    ] = None,
) -> None:
    """Train on Ray: actors step the envs, the learner updates, checkpoints go to the run folder."""
    from striata.envs.tasks.g1_tracking.device_env import DeviceUnavailableError
    from striata.experiment import ExperimentConfig

    with user_errors(ExperimentConfig, extra=(_demo_error(), _learner_setup_error(), DeviceUnavailableError)):
        from striata.experiment import load_experiment
        from striata.run_dir import discard_unstarted, new_run_dir, resume_run
        from striata.train import Training, connect_ray, load_demonstrations

        extra = parse_overrides(overrides or [])
        demo_buffer = None
        if resume is not None:
            if demos:
                raise typer.BadParameter("--demos starts a new run; a resumed run keeps its demo buffer")
            experiment = resume_run(resume, extra)
            run_dir = resume
        elif config is None:
            raise typer.BadParameter("give an experiment YAML, or --resume RUN_DIR")
        else:
            experiment = load_experiment(config, extra)
            experiment.demos = [*experiment.demos, *(str(p.resolve()) for p in demos or [])]
            demo_buffer = load_demonstrations(experiment, console)  # checked before a run folder exists
            run_dir = new_run_dir(experiment, runs)
        try:
            if experiment.runner == "device":
                from striata.train_device import DeviceTraining

                training: Training | DeviceTraining = DeviceTraining(experiment, run_dir, console)
            else:
                training = Training(experiment, run_dir, console, demos=demo_buffer)
        except Exception:
            if resume is None:
                discard_unstarted(run_dir)
            raise
        console.print(f"run folder: {run_dir}")
        if experiment.runner != "device":
            connect_ray(address)
        summary = training.run()
    print(json.dumps(summary, indent=2))


ClusterOption = Annotated[
    str, typer.Option("--cluster", help="Ray dashboard of the cluster: HOST[:PORT] (port 8265 by default)")
]


@app.command()
def launch(
    config: Annotated[Path, typer.Argument(help="experiment YAML (configs/*.yaml)")],
    cluster: ClusterOption,
    overrides: SetOption = None,
    runs: Annotated[
        str, typer.Option(help="run folders on the cluster (a shared path; relative: the job's directory)")
    ] = "runs",
    follow: Annotated[bool, typer.Option(help="stream the job's logs until it ends")] = True,
) -> None:
    """Submit `striata train CONFIG` to an existing Ray cluster (Ray job submission)."""
    from striata.experiment import ExperimentConfig

    with user_errors(ExperimentConfig, extra=(_launch_error(),)):
        from striata.experiment import load_experiment
        from striata.launch import follow_logs, job_table, submit

        experiment = load_experiment(config, parse_overrides(overrides or []))
        job_id = submit(config, overrides or [], experiment, cluster, Path.cwd(), runs=runs)
        console.print(f"submitted job {job_id} to {cluster}")
        if follow:
            status = follow_logs(cluster, job_id, echo=lambda text: console.out(text, end=""))
            console.print(f"job {job_id}: {status}")
            if status != "SUCCEEDED":
                # Why, in Ray's words (a runtime env that failed to set up never reaches the logs).
                console.print(f"job {job_id}: {job_table(cluster, job_id)[0]['message']}")
                raise typer.Exit(1)
    print(json.dumps({"job_id": job_id}))


@app.command()
def status(
    cluster: ClusterOption,
    job_id: Annotated[str | None, typer.Argument(help="one job; default: every striata job")] = None,
) -> None:
    """striata jobs on a Ray cluster, as JSON: id, status, experiment, driver (learner) node."""
    with user_errors(extra=(_launch_error(),)):
        from striata.launch import job_table

        print(json.dumps(job_table(cluster, job_id), indent=2))


@app.command()
def stop(cluster: ClusterOption, job_id: Annotated[str, typer.Argument(help="the job to stop")]) -> None:
    """Stop a job; its trainer writes a last checkpoint on the way out."""
    with user_errors(extra=(_launch_error(),)):
        from striata.launch import stop as stop_job

        stopped = stop_job(cluster, job_id)
    print(json.dumps({"job_id": job_id, "stopped": stopped}))


def _demo_error() -> type[Exception]:
    from striata.learner.demos import DemoError

    return DemoError


def _learner_setup_error() -> type[Exception]:
    from striata.learner.config import LearnerSetupError

    return LearnerSetupError


def _launch_error() -> type[Exception]:
    from striata.launch import LaunchError

    return LaunchError


@app.command()
def tasks() -> None:
    """List the tasks."""
    from striata.envs.registry import TASKS

    table = Table("task", "gymnasium id", "description")
    for entry in TASKS.values():
        table.add_row(entry.name, entry.gym_id, entry.description)
    Console().print(table)


@app.command()
def rollout(
    task: Annotated[str, typer.Argument(help="task name (see `striata tasks`)")] = "g1_tracking",
    num_envs: Annotated[int, typer.Option(min=1)] = 16,
    steps: Annotated[int, typer.Option(min=1, help="batched steps")] = 200,
    policy: Annotated[
        Policy, typer.Option(help="scripted: IK pick/reach for the panda and so101 tasks")
    ] = Policy.random,
    seed: int = 0,
    overrides: SetOption = None,
) -> None:
    """Step a task's batched env with a simple policy and report episode statistics as JSON."""
    with user_errors():
        from striata.envs.registry import make_config
        from striata.envs.rollout import rollout_stats

        config = make_config(task, parse_overrides(overrides or []))
        with step_progress(console) as progress:
            bar = progress.add_task(f"{task} x{num_envs}", total=steps)
            stats = rollout_stats(
                task, num_envs, steps, policy.value, seed, config, on_step=lambda: progress.advance(bar)
            )
    print(json.dumps(stats, indent=2))


@app.command()
def demos(
    task: Annotated[str, typer.Argument(help="a task with a scripted policy: panda_* or so101_*")],
    output: Annotated[Path, typer.Option(help="replay file to write (.npz), for `striata train --demos`")],
    episodes: Annotated[int, typer.Option(min=1, help="episodes to run; the successful ones are kept")] = 20,
    num_envs: Annotated[int, typer.Option(min=1)] = 8,
    noise: Annotated[float, typer.Option(min=0, help="Gaussian noise on the scripted actions")] = 0.1,
    seed: int = 0,
    overrides: SetOption = None,
) -> None:
    """Record scripted demonstrations of a task as a replay file (RLPD's demo buffer)."""
    from striata.envs.rollout import NoDemonstrationsError

    with user_errors(extra=(NoDemonstrationsError,)):
        from striata.envs.registry import make_config
        from striata.envs.rollout import scripted_demonstrations
        from striata.learner.replay import ReplayBuffer

        config = make_config(task, parse_overrides(overrides or []))
        transitions = scripted_demonstrations(task, episodes, num_envs, noise, seed, config)
        steps = len(transitions["rewards"])
        buffer = ReplayBuffer(steps)
        buffer.add(transitions)
        buffer.save(output)
    print(json.dumps({"task": task, "episodes": int(transitions["terminated"].sum()), "transitions": steps,
                      "output": str(output)}))  # fmt: skip


@app.command("eval")
def eval_command(
    policy: Annotated[
        Path,
        typer.Argument(
            help="exported tracking policy (.onnx, its .motion.npz beside it), or so101_pick with --twin"
        ),
    ],
    episodes: Annotated[int, typer.Option(min=1, help="episodes, all from the clip's first frame")] = 16,
    clip: Annotated[
        str | None, typer.Option(help="clip to use instead of the side file's (needed for older exports)")
    ] = None,
    fps: Annotated[float | None, typer.Option(help="frame rate of a CSV --clip")] = None,
    seed: int = 0,
    video: Annotated[
        Path | None, typer.Option(help="mp4 of the first episode beside its reference (a ghost)")
    ] = None,
    sim_bridge: Annotated[
        bool,
        typer.Option(
            help="each episode a real-time deployment: striata bridge sim + striata deploy, from standing"
        ),
    ] = False,
    physics_dt: Annotated[
        float | None,
        typer.Option(help="simulate at this physics step (s) instead of the one the policy trained at"),
    ] = None,
    from_standing: Annotated[
        bool, typer.Option(help="start standing on the default pose, as a deployment does")
    ] = False,
    action_delay_ticks: Annotated[
        str,
        typer.Option(
            metavar="N|LOW-HIGH",
            help="each new action waits this many physics steps, as a deployed command's latency; a range "
            "is drawn per episode and step",
        ),
    ] = "0",
    observation_delay_ticks: Annotated[
        str,
        typer.Option(
            metavar="N|LOW-HIGH",
            help="the policy sees the state this many physics steps old, as deployed (a range: drawn per "
            "episode and step)",
        ),
    ] = "0",
    bridge_brake: Annotated[
        bool, typer.Option(help="pass targets on as a deploy bridge does: ramped, joints braked near limits")
    ] = False,
    twin: Annotated[
        bool,
        typer.Option(
            help="so101_pick: each episode a deployment on the SO-101 twin (bridge arm + deploy, its "
            "cameras); counts the episodes that lift the cube"
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
) -> None:
    """Does a tracking policy track? Deterministic episodes from the first frame, no pushes or noise.
    With --twin: does a SO-101 pick policy lift the cube on the twin?"""
    from striata.evaluate import DeployEmulation, EvalError, evaluate_policy, tick_range
    from striata.learner.export import PolicyArtifactError

    with user_errors(extra=(EvalError, PolicyArtifactError)):
        if not policy.is_file():
            raise EvalError(f"policy: no such file {policy}")
        with step_progress(console, disable=json_output) as progress:
            bar = progress.add_task(f"eval {policy.name} x{episodes}", total=None)
            show = lambda done, total: progress.update(bar, completed=done, total=total)  # noqa: E731
            if twin:
                from striata.twin_eval import evaluate_on_twin

                figures = evaluate_on_twin(policy, episodes, seed, show)
            else:
                figures = evaluate_policy(
                    policy,
                    episodes,
                    clip,
                    fps,
                    seed,
                    on_step=show,
                    video=video,
                    sim_bridge=sim_bridge,
                    physics_dt=physics_dt,
                    from_standing=from_standing,
                    deploy=DeployEmulation(
                        tick_range("action_delay_ticks", action_delay_ticks),
                        tick_range("observation_delay_ticks", observation_delay_ticks),
                        bridge_brake,
                    ),
                )
    print(json.dumps(figures, indent=None if json_output else 2))


kit_app = typer.Typer(help="A short loan of a GPU machine: carry files, train, bring figures back.")
app.add_typer(kit_app, name="gpu-kit")


@kit_app.command("split")
def kit_split(
    files: Annotated[list[Path], typer.Argument(help="files to carry (wheels, checkpoints)")],
    out: Annotated[Path, typer.Option(help="folder for the parts and their manifest")],
    part_mib: Annotated[float, typer.Option(min=0.001, help="largest part, MiB")] = 60.0,
) -> None:
    """Cut files into parts that fit one 64 MiB batch, with a manifest of sizes and SHA-256s."""
    from striata.gpu_kit import KitError, split

    with user_errors(extra=(KitError,)):
        manifest = split(files, out, int(part_mib * 1024 * 1024))
    print(json.dumps(manifest, indent=2))


@kit_app.command("join")
def kit_join(
    folder: Annotated[Path, typer.Argument(help="folder with the parts and manifest.json")],
    out: Annotated[Path | None, typer.Option(help="where to write the files; default: the folder")] = None,
) -> None:
    """Reassemble split files and check each against its size and SHA-256."""
    from striata.gpu_kit import KitError, join

    with user_errors(extra=(KitError,)):
        joined = join(folder, out)
    print(json.dumps([str(p) for p in joined]))


@kit_app.command("run")
def kit_run(
    minutes: Annotated[float, typer.Option(help="training minutes this loan adds to the run")],
    out: Annotated[Path, typer.Option(help="folder for the run and figures.json (what comes back)")],
    resume: Annotated[Path | None, typer.Option(help="a carried run folder to continue")] = None,
    config: Annotated[Path, typer.Option(help="experiment YAML of a new run")] = Path(
        "configs/g1_tracking_warp.yaml"
    ),
    overrides: SetOption = None,
) -> None:
    """Train g1_tracking_warp (runner: device) for fixed minutes; the run and its figures go to --out."""
    from striata.envs.tasks.g1_tracking.device_env import DeviceUnavailableError
    from striata.experiment import ExperimentConfig
    from striata.gpu_kit import KitError, run

    with user_errors(ExperimentConfig, extra=(KitError, _learner_setup_error(), DeviceUnavailableError)):
        figures = run(minutes, out, resume, config, parse_overrides(overrides or []), console)
    print(json.dumps({k: v for k, v in figures.items() if k != "summary"}, indent=2))


@app.command()
def motion(
    file: Annotated[Path, typer.Argument(help="motion clip: .csv (BeyondMimic/LAFAN1), .npz, or .pkl (GMR)")],
    fps: Annotated[float | None, typer.Option(help="source frame rate (required for CSV)")] = None,
    control_hz: Annotated[float, typer.Option(help="rate to resample to")] = 50.0,
    allow_pickle: Annotated[bool, typer.Option(help="allow GMR pickles (unpickling runs code)")] = False,
) -> None:
    """Validate a G1 clip, resample it and compute body kinematics; the result is cached as NPZ."""
    with user_errors():
        from striata.envs.motion.reference import cache_dir, load_reference
        from striata.envs.robots.g1 import G1
        from striata.envs.tasks.g1_tracking.env import build_g1_scene

        model = build_g1_scene(0.005)
        start = time.perf_counter()
        ref = load_reference(
            file, model, G1.joint_names, fps=control_hz, source_fps=fps, allow_pickle=allow_pickle
        )
        print(
            json.dumps(
                {
                    "file": str(file),
                    "frames": ref.num_frames,
                    "fps": ref.fps,
                    "duration_s": round(ref.duration, 3),
                    "root_height_range_m": [
                        round(float(ref.root_pos[:, 2].min()), 3),
                        round(float(ref.root_pos[:, 2].max()), 3),
                    ],
                    "max_joint_speed_rad_s": round(float(np.abs(ref.joint_vel).max()), 2),
                    "cache_dir": str(cache_dir()),
                    "seconds": round(time.perf_counter() - start, 2),
                },
                indent=2,
            )
        )


@bench_app.command("envs")
def bench_envs_command(
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
    num_envs: Annotated[int, typer.Option(min=1)] = 64,
    steps: Annotated[int, typer.Option(min=10, help="measured batched steps per task")] = 100,
    render_frames: Annotated[
        int, typer.Option(min=1, help="SO-101 camera frames timed per camera, mesh set and shadow setting")
    ] = 20,
    task: Annotated[
        list[str] | None, typer.Option(help="task to measure (repeatable); default: every BENCH_TASKS task")
    ] = None,
) -> None:
    """Batched env steps/s against the raw physics rate of the same model, per task."""
    with user_errors():
        from striata.envs.bench import BENCH_TASKS, bench_envs

        result = bench_envs(
            tuple(task) if task else BENCH_TASKS, num_envs=num_envs, steps=steps, render_frames=render_frames
        )
    if as_json:
        print(json.dumps(result))
        return
    table = Table("task", "envs", "env steps/s", "physics env steps/s", "ratio")
    for name, r in result["tasks"].items():
        table.add_row(
            name,
            str(r["num_envs"]),
            f"{r['env_steps_per_s']:.0f}",
            f"{r['physics_env_steps_per_s']:.0f}",
            f"{r['ratio']:.2f}",
        )
    Console().print(table)
    if "so101_render" in result:
        render = result["so101_render"]
        frames = Table(
            f"SO-101 meshes ({render['image_size']} px)", "front ms", "wrist ms", "drawn triangles"
        )
        for meshes in ("original", "decimated"):
            row = render[meshes]
            frames.add_row(
                meshes, f"{row['front_ms']:.1f}", f"{row['wrist_ms']:.1f}", str(row["drawn_triangles"])
            )
        Console().print(frames)


@bench_app.command("pipeline")
def bench_pipeline_command(
    config: Annotated[Path, typer.Argument(help="experiment YAML")] = Path("configs/g1_tracking.yaml"),
    seconds: Annotated[float, typer.Option(min=10, help="length of the training window")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
    overrides: SetOption = None,
) -> None:
    """End-to-end env steps/s reaching the learner while it trains, against the backend alone."""
    from striata.experiment import ExperimentConfig

    with user_errors(ExperimentConfig):
        from striata.bench_pipeline import bench_pipeline
        from striata.experiment import load_experiment

        result = bench_pipeline(load_experiment(config, parse_overrides(overrides or [])), seconds)
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench_app.command("warp")
def bench_warp_command(
    config: Annotated[Path, typer.Argument(help="experiment YAML (g1_tracking, PPO)")] = Path(
        "configs/g1_tracking_warp.yaml"
    ),
    num_envs: Annotated[int, typer.Option(min=1, help="G1s in the Warp batch")] = 4096,
    device: Annotated[str, typer.Option(help="Warp and torch device: cuda:0, or cpu (slow)")] = "cuda:0",
    updates: Annotated[int, typer.Option(min=1, help="PPO iterations timed (after one untimed)")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
    overrides: SetOption = None,
) -> None:
    """g1_tracking on MuJoCo Warp with PPO on the same device: env steps/s training, update samples/s."""
    from striata.envs.tasks.g1_tracking.device_env import DeviceUnavailableError
    from striata.experiment import ExperimentConfig

    with user_errors(ExperimentConfig, extra=(DeviceUnavailableError,)):
        from striata.bench_warp import bench_warp
        from striata.experiment import load_experiment

        experiment = load_experiment(config, parse_overrides(overrides or []))
        result = bench_warp(experiment, num_envs, device, updates)
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench_app.command("hil")
def bench_hil_command(
    config: Annotated[Path, typer.Argument(help="experiment YAML")] = Path("configs/panda_pick.yaml"),
    episodes: Annotated[int, typer.Option(min=1, help="episodes the scripted operator takes over")] = 10,
    target: Annotated[float, typer.Option(min=0.05, max=1.0, help="eval success rate to reach")] = 0.8,
    eval_every: Annotated[int, typer.Option(min=100, help="evaluate every this many env steps")] = 2000,
    max_env_steps: Annotated[int, typer.Option(min=1000, help="give up after this many env steps")] = 200_000,
    max_minutes: Annotated[float, typer.Option(min=1, help="give up after this many minutes per run")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
    overrides: SetOption = None,
) -> None:
    """Env steps to a success rate with a scripted operator intervening through the console, and without."""
    from striata.experiment import ExperimentConfig

    with user_errors(ExperimentConfig):
        from striata.bench_hil import bench_hil
        from striata.experiment import load_experiment

        experiment = load_experiment(config, parse_overrides(overrides or []))
        limits = {"eval_every": eval_every, "max_env_steps": max_env_steps, "max_minutes": max_minutes}
        result = bench_hil(config, experiment, list(overrides or []), episodes, target, **limits)
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))


def _register_parts() -> None:
    """Commands of the reward server and deploy parts live beside their wiring, one module each."""
    from striata import deploy_cli, intervene_cli, reward_cli, reward_model_cli, robot_bridges_cli

    deploy_cli.register(app, bridge_app, bench_app)
    intervene_cli.register(app)
    robot_bridges_cli.register(bridge_app, twin_app)
    reward_cli.register(app, bench_app)
    reward_model_cli.register(app)


_register_parts()
