"""``striata train`` with ``runner: device``: g1_tracking on MuJoCo Warp and PPO on one device.

The env (``G1TrackingDeviceEnv``) and the learner share the device and exchange tensors only
(``learner.device_rollout``): no Ray actors, no chunks through an object store, no copies through
the host. Everything else is a normal run: the run folder, TensorBoard under ``learner/``,
``episode/`` and ``eval/``, checkpoints of the PPO learner (``PPOTrainer``'s format, so ``striata
export`` and ``--resume`` work), evaluations of the deterministic policy on the CPU env of the same
task, a progress bar and ``summary.json``.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.utils.tensorboard import SummaryWriter

from envs.registry import make_env
from learner.trainer import PPOTrainer, evaluate
from striata.errors import ConfigFileError
from striata.experiment import ExperimentConfig
from striata.run_dir import latest_checkpoint, prune_checkpoints, write_json
from striata.train import Counters


class DeviceTraining:
    """One ``runner: device`` run."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, console: Console | None = None) -> None:
        from envs.tasks.g1_tracking.device_env import G1TrackingDeviceEnv
        from learner.device_rollout import DeviceRollout

        self.config, self.run_dir = config, run_dir
        self.console = console or Console(stderr=True)
        task = config.task_settings()
        device = task.warp.device or "cuda:0"
        num_envs = config.actors.num_actors * config.actors.envs_per_actor
        self.env = G1TrackingDeviceEnv(
            task, num_envs, device, config.seed, task.warp.nconmax, task.warp.njmax
        )
        if str(self.env.device) != str(config.ppo.device) and config.ppo.device != "auto":
            raise ConfigFileError(
                f"config: ppo.device: {config.ppo.device!r}; runner 'device' trains on the env's device "
                f"{str(self.env.device)!r} (task_config.warp.device)"
            )
        ppo_cfg = config.ppo.model_copy(update={"device": str(self.env.device)})
        obs = self.env.reset()
        self.trainer = PPOTrainer(ppo_cfg, obs, self.env.action_dim, num_envs * config.actors.chunk_length)
        self.counters = Counters()
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is not None:
            self.counters = Counters(**self.trainer.load(checkpoint)["counters"])
            self.console.print(f"resumed {checkpoint.name}: {self.counters.env_steps} env steps")
        self.rollout = DeviceRollout(self.env, self.trainer.algo, config.actors.chunk_length)
        cpu_task = task.model_copy(update={"backend": "cpu"})
        self.eval_env = make_env(
            config.task, num_envs=config.eval.num_envs, seed=config.seed + 10_000, config=cpu_task
        )
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=self.counters.env_steps)
        self.evaluations: list[dict[str, float]] = []
        self.latest: dict[str, float] = {}
        self._stop = False

    def run(self) -> dict[str, Any]:
        config = self.config
        start = time.monotonic() - self.counters.seconds
        began_steps, began_at = self.counters.env_steps, time.monotonic()
        last_checkpoint = last_eval = time.monotonic()
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=self.console,
        )  # fmt: skip
        try:
            with progress:
                bar = progress.add_task(
                    config.name, total=config.total_env_steps, completed=self.counters.env_steps, info=""
                )
                while not self._done(start):
                    chunk = self.rollout.collect()
                    metrics = self.trainer.algo.update(chunk)
                    self.counters.env_steps += self.rollout.steps * self.env.num_envs
                    self.counters.chunks += 1
                    now = time.monotonic()
                    self.counters.seconds = now - start
                    self._log(metrics, self.rollout.episode_stats())
                    if now - last_eval >= config.eval.every_s:
                        self._evaluate()
                        last_eval = now
                    if now - last_checkpoint >= config.checkpoint_every_s:
                        self._checkpoint()
                        last_checkpoint = now
                    rate = (self.counters.env_steps - began_steps) / max(now - began_at, 1e-9)
                    done = min(self.counters.env_steps, config.total_env_steps)
                    progress.update(bar, completed=done, info=self._progress_info(rate))
            self._evaluate()
            self._checkpoint()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.writer.close()
        rate = (self.counters.env_steps - began_steps) / max(time.monotonic() - began_at, 1e-9)
        summary = {
            "run_dir": str(self.run_dir),
            "runner": "device",
            "device": str(self.env.device),
            "num_envs": self.env.num_envs,
            "env_steps": self.counters.env_steps,
            "env_steps_per_s": round(rate, 1),
            "minutes": round(self.counters.seconds / 60, 2),
            "policy_version": self.trainer.version,
            "evaluations": self.evaluations,
        }
        write_json(self.run_dir / "summary.json", summary)
        self.env.close()
        return summary

    def _progress_info(self, rate: float) -> str:
        info = f"{rate:,.0f} steps/s"
        if "mean_length" in self.latest:
            info += f"  return {self.latest['mean_return']:.2f}  length {self.latest['mean_length']:.0f}"
        return info

    def _log(self, metrics: dict[str, float], episodes: dict[str, float]) -> None:
        step = self.counters.env_steps
        for key, value in metrics.items():
            self.writer.add_scalar(f"learner/{key}", value, step)
        if episodes.get("episodes"):
            self.latest = episodes
            self.writer.add_scalar("episode/return", episodes["mean_return"], step)
            self.writer.add_scalar("episode/length", episodes["mean_length"], step)

    def _evaluate(self) -> None:
        result = evaluate(self.trainer, self.eval_env, self.config.eval.episodes)
        result["env_steps"] = self.counters.env_steps
        result["minutes"] = round(self.counters.seconds / 60, 2)
        self.evaluations.append(result)
        for key in ("success", "return", "length"):
            self.writer.add_scalar(f"eval/{key}", result[key], self.counters.env_steps)
        self.console.print(
            f"eval @ {self.counters.env_steps} steps: success {result['success']:.2f}, "
            f"return {result['return']:.2f}, length {result['length']:.1f}"
        )

    def _checkpoint(self) -> None:
        self.trainer.save(
            self.run_dir / "checkpoints" / f"ckpt_{self.counters.env_steps}.pt",
            {"counters": asdict(self.counters), "replay_size": 0},
        )
        prune_checkpoints(self.run_dir)

    def _request_stop(self, signum: int, _frame: Any) -> None:
        if self._stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop = True
        self.console.print("[yellow]stopping: finishing with an evaluation and a checkpoint")

    def _done(self, start: float) -> bool:
        config = self.config
        if self._stop or self.counters.env_steps >= config.total_env_steps:
            return True
        return config.max_minutes is not None and time.monotonic() - start >= config.max_minutes * 60
