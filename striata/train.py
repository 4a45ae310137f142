"""``striata train``: wire the parts on Ray and run the actor-learner loop.

The driver process holds the learner (``striata.learner.trainer``); Ray actors (``actors.EnvActor``) step
the envs. Each chunk that arrives is counted, handed to the learner, and the newest weights are
posted for the actors. Progress goes to a rich bar, metrics to TensorBoard, live counters to
``status.json``; checkpoints are written atomically every ``checkpoint_every_s`` and at the end.

With ``reward_model.enabled``, a reward server is started (a subprocess, restarted on the same port
if it dies, or a Ray actor placed by resources) or reached at an endpoint; actors send it frames,
and chunks pass through ``striata.learner.relabel.Relabeller`` before the learner sees them. Chunks still
waiting for labels at a checkpoint are not saved (a resumed run starts with an empty side table).

With ``hil.enabled``, every actor serves an intervention port (actors/INTERVENTION.md): their
endpoints go to ``RUN_DIR/hil.json`` (rewritten when an actor is replaced, ``finished`` at the end),
a chunk may take a pause and takeover pace longer, ``hil/*`` scalars go to TensorBoard and the
summary counts the intervention transitions the learner received and the labels people gave.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from rich.console import Console
from torch.utils.tensorboard import SummaryWriter

from striata.actors.env_actor import ActorSpec
from striata.actors.frame_labels import RewardSpec
from striata.actors.intervention import InterventionLog, write_hil_file
from striata.actors.parameter_store import create_parameter_store
from striata.actors.pool import ActorPool, ActorTimeoutError
from striata.actors.result import ActorResult
from striata.envs.registry import make_env
from striata.errors import ConfigFileError
from striata.experiment import ExperimentConfig, RewardModelSection, check_reward_model_files
from striata.learner.demos import load_demos
from striata.learner.relabel import AuditWindow, Relabeller, ShapingConfig
from striata.learner.replay import DemoBuffer
from striata.learner.trainer import PPOTrainer, SACTrainer, Trainer, sac_cameras
from striata.learner.warm_start import load_exported_actor
from striata.reward_server.client import RewardServerUnavailable, wait_until_healthy
from striata.reward_server.launch import RewardServerHandle, start_reward_server, start_reward_server_actor
from striata.run_dir import latest_checkpoint, write_json
from striata.run_loop import RunLoop

MAX_MISSED_DEADLINES = 3
FORWARDED_ENV = ("STRIATA_ASSETS", "STRIATA_DATA", "STRIATA_CACHE", "MUJOCO_GL")
PATH_ENV = ("STRIATA_ASSETS", "STRIATA_DATA", "STRIATA_CACHE")


def forwarded_env() -> dict[str, str]:
    """The variables Ray workers and jobs get from this process; folders as absolute paths, since a
    worker or a job's driver runs in a working directory of its own."""
    return {
        name: os.path.abspath(os.environ[name]) if name in PATH_ENV else os.environ[name]
        for name in FORWARDED_ENV
        if name in os.environ
    }


RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for a job's driver


@dataclass
class Counters:
    env_steps: int = 0
    chunks: int = 0
    seconds: float = 0.0


