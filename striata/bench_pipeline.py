"""``striata bench pipeline``: env steps/s that reach the learner while it trains, against the backend.

Both figures come from one run on this machine: first the actors' envs (``num_actors`` x
``envs_per_actor`` of the experiment's task) are stepped by the batched backend alone, in this
process with random actions; then the full system trains for ``seconds`` (Ray actors with CPU
policy copies, chunks through the object store, the learner updating and posting weights), and
the env steps the learner received per second are counted from its first chunk on.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from striata.envs.registry import make_env
from striata.experiment import ExperimentConfig
from striata.run_dir import new_run_dir
from striata.train import Training, connect_ray


def backend_rate(config: ExperimentConfig, seconds: float) -> float:
    """Env steps/s of the actors' envs stepped by the batched backend alone (random actions)."""
    num_envs = config.actors.num_actors * config.actors.envs_per_actor
    env = make_env(config.task, num_envs=num_envs, seed=config.seed, config=config.task_settings())
    rng = np.random.default_rng(config.seed)
    env.reset()
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(rng.uniform(-1, 1, size=(num_envs, env.action_dim)))
        steps += num_envs
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def bench_pipeline(config: ExperimentConfig, seconds: float = 60.0) -> dict[str, Any]:
    backend = backend_rate(config, seconds / 3)
    # Long enough to train, with no evaluation or checkpoint in the measured window.
    config = config.model_copy(
        update={
            "max_minutes": seconds / 60,
            "total_env_steps": 10**12,
            "checkpoint_every_s": 10**9,
            "eval": config.eval.model_copy(update={"every_s": 10**9, "episodes": 1, "num_envs": 1}),
        }
    )
    connect_ray(None)
    with tempfile.TemporaryDirectory() as runs:
        summary = Training(config, new_run_dir(config, Path(runs))).run()
    rate = summary["env_steps_per_s"]
    return {
        "task": config.task,
        "algo": config.algo,
        "num_actors": config.actors.num_actors,
        "envs_per_actor": config.actors.envs_per_actor,
        "env_steps_per_s": rate,
        "backend_env_steps_per_s": round(backend, 1),
        "ratio": round(rate / backend, 3),
        "policy_lag": summary["policy_lag"],
        "learner_updates": summary["policy_version"],
    }
