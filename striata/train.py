"""``striata train``: wire the parts on Ray and run the actor-learner loop.

The driver process holds the learner (``learner.trainer``); Ray actors (``actors.EnvActor``) step
the envs. Each chunk that arrives is counted, handed to the learner, and the newest weights are
posted for the actors. Progress goes to a rich bar, metrics to TensorBoard, live counters to
``status.json``; checkpoints are written atomically every ``checkpoint_every_s`` and at the end.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.utils.tensorboard import SummaryWriter

from actors.env_actor import ActorSpec
from actors.parameter_store import create_parameter_store
from actors.pool import ActorPool, ActorTimeoutError
from envs.registry import make_env
from learner.trainer import PPOTrainer, SACTrainer, Trainer, evaluate
from striata.experiment import ExperimentConfig
from striata.run_dir import latest_checkpoint, prune_checkpoints, write_json

MAX_MISSED_DEADLINES = 3


@dataclass
class Counters:
    env_steps: int = 0
    chunks: int = 0
    seconds: float = 0.0


def connect_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Start a local Ray on 127.0.0.1 by default; join an existing cluster when given its address."""
    if ray.is_initialized():
        return
    if address is None:
        ray.init(
            num_cpus=num_cpus, include_dashboard=False, log_to_driver=True, _node_ip_address="127.0.0.1",
            configure_logging=False,
        )  # fmt: skip
    else:
        ray.init(address=address, log_to_driver=True, configure_logging=False)


def actor_specs(config: ExperimentConfig) -> list[ActorSpec]:
    algo_config = getattr(config, config.algo).model_dump(mode="json")
    return [
        ActorSpec(
            actor_id=i,
            task=config.task,
            task_config=config.task_config,
            num_envs=config.actors.envs_per_actor,
            chunk_length=config.actors.chunk_length,
            algo=config.algo,
            algo_config=algo_config,
            seed=config.seed,
            physics_threads=config.actors.physics_threads,
        )
        for i in range(config.actors.num_actors)
    ]


def build_trainer(config: ExperimentConfig, env: Any) -> Trainer:
    """The learner for ``config.algo``, sized by the observations of ``env``."""
    obs = env.reset()
    if config.algo == "ppo":
        per_round = config.actors.num_actors * config.actors.envs_per_actor * config.actors.chunk_length
        steps = config.learner.ppo_steps_per_update or per_round
        return PPOTrainer(config.ppo, obs, env.action_dim, steps)
    learner = config.learner
    return SACTrainer(
        config.sac, obs, env.action_dim, learner.replay_capacity, learner.learning_starts,
        learner.updates_per_env_step,
    )  # fmt: skip


