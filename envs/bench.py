"""``striata bench envs``: batched env throughput against the raw physics of the same model.

For each task, N envs take uniformly random actions. Every physics call the env makes is
recorded (its input state rows), then replayed as bare ``mj_step x decimation`` on the same
batch: the baseline is the physics of exactly the states the env visited, so contacts, falls
and resets weigh the same on both sides, and the ratio is the share of time the env spends in
physics rather than in task code. The same actions also step the task's Gymnasium vector view
(``striata.envs.vector_view``, its own envs of the same seed) in the same alternation: ``vector_ratio`` is its
env steps/s over the batched env's.

With a SO-101 task among them, ``so101_render`` adds what a camera frame of its scene costs, with the
decimated and the original visual meshes side by side (``striata.envs.tasks.so101.render_cost``).
"""

from __future__ import annotations

import time
from typing import Any

import mujoco
import numpy as np

from striata.envs.registry import TASKS, make_env
from striata.envs.vector_view import BatchedVectorEnv

BENCH_TASKS = ("g1_tracking", "panda_pick", "panda_reach", "so101_pick", "so101_reach")


class _RecordingBatch:
    """Wraps an env's Batch: keeps the input state of every step() call for a later replay."""

    def __init__(self, batch: Any) -> None:
        self._batch = batch
        self.inputs: list[np.ndarray] = []

    def step(self, *args: Any, **kwargs: Any) -> None:
        self.inputs.append(self._batch.state.copy())
        self._batch.step(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)


def bench_task(
    task: str, num_envs: int = 64, steps: int = 100, warmup: int = 10, chunk: int = 5, seed: int = 0
) -> dict:
    """Env and physics rates of one task, measured in alternating chunks of ``chunk`` steps.

    Alternating keeps both measurements under the same background load, so the ratio holds
    even when the machine is busy with other work.
    """
    env = make_env(task, num_envs=num_envs, seed=seed)
    vector = BatchedVectorEnv(task, num_envs)
    rng = np.random.default_rng(seed)
    env.reset()
    vector.reset(seed=seed)
    for _ in range(warmup):
        actions = rng.uniform(-1, 1, size=(num_envs, env.action_dim))
        env.step(actions)
        vector.step(actions.astype(np.float32))
    batch = env.batch
    recorder = _RecordingBatch(batch)
    env_time = physics_time = vector_time = 0.0
    physics_calls = 0
    for _ in range(max(1, steps // chunk)):
        actions = rng.uniform(-1, 1, size=(chunk, num_envs, env.action_dim))
        recorder.inputs.clear()
        env.batch = recorder
        start = time.perf_counter()
        for k in range(chunk):
            env.step(actions[k])
        env_time += time.perf_counter() - start
        env.batch = batch
        vector_actions = actions.astype(np.float32)
        start = time.perf_counter()
        for k in range(chunk):
            vector.step(vector_actions[k])
        vector_time += time.perf_counter() - start

        resume = env.snapshot()
        for state in recorder.inputs:
            batch.state[:] = state
            t0 = time.perf_counter()
            batch.step(nstep=env.decimation, stage=mujoco.mjtStage.mjSTAGE_NONE)
            physics_time += time.perf_counter() - t0
        physics_calls += len(recorder.inputs)
        env.restore(resume)
    env.close()
    vector.close()
    env_rate = max(1, steps // chunk) * chunk * num_envs / env_time
    vector_rate = max(1, steps // chunk) * chunk * num_envs / vector_time
    physics_rate = physics_calls * num_envs / physics_time
    return {
        "num_envs": num_envs,
        "env_steps_per_s": round(env_rate, 1),
        "physics_env_steps_per_s": round(physics_rate, 1),
        "ratio": round(env_rate / physics_rate, 3),
        "vector_env_steps_per_s": round(vector_rate, 1),
        "vector_ratio": round(vector_rate / env_rate, 3),
        "decimation": env.decimation,
        "physics_threads": batch.nthread,
    }


def bench_envs(
    tasks: tuple[str, ...] = BENCH_TASKS, num_envs: int = 64, steps: int = 100, render_frames: int = 20
) -> dict:
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise KeyError(f"unknown tasks {unknown}; allowed: {', '.join(TASKS)}")
    result: dict[str, Any] = {
        "tasks": {task: bench_task(task, num_envs=num_envs, steps=steps) for task in tasks}
    }
    if any(task.startswith("so101") for task in tasks):
        from striata.envs.tasks.so101.render_cost import measure

        result["so101_render"] = measure(frames=render_frames)
    return result