def connect_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Start a local Ray on 127.0.0.1 by default; join an existing cluster when given its address.

    On a cluster, workers start from their node's environment: the asset and data folders and the
    GL backend of this process go with the job, so actors on other nodes find the robots.
    """
    if ray.is_initialized():
        return
    if address is None:
        # Ray starts workers at nice 15: beside any other busy process the actors got ~4% of a core each
        # (issue 21) and a restarted actor took minutes to build its envs. The run's own processes are
        # the job here, so they run at the driver's priority.
        ray.init(
            num_cpus=num_cpus, include_dashboard=False, log_to_driver=True, _node_ip_address="127.0.0.1",
            configure_logging=False, _system_config={"worker_niceness": 0},
        )  # fmt: skip
    elif RAY_JOB_ENV in os.environ:
        # A job's driver (striata launch): the job's runtime env already carries these variables.
        ray.init(address=address, log_to_driver=True, configure_logging=False)
    else:
        ray.init(
            address=address,
            log_to_driver=True,
            configure_logging=False,
            runtime_env={"env_vars": forwarded_env()},
        )


class RewardService:
    """The reward server of a run: started here (subprocess or Ray actor) or reached at an endpoint.

    A subprocess that dies is started again on the same port in a background thread (at most once
    per ``RESTART_EVERY_S``), so the actors' sockets reconnect by themselves and labels resume.
    """

    RESTART_EVERY_S = 10.0

    def __init__(self, cfg: RewardModelSection, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.handle: RewardServerHandle | None = None
        self.actor: Any = None
        self.restarts = 0
        self._restarting: threading.Thread | None = None
        self._last_restart = -math.inf
        if cfg.endpoint is not None:
            self.endpoint = cfg.endpoint
            try:
                wait_until_healthy(self.endpoint, timeout_s=10.0)
            except RewardServerUnavailable:
                console.print(f"[yellow]warning: no reward server answers at {self.endpoint}; actors go on")
        elif cfg.placement == "ray":
            assert cfg.server is not None
            self.actor, self.endpoint = start_reward_server_actor(
                cfg.server, num_gpus=cfg.num_gpus, resources=cfg.resources
            )
        else:
            assert cfg.server is not None
            try:
                self.handle = start_reward_server(cfg.server)
            except RewardServerUnavailable as exc:
                # Almost always the server's config (a checkpoint it cannot load): its log is above.
                raise ConfigFileError(
                    f"config: reward_model.server: the reward server did not start ({exc})"
                ) from None
            self.endpoint = self.handle.endpoint
        console.print(f"reward server: {self.endpoint}")

    @property
    def pid(self) -> int | None:
        return self.handle.process.pid if self.handle is not None else None

    def check(self) -> None:
        """Start a dead server subprocess again (in the background), same port."""
        if self.handle is None or self.handle.alive or self._restarting is not None:
            return
        if time.monotonic() - self._last_restart < self.RESTART_EVERY_S:
            return
        self._last_restart = time.monotonic()
        self.console.print("[yellow]warning: the reward server exited; starting it again")
        self._restarting = threading.Thread(target=self._restart, daemon=True)
        self._restarting.start()

    def _restart(self) -> None:
        assert self.cfg.server is not None
        port = int(self.endpoint.rsplit(":", 1)[1])
        try:
            self.handle = start_reward_server(
                self.cfg.server.model_copy(update={"port": port}), timeout_s=60.0
            )
            self.restarts += 1
        except (RewardServerUnavailable, OSError) as exc:
            self.console.print(f"[yellow]warning: reward server restart failed: {exc}")
        finally:
            self._restarting = None

    def stop(self) -> None:
        if self._restarting is not None:
            self._restarting.join(timeout=70.0)
        if self.handle is not None:
            self.handle.stop()
        if self.actor is not None:
            ray.kill(self.actor, no_restart=True)


def reward_spec(config: ExperimentConfig, endpoint: str) -> RewardSpec:
    cfg = config.reward_model
    return RewardSpec(
        endpoint=endpoint, task_text=cfg.task_text, cameras=cfg.cameras,
        render_cameras=cfg.render_cameras,
        height=cfg.height, width=cfg.width, shadows=cfg.shadows, every_k=cfg.every_k,
        deadline_ms=cfg.deadline_ms,
    )  # fmt: skip


def make_relabeller(config: ExperimentConfig) -> Relabeller:
    cfg = config.reward_model
    shaping = ShapingConfig.of(cfg, gamma=getattr(config, config.algo).gamma)
    return Relabeller(shaping, cfg.label_timeout_s, incremental=config.algo == "sac")


def actor_specs(config: ExperimentConfig, reward: RewardSpec | None = None) -> list[ActorSpec]:
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
            reward=reward,
            hil=config.hil if config.hil.enabled else None,
        )
        for i in range(config.actors.num_actors)
    ]


def load_demonstrations(config: ExperimentConfig, console: Console) -> DemoBuffer | None:
    """The demo buffer of ``config.demos`` (sessions or buffer files), checked against the task's spaces.

    Demonstrations are for SAC/RLPD; a SAC config with demos or human interventions (``hil``) whose
    ``sac.demo_ratio`` is 0 gets RLPD's 0.5, or the demo buffer would never be sampled.
    """
    if config.demos and config.algo != "sac":
        raise ConfigFileError(
            f"--demos: demonstrations are for SAC/RLPD; this config trains with algo {config.algo}"
        )
    if config.algo == "sac" and (config.demos or config.hil.enabled) and config.sac.demo_ratio == 0:
        config.sac = config.sac.model_copy(update={"demo_ratio": 0.5})
        source = "demos" if config.demos else "hil"
        console.print(f"{source}: sac.demo_ratio is 0; using 0.5 (RLPD: half of each batch from the demos)")
    if not config.demos:
        return None
    env = make_env(config.task, num_envs=1, seed=config.seed, config=config.task_settings())
    try:
        full = env.reset()
        obs = full[config.sac.obs_key] if isinstance(full, dict) else full
        buffer, sources = load_demos(
            [Path(p) for p in config.demos], task=config.task, obs_shape=obs.shape[1:],
            action_dim=env.action_dim, obs_key=config.sac.obs_key, cameras=sac_cameras(config.sac, full),
            extra_capacity=config.learner.replay_capacity, console=console,
        )  # fmt: skip
    finally:
        env.close()
    episodes = sum(s.episodes for s in sources)
    console.print(
        f"demos: {len(buffer)} transitions ({episodes} session episodes) from {len(sources)} source(s)"
    )
    return buffer


def build_trainer(config: ExperimentConfig, env: Any, demos: DemoBuffer | None = None) -> Trainer:
    """The learner for ``config.algo``, sized by the observations of ``env``, with SAC's demos."""
    obs = env.reset()
    if config.algo == "ppo":
        per_round = config.actors.num_actors * config.actors.envs_per_actor * config.actors.chunk_length
        steps = config.learner.ppo_steps_per_update or per_round
        return PPOTrainer(
            config.ppo, obs, env.action_dim, steps, config.ppo_symmetry(), config.ppo_action_prior()
        )
    learner = config.learner
    return SACTrainer(
        config.sac, obs, env.action_dim, learner.replay_capacity, learner.learning_starts,
        learner.updates_per_env_step, demos,
    )  # fmt: skip


