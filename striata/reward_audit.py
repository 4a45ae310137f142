"""``striata audit-reward``: how an experiment's reward model rates a policy's own states.

A run on a model's rewards is only as good as the model is where the policy goes, and a learner
goes where no data set went. Before such a run (or after one, on its exported policy), this steps
the experiment's env with a policy, renders and sends frames exactly as the run's actors do
(``striata.actors.frame_labels.FrameLabeller``: every ``every_k`` steps and each episode's last state, to
the reward server the experiment configures) and scores the labels against the simulator's own
progress and success (``striata.learner.progress_audit``), the figures ``reward_model/*``
logs during training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from rich.console import Console

from striata.actors.frame_labels import FrameLabeller
from striata.envs.registry import make_env
from striata.envs.rollout import POLICIES, make_policy, run_episodes
from striata.errors import ConfigFileError
from striata.experiment import ExperimentConfig, RewardModelSection
from striata.learner.progress_audit import audit_labels
from striata.train import RewardService, reward_spec


class AuditPolicyError(ValueError):
    """A policy file that cannot drive the experiment's env."""


def audit_reward(
    config: ExperimentConfig,
    policy: str,
    num_envs: int = 16,
    steps: int = 100,
    noise: float = 0.1,
    seed: int = 0,
    console: Console | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Agreement of the experiment's reward model with the simulator on ``policy``'s rollouts.

    ``policy``: an ONNX file from ``striata export`` or one of ``striata.envs.rollout.POLICIES``; ``noise`` is
    the standard deviation of Gaussian noise added to its actions (a learner explores).
    """
    try:
        # The section's own checks of a run that uses it (one server source, a task text), also where
        # the config leaves it disabled.
        section = RewardModelSection.model_validate({**config.reward_model.model_dump(), "enabled": True})
    except ValidationError as exc:
        raise ConfigFileError(f"config: reward_model: {exc.errors()[0]['msg']}") from None
    with ExitStack() as cleanup:
        env = make_env(config.task, num_envs=num_envs, seed=seed, config=config.task_settings())
        cleanup.callback(env.close)
        act = NoisyPolicy(_policy(policy, config, env, np.random.default_rng(seed)), noise, seed)
        # The audit runs without Ray: a server the run would place on Ray starts here, as a subprocess.
        service = RewardService(
            section.model_copy(update={"placement": "process"}), console or Console(stderr=True)
        )
        cleanup.callback(service.stop)
        labeller = FrameLabeller(reward_spec(config, service.endpoint), actor_id=0, env=env)
        cleanup.callback(labeller.close)

        def after_step(terminated: np.ndarray, truncated: np.ndarray, info: dict[str, Any]) -> None:
            labeller.after_step(terminated, truncated, info)
            if on_step is not None:
                on_step()

        episodes = run_episodes(env, act, steps, after_step)
        labeller.settle(timeout_s=section.deadline_ms / 1000 + 5.0)
        labels, stats = labeller.take_labels()
    scored = labels.select(labels.ok)
    figures = audit_labels(scored, section.success_threshold)
    error = np.abs(scored.progress - scored.true_progress)
    success_rate = episodes.means()["success"]
    return {
        "task": config.task,
        "policy": policy,
        "num_envs": num_envs,
        "steps": steps,
        "noise": noise,
        "episodes": len(episodes),
        "episode_success_rate": None if success_rate is None else round(success_rate, 3),
        "frames_sent": int(stats.frames_sent),
        "labels_ok": len(scored),
        "label_statuses": stats.statuses,
        "true_success_frames": int((scored.true_success > 0.5).sum()),
        "called_success_frames": int((scored.done_prob >= section.success_threshold).sum()),
        **{key: _rounded(value) for key, value in figures.items() if key != "count"},
        "progress_mae": _rounded(float(np.mean(error)) if error.size else math.nan),
    }


def _policy(
    name: str, config: ExperimentConfig, env: Any, rng: np.random.Generator
) -> Callable[[np.ndarray], np.ndarray]:
    if name in POLICIES:
        return make_policy(name, env, rng)
    path = Path(name)
    if path.suffix != ".onnx":
        raise AuditPolicyError(f"policy: {name!r} is neither an ONNX file nor one of {', '.join(POLICIES)}")
    from striata.reward_server.progress_model.rollout_policies import OnnxPolicy

    onnx = OnnxPolicy(path)
    if onnx.metadata.task != config.task:
        raise AuditPolicyError(
            f"policy: {path} was trained on {onnx.metadata.task!r}, the config's task is {config.task!r}"
        )
    algo = getattr(config, config.algo)
    key = algo.obs_key if config.algo == "sac" else algo.actor_obs_key
    width = onnx.metadata.obs_dim

    def act(obs: Any) -> np.ndarray:
        x = obs[key] if isinstance(obs, dict) else obs
        if x.shape[1:] != (width,):
            raise AuditPolicyError(
                f"policy: {path} takes observations of {width}, the env gives {list(x.shape[1:])}"
            )
        return onnx(x)

    return act


class NoisyPolicy:
    """``act`` plus Gaussian action noise of standard deviation ``noise``; passes ``reset`` on."""

    def __init__(self, act: Callable[[np.ndarray], np.ndarray], noise: float, seed: int) -> None:
        self.act = act
        self.noise = noise
        self.rng = np.random.default_rng(seed + 1)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        actions = self.act(obs)
        return actions + self.noise * self.rng.standard_normal(actions.shape) if self.noise else actions

    def reset(self, mask: np.ndarray) -> None:
        if hasattr(self.act, "reset"):
            self.act.reset(mask)


def _rounded(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, 4)
