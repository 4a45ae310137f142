"""`striata serve-reward`, `audit-reward`, `bench reward` and `bench reward-attacks`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from striata.errors import user_errors
from striata.overrides import SetOption, parse_overrides
from striata.progress import step_progress
from striata.reward_server.client import RewardServerUnavailable
from striata.reward_server.config import RewardConfigError, RewardServerConfig, TorchBackendConfig

console = Console(stderr=True)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this part's commands to the CLI."""
    app.command("serve-reward")(serve_reward)
    app.command("audit-reward")(audit_reward_command)
    bench_app.command("reward")(bench_reward_command)
    bench_app.command("reward-attacks")(bench_reward_attacks_command)


def serve_reward(
    config: Annotated[Path, typer.Option("--config", help="reward server YAML (configs/reward_*.yaml)")],
    overrides: SetOption = None,
) -> None:
    """Serve a reward model on a ZMQ ROUTER socket until Ctrl-C (batching, deadlines, cache, metrics)."""
    with user_errors(RewardServerConfig, extra=(RewardConfigError,)):
        from striata.reward_server.config import load_server_config
        from striata.reward_server.server import RewardServer

        server_config = load_server_config(config, parse_overrides(overrides or []))
        server = RewardServer(server_config)
    endpoint = server.bind()
    backend = server.backend
    console.print(f"reward server: {backend.model_id} ({backend.revision}) on {endpoint}")
    try:
        server.serve()
    except KeyboardInterrupt:
        console.print("reward server: stopped")


def audit_reward_command(
    config: Annotated[Path, typer.Argument(help="experiment YAML with a reward_model section")] = Path(
        "configs/panda_pick_vlm.yaml"
    ),
    policy: Annotated[
        str, typer.Option(help="ONNX file from `striata export`, or scripted, random, zero")
    ] = "scripted",
    num_envs: Annotated[int, typer.Option(min=1, help="envs stepped in one batch")] = 16,
    steps: Annotated[int, typer.Option(min=1, help="batched steps")] = 100,
    noise: Annotated[float, typer.Option(min=0, help="std of Gaussian noise on the policy's actions")] = 0.1,
    seed: int = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
    overrides: SetOption = None,
) -> None:
    """Rate a policy's rollouts with the experiment's reward model, against the simulator's truth."""
    from striata.experiment import ExperimentConfig
    from striata.reward_audit import AuditPolicyError

    with user_errors(ExperimentConfig, extra=(RewardServerUnavailable, AuditPolicyError)):
        from striata.experiment import load_experiment
        from striata.reward_audit import audit_reward

        experiment = load_experiment(config, parse_overrides(overrides or []))
        with step_progress(console) as progress:
            bar = progress.add_task(f"{experiment.task} x{num_envs}", total=steps)
            result = audit_reward(
                experiment, policy, num_envs, steps, noise, seed, console, lambda: progress.advance(bar)
            )
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))


BenchCheckpointOption = Annotated[
    Path | None, typer.Option(help="trained progress model; default: random weights")
]
BenchDeviceOption = Annotated[
    str, typer.Option(help="the model's device: auto (CUDA when present), cpu, cuda:N")
]


def bench_reward_command(
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
    frames: Annotated[int, typer.Option(min=16, help="distinct frames per throughput run")] = 512,
    max_batch: Annotated[int, typer.Option(min=2, help="batched run's max batch")] = 32,
    clients: Annotated[int, typer.Option(min=1, help="concurrent clients in the latency run")] = 8,
    latency_s: Annotated[float, typer.Option(min=1, help="length of the latency run")] = 5.0,
    every_k: Annotated[int, typer.Option(min=1, help="actor loop: render and submit every k steps")] = 5,
    checkpoint: BenchCheckpointOption = None,
    device: BenchDeviceOption = "auto",
) -> None:
    """Torch backend frames/s batched vs batch 1, latency with concurrent clients, actor steps/s on vs off."""
    with user_errors(TorchBackendConfig, extra=(RewardServerUnavailable, RewardConfigError)):
        from striata.reward_server.bench import bench_reward

        result = bench_reward(
            backend=TorchBackendConfig(checkpoint=checkpoint, device=device),
            frames=frames,
            max_batch=max_batch,
            clients=clients,
            latency_s=latency_s,
            every_k=every_k,
            on_stage=lambda text: console.print(f"bench reward: {text}"),
        )
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))


def bench_reward_attacks_command(
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
    attack: Annotated[
        list[str] | None, typer.Option(help="run only this attack (repeatable); default: all of them")
    ] = None,
    window_s: Annotated[float, typer.Option(min=1, help="length of each baseline and attack window")] = 4.0,
    rate_hz: Annotated[float, typer.Option(min=1, help="the honest client's requests per second")] = 100.0,
    checkpoint: BenchCheckpointOption = None,
    device: BenchDeviceOption = "auto",
) -> None:
    """Another client's p99 latency under each attack on the server's port, against a quiet baseline."""
    from striata.reward_server.bench_attacks import ATTACKS, bench_reward_attacks

    unknown = sorted(set(attack or []) - set(ATTACKS))
    if unknown:
        raise typer.BadParameter(
            f"unknown {unknown[0]!r}; allowed: {', '.join(ATTACKS)}", param_hint="--attack"
        )
    with user_errors(TorchBackendConfig, extra=(RewardServerUnavailable, RewardConfigError)):
        result = bench_reward_attacks(
            backend=TorchBackendConfig(checkpoint=checkpoint, device=device),
            attacks=tuple(attack) if attack else ATTACKS,
            window_s=window_s,
            rate_hz=rate_hz,
            on_stage=lambda text: console.print(f"bench reward-attacks: {text}"),
        )
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))