class Training(RunLoop):
    """One run: learner, actors, logging and checkpoints."""

    def __init__(
        self, config: ExperimentConfig, run_dir: Path, console: Console | None = None,
        demos: DemoBuffer | None = None,
    ) -> None:  # fmt: skip
        check_reward_model_files(config)
        torch.set_num_threads(config.learner.torch_threads)
        self.config = config
        self.run_dir = run_dir
        self.console = console or Console(stderr=True)
        self.eval_env = make_env(config.task, num_envs=config.eval.num_envs, seed=config.seed + 10_000,
                                 config=config.task_settings())  # fmt: skip
        checkpoint = latest_checkpoint(run_dir)
        if demos is None and checkpoint is None:
            demos = load_demonstrations(config, self.console)  # a checkpoint holds the demo buffer
        self.demos_loaded = len(demos) if demos is not None else 0
        self.trainer = build_trainer(config, self.eval_env, demos)
        self.counters = Counters()
        if checkpoint is None and config.algo == "ppo" and config.ppo.init_policy is not None:
            assert isinstance(self.trainer, PPOTrainer)
            names = [name for name, _ in getattr(self.eval_env, "observation_terms", ())] or None
            load_exported_actor(self.trainer.algo, config.ppo.init_policy, names)
            self.console.print(f"actor, normaliser and prior from {config.ppo.init_policy}")
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
        self._init_loop()
        self.reward_service: RewardService | None = None
        self.relabeller = make_relabeller(config) if config.reward_model.enabled else None
        self.audit = AuditWindow(threshold=config.reward_model.success_threshold)
        self.label_statuses: dict[str, int] = {}
        self.audit_figures: dict[str, float] = {}
        self._last_audit = time.monotonic()
        self.hil_log = InterventionLog() if config.hil.enabled else None
        self._hil_ports: list[dict[str, Any]] | None = None

    def run(self) -> dict[str, Any]:
        config = self.config
        store = create_parameter_store()
        self._publish(store)
        reward = None
        if config.reward_model.enabled:
            self.reward_service = RewardService(config.reward_model, self.console)
            reward = reward_spec(config, self.reward_service.endpoint)
        try:
            return self._run(store, reward)
        finally:
            if self.reward_service is not None:
                self.reward_service.stop()

    def _run(self, store: Any, reward: RewardSpec | None) -> dict[str, Any]:
        config = self.config
        pool = ActorPool(
            actor_specs(config, reward), store, num_cpus=config.actors.num_cpus,
            resources=config.actors.resources, in_flight=config.actors.in_flight,
        )  # fmt: skip
        pool.start()
        self._write_hil(pool)
        # A paused actor holds its chunk for up to max_pause_s, a taken-over one steps in real time.
        chunk_timeout = config.learner.chunk_timeout_s + config.hil.chunk_allowance_s(
            config.actors.chunk_length, self.eval_env.step_dt
        )
        start = time.monotonic() - self.counters.seconds
        last_status = time.monotonic()
        missed = 0
        previous = self.handle_signals()
        progress, bar = self.progress_bar()
        try:
            with progress:
                while not self._done(start):
                    try:
                        results = pool.next_results(chunk_timeout)
                        missed = 0
                    except ActorTimeoutError as exc:
                        missed += 1
                        self.console.print(f"[yellow]warning: {exc} ({missed}/{MAX_MISSED_DEADLINES})")
                        if missed >= MAX_MISSED_DEADLINES:
                            raise
                        continue
                    version = self.trainer.version
                    for result in results:
                        self._consume(result, store)
                    pool.refill(weights_changed=self.trainer.version != version)
                    self._write_hil(pool)
                    now = time.monotonic()
                    self.counters.seconds = now - start
                    self.periodic(now)
                    if now - last_status >= 2.0:
                        if self.reward_service is not None:
                            self.reward_service.check()
                        self._write_status(pool)
                        last_status = now
                    progress.update(bar, completed=min(self.counters.env_steps, config.total_env_steps),
                                    info=self._progress_info(now - start))  # fmt: skip
            # Checkpoint before the final evaluation: a stop that also reached the local Ray head
            # (a SIGTERM to the whole process group) can end this process during the evaluation.
            self._checkpoint()
            self._evaluate()
        finally:
            self.restore_signals(previous)
            self._write_status(pool)
            self._write_hil(pool, finished=True)
            self.writer.close()
        summary = self._summary(pool)
        pool.shutdown()
        return summary

    # ----------------------------------------------------------------- steps of the loop
    def _consume(self, result: ActorResult, store: Any) -> None:
        stats = result.stats
        if self._first_chunk is None:
            self._first_chunk = (time.monotonic(), self.counters.env_steps)
        self.counters.env_steps += stats.env_steps
        self.counters.chunks += 1
        if stats.policy_version >= 0:
            lag = self.trainer.version - stats.policy_version
            self._lag_sum += lag
            self._lag_count += 1
            self._lag_max = max(self._lag_max, lag)
        self.returns.extend(stats.episode_returns)
        self.lengths.extend(stats.episode_lengths)
        self.successes.extend(stats.episode_successes)
        before = self.trainer.version
        metrics: dict[str, float] = {}
        for chunk in self._relabelled(result):
            metrics = self.trainer.consume(chunk) or metrics
            if self.hil_log is not None:
                self.hil_log.add_learner_chunk(chunk)
        step = self.counters.env_steps
        for key, value in metrics.items():
            self.writer.add_scalar(f"learner/{key}", value, step)
        self.writer.add_scalar("actors/env_steps_per_s", stats.env_steps_per_s, step)
        for name, value in stats.reward_terms.items():
            self.writer.add_scalar(f"reward_terms/{name}", value, step)
        if self.returns:
            self.writer.add_scalar("episode/return", float(np.mean(self.returns)), step)
            self.writer.add_scalar("episode/length", float(np.mean(self.lengths)), step)
            self.writer.add_scalar("episode/success", float(np.mean(self.successes)), step)
        if self.hil_log is not None:
            self.hil_log.add_stats(stats)
            for key, value in self.hil_log.scalars().items():
                self.writer.add_scalar(f"hil/{key}", value, step)
        if self.trainer.version != before:
            self._publish(store)

    def _relabelled(self, result: ActorResult) -> list[Any]:
        """The chunks the learner gets now: the result's own, or what the relabeller lets through."""
        if self.relabeller is None:
            return [result.chunk]
        stats = result.stats
        source = (stats.actor_id, stats.pid)
        assert result.labels is not None and result.label_stats is not None  # actors label with a model
        self.relabeller.add_labels(source, result.labels)
        self.relabeller.add_chunk(source, result.chunk)
        self.audit.add(result.labels)
        label_stats = result.label_stats
        for status, count in label_stats.statuses.items():
            self.label_statuses[status] = self.label_statuses.get(status, 0) + count
        step = self.counters.env_steps
        chunks = self.relabeller.ready()
        counts = self.relabeller.counts
        scalars = {
            "labelled_steps": counts.labelled, "failed_steps": counts.failed, "expired_steps": counts.expired,
            "waiting_steps": self.relabeller.waiting_steps, "frames_sent": label_stats.frames_sent,
            "render_s_per_chunk": label_stats.render_s, "in_flight": label_stats.in_flight,
            "round_trip_ms": label_stats.round_trip_ms,
        }  # fmt: skip
        scalars.update({f"labels_{status}": count for status, count in self.label_statuses.items()})
        for key, value in scalars.items():
            if math.isfinite(value):
                self.writer.add_scalar(f"reward_model/{key}", value, step)
        if time.monotonic() - self._last_audit >= self.config.reward_model.audit_every_s and len(self.audit):
            self._last_audit = time.monotonic()
            self.audit_figures = self.audit.figures()
            for key, value in self.audit_figures.items():
                self.writer.add_scalar(f"reward_model/{key}", value, step)
        return chunks

    def _reward_status(self) -> dict[str, Any]:
        if self.relabeller is None or self.reward_service is None:
            return {}
        counts = self.relabeller.counts
        return {
            "endpoint": self.reward_service.endpoint,
            "server_pid": self.reward_service.pid,
            "server_restarts": self.reward_service.restarts,
            "labelled_steps": counts.labelled,
            "failed_steps": counts.failed,
            "expired_steps": counts.expired,
            "waiting_steps": self.relabeller.waiting_steps,
            "label_statuses": dict(self.label_statuses),
            "audit": {key: round(value, 4) for key, value in self.audit_figures.items()},
        }

    def _write_hil(self, pool: ActorPool, finished: bool = False) -> None:
        """Publish the actors' intervention ports in hil.json when they changed (or the run ended)."""
        if self.hil_log is None:
            return
        ports = pool.hil_ports()
        if finished or ports != self._hil_ports:
            write_hil_file(self.run_dir, self.config.task, ports, finished)
            self._hil_ports = ports

    def _publish(self, store: Any) -> None:
        weights = ray.put(self.trainer.policy_weights())
        ray.get(store.publish.remote(self.trainer.version, [weights]))

    def _write_status(self, pool: ActorPool) -> None:
        write_json(self.run_dir / "status.json", {
            "env_steps": self.counters.env_steps, "chunks": self.counters.chunks,
            "seconds": round(self.counters.seconds, 1), "policy_version": self.trainer.version,
            "replay_size": self.trainer.replay_size(), "demo_size": self.trainer.demo_size(),
            "actors": pool.status(),
            **({"reward_model": self._reward_status()} if self.relabeller is not None else {}),
            **({"hil": self.hil_log.summary()} if self.hil_log is not None else {}),
        })  # fmt: skip

    # ----------------------------------------------------------------- bookkeeping
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
            "demo_size": self.trainer.demo_size(),
            "demos": {"sources": list(self.config.demos), "loaded": self.demos_loaded},
            "policy_lag": {"mean": round(self._lag_sum / max(self._lag_count, 1), 3), "max": self._lag_max},
            "evaluations": self.evaluations,
            "actors": pool.status(),
        }
        if self.hil_log is not None:
            summary.update(self.hil_log.summary())
            if isinstance(self.trainer, SACTrainer):
                summary["demo_size"] = len(self.trainer.demo)
        if self.relabeller is not None:
            if len(self.audit):
                self.audit_figures = self.audit.figures()
            summary["reward_model"] = self._reward_status()
        write_json(self.run_dir / "summary.json", summary)
        return summary
