"""``striata train`` with ``runner: device``: g1_tracking on MuJoCo Warp and PPO on one device.

The env (``G1TrackingDeviceEnv``) and the learner share the device and exchange tensors only
(``striata.learner.device_rollout``): no Ray actors, no chunks through an object store, no copies through
the host. Everything else is a normal run: the run folder, TensorBoard under ``learner/``,
``episode/``, ``reward_terms/`` and ``eval/``, checkpoints of the PPO learner (``PPOTrainer``'s
format, so ``striata export`` and ``--resume`` work), evaluations of the deterministic policy on the
CPU env of the same task, a progress bar and ``summary.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch.utils.tensorboard import SummaryWriter

from striata.envs.registry import make_env
from striata.errors import ConfigFileError
from striata.experiment import ExperimentConfig
from striata.learner.trainer import PPOTrainer
from striata.run_dir import latest_checkpoint, write_json
from striata.run_loop import RunLoop
from striata.train import Counters


class DeviceTraining(RunLoop):
    """One ``runner: device`` run."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, console: Console | None = None) -> None:
        from striata.envs.tasks.g1_tracking.device_env import G1TrackingDeviceEnv
        from striata.learner.device_rollout import DeviceRollout

        self.config, self.run_dir = config, run_dir
        torch.set_num_threads(config.learner.torch_threads)
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
        self.trainer = PPOTrainer(
            ppo_cfg,
            obs,
            self.env.action_dim,
            num_envs * config.actors.chunk_length,
            config.ppo_symmetry(),
            config.ppo_action_prior(),
        )
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
        self.latest: dict[str, float] = {}
        self._init_loop()

    def run(self) -> dict[str, Any]:
        config = self.config
        start = time.monotonic() - self.counters.seconds
        began_steps, began_at = self.counters.env_steps, time.monotonic()
        previous = self.handle_signals()
        progress, bar = self.progress_bar()
        try:
            with progress:
                while not self._done(start):
                    chunk = self.rollout.collect()
                    metrics = self.trainer.algo.update(chunk)
                    self.counters.env_steps += self.rollout.steps * self.env.num_envs
                    self.counters.chunks += 1
                    now = time.monotonic()
                    self.counters.seconds = now - start
                    self._log(metrics, self.rollout.episode_stats(), self.rollout.reward_terms())
                    self.periodic(now)
                    rate = (self.counters.env_steps - began_steps) / max(now - began_at, 1e-9)
                    done = min(self.counters.env_steps, config.total_env_steps)
                    progress.update(bar, completed=done, info=self._progress_info(rate))
            self._checkpoint()
            self._evaluate()
        finally:
            self.restore_signals(previous)
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

    def _log(self, metrics: dict[str, float], episodes: dict[str, float], terms: dict[str, float]) -> None:
        step = self.counters.env_steps
        for key, value in metrics.items():
            self.writer.add_scalar(f"learner/{key}", value, step)
        for name, value in terms.items():
            self.writer.add_scalar(f"reward_terms/{name}", value, step)
        if episodes.get("episodes"):
            self.latest = episodes
            self.writer.add_scalar("episode/return", episodes["mean_return"], step)
            self.writer.add_scalar("episode/length", episodes["mean_length"], step)