class Training:
    """One run: learner, actors, logging and checkpoints."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, console: Console | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.console = console or Console(stderr=True)
        self.eval_env = make_env(config.task, num_envs=config.eval.num_envs, seed=config.seed + 10_000,
                                 config=config.task_settings())  # fmt: skip
        self.trainer = build_trainer(config, self.eval_env)
        self.counters = Counters()
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is not None:
            extra = self.trainer.load(checkpoint)
            self.counters = Counters(**extra["counters"])
            self.console.print(
                f"resumed {checkpoint.name}: {self.counters.env_steps} env steps, "
                f"replay {self.trainer.replay_size()} transitions"
            )
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=self.counters.env_steps)
        self.returns: deque[float] = deque(maxlen=100)
        self.lengths: deque[int] = deque(maxlen=100)
        self.successes: deque[bool] = deque(maxlen=100)
        # Running policy-lag statistics (a list per chunk would grow for the whole run).
        self._lag_sum = self._lag_count = self._lag_max = 0
        # Throughput is measured from the first chunk on, so actor start-up does not count.
        self._first_chunk: tuple[float, int] | None = None
        self.evaluations: list[dict[str, float]] = []
        self._stop = False

    def run(self) -> dict[str, Any]:
        config = self.config
        store = create_parameter_store()
        self._publish(store)
        pool = ActorPool(
            actor_specs(config), store, num_cpus=config.actors.num_cpus, resources=config.actors.resources
        )
        pool.start()
        start = time.monotonic() - self.counters.seconds
        last_checkpoint = last_eval = last_status = time.monotonic()
        missed = 0
        # First Ctrl-C or SIGTERM: finish the loop, evaluate and checkpoint; a second Ctrl-C stops now.
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
                    try:
                        results = pool.next_results(config.learner.chunk_timeout_s)
                        missed = 0
                    except ActorTimeoutError as exc:
                        missed += 1
                        self.console.print(f"[yellow]warning: {exc} ({missed}/{MAX_MISSED_DEADLINES})")
                        if missed >= MAX_MISSED_DEADLINES:
                            raise
                        continue
                    for result in results:
                        self._consume(result, store)
                    now = time.monotonic()
                    self.counters.seconds = now - start
                    if now - last_eval >= config.eval.every_s:
                        self._evaluate()
                        last_eval = now
                    if now - last_checkpoint >= config.checkpoint_every_s:
                        self._checkpoint()
                        last_checkpoint = now
                    if now - last_status >= 2.0:
                        self._write_status(pool)
                        last_status = now
                    progress.update(bar, completed=min(self.counters.env_steps, config.total_env_steps),
                                    info=self._progress_info(now - start))  # fmt: skip
            self._evaluate()
            self._checkpoint()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._write_status(pool)
            self.writer.close()
        summary = self._summary(pool)
        pool.shutdown()
        return summary

    # ----------------------------------------------------------------- steps of the loop
    def _consume(self, result: dict[str, Any], store: Any) -> None:
        stats = result["stats"]
        if self._first_chunk is None:
            self._first_chunk = (time.monotonic(), self.counters.env_steps)
        self.counters.env_steps += stats["env_steps"]
        self.counters.chunks += 1
        if stats["policy_version"] >= 0:
            lag = self.trainer.version - stats["policy_version"]
            self._lag_sum += lag
            self._lag_count += 1
            self._lag_max = max(self._lag_max, lag)
        self.returns.extend(stats["episode_returns"])
        self.lengths.extend(stats["episode_lengths"])
        self.successes.extend(stats["episode_successes"])
        before = self.trainer.version
        metrics = self.trainer.consume(result["chunk"])
        step = self.counters.env_steps
        for key, value in metrics.items():
            self.writer.add_scalar(f"learner/{key}", value, step)
        self.writer.add_scalar("actors/env_steps_per_s", stats["env_steps_per_s"], step)
        for name, value in stats["reward_terms"].items():
            self.writer.add_scalar(f"reward_terms/{name}", value, step)
        if self.returns:
            self.writer.add_scalar("episode/return", float(np.mean(self.returns)), step)
            self.writer.add_scalar("episode/length", float(np.mean(self.lengths)), step)
            self.writer.add_scalar("episode/success", float(np.mean(self.successes)), step)
        if self.trainer.version != before:
            self._publish(store)

    def _publish(self, store: Any) -> None:
        weights = ray.put(self.trainer.policy_weights())
        ray.get(store.publish.remote(self.trainer.version, [weights]))

    def _evaluate(self) -> None:
        result = evaluate(self.trainer, self.eval_env, self.config.eval.episodes)
        result["env_steps"] = self.counters.env_steps
        result["minutes"] = round(self.counters.seconds / 60, 2)
        self.evaluations.append(result)
        for key in ("success", "return", "length"):
            self.writer.add_scalar(f"eval/{key}", result[key], self.counters.env_steps)
        self.console.print(
            f"eval @ {self.counters.env_steps} steps, {result['minutes']} min: "
            f"success {result['success']:.2f}, return {result['return']:.2f}, length {result['length']:.1f}"
        )

    def _checkpoint(self) -> None:
        self.trainer.save(
            self.run_dir / "checkpoints" / f"ckpt_{self.counters.env_steps}.pt",
            {"counters": asdict(self.counters), "replay_size": self.trainer.replay_size()},
        )
        prune_checkpoints(self.run_dir)

    def _write_status(self, pool: ActorPool) -> None:
        write_json(self.run_dir / "status.json", {
            "env_steps": self.counters.env_steps, "chunks": self.counters.chunks,
            "seconds": round(self.counters.seconds, 1), "policy_version": self.trainer.version,
            "replay_size": self.trainer.replay_size(), "actors": pool.status(),
        })  # fmt: skip

    # ----------------------------------------------------------------- bookkeeping
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

    def _progress_info(self, elapsed: float) -> str:
        rate = self.counters.env_steps / max(elapsed, 1e-9)
        text = f"{rate:,.0f} steps/s"
        if self.returns:
            text += f"  return {np.mean(self.returns):.2f}  success {np.mean(self.successes):.2f}"
        return text

    def _summary(self, pool: ActorPool) -> dict[str, Any]:
        rate = 0.0
        if self._first_chunk is not None:
            since, steps = self._first_chunk
            rate = (self.counters.env_steps - steps) / max(time.monotonic() - since, 1e-9)
        summary = {
            "run_dir": str(self.run_dir),
            "env_steps": self.counters.env_steps,
            "env_steps_per_s": round(rate, 1),
            "minutes": round(self.counters.seconds / 60, 2),
            "policy_version": self.trainer.version,
            "replay_size": self.trainer.replay_size(),
            "policy_lag": {"mean": round(self._lag_sum / max(self._lag_count, 1), 3), "max": self._lag_max},
            "evaluations": self.evaluations,
            "actors": pool.status(),
        }
        write_json(self.run_dir / "summary.json", summary)
        return summary
