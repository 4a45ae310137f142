"""`striata eval POLICY.onnx`: does an exported tracking policy track its clip?

The policy file itself runs (onnxruntime, the deterministic actor it holds) on ``episodes`` copies of
the task it names, each from the clip's first frame, with no pushes, no reset noise and no observation
noise: what a user deploying it would see first. The clip is the one exported beside the policy (its
``.motion.npz``, checked against the policy's hash), or ``clip`` when that side file predates the clip
layout (a CSV, an npz clip or ``builtin:stand``, which is evaluated over 20 s). The env is checked to
feed the policy exactly the observation terms its metadata lists.

Figures: ``reached_end`` (fraction of episodes that reach the clip's end without a termination),
``body_pos_error_m`` (mean tracked-body position error, against the reference moved onto the robot's
anchor as the reward's body terms see it), ``joint_error_rad``, ``anchor_ori_error_rad``, each a mean
over every step of every episode, and ``episode_s`` (mean episode length).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from striata.envs.registry import make_config, make_env
from striata.envs.tasks.g1_tracking.config import STAND_MOTION, G1TrackingConfig
from striata.learner.export import (
    CLIP_ARRAYS,
    PolicyMetadata,
    load_motion,
    make_session,
    motion_path,
    read_metadata,
)

ERROR_KEYS = ("body_pos_error_m", "joint_error_rad", "anchor_ori_error_rad")
# Long enough that the clip's end, not the episode's time limit, ends an episode that keeps up.
EVAL_EPISODE_S = 3600.0
# builtin:stand lasts as long as an episode: its evaluation stands this long.
STAND_EPISODE_S = 20.0
# Frames per second of the ghost video (every other 50 Hz step).
VIDEO_FPS = 25.0
# Observation terms that exist only with state estimation (the policy saw the anchor's position).
STATE_ESTIMATION_TERMS = ("motion_anchor_pos_b", "base_lin_vel")


class EvalError(ValueError):
    """A policy or clip this evaluation cannot run; the message names what and why."""


def clip_source(policy: Path, metadata: PolicyMetadata, clip: str | None) -> str:
    """The clip to evaluate on: ``clip`` if given, else the policy's side file if it holds the clip."""
    if clip is not None:
        return clip
    if load_motion(policy, metadata) is None:
        raise EvalError(f"{policy}: task {metadata.task!r} has no reference motion: not a tracking policy")
    side = motion_path(policy)
    with np.load(side, allow_pickle=False) as data:
        missing = [key for key in CLIP_ARRAYS if key not in data]
    if missing:
        raise EvalError(
            f"{side}: exported before side files carried the clip (no {', '.join(missing)}); "
            "give the clip it was trained on with --clip (a CSV, an npz clip or builtin:stand)"
        )
    return str(side)


class DeployEmulation(NamedTuple):
    """What of the deploy path an env evaluation emulates (the task's settings of the same names; the
    delays [low, high] in physics steps, drawn per env and control step)."""

    action_delay_ticks: tuple[int, int] = (0, 0)
    observation_delay_ticks: tuple[int, int] = (0, 0)
    bridge_brake: bool = False


def tick_range(name: str, text: str) -> tuple[int, int]:
    """``N`` or ``LOW-HIGH`` (physics steps) as [low, high]; a malformed one is an ``EvalError`` naming
    ``name``."""
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise EvalError(f"{name}: {text!r} is not N or LOW-HIGH (physics steps, e.g. 1 or 1-2)") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise EvalError(f"{name}: {text!r} must be 0 <= LOW <= HIGH")
    return bounds


def eval_config(
    policy: Path,
    clip: str | None = None,
    fps: float | None = None,
    physics_dt: float | None = None,
    from_standing: bool = False,
    deploy: DeployEmulation | None = None,
) -> tuple[PolicyMetadata, G1TrackingConfig, str]:
    """The policy's metadata, the task config its evaluation runs (first frame, no pushes, no noise, its
    observation layout, the physics step it trained at unless ``physics_dt`` says another; with
    ``from_standing`` the robot starts standing on its default pose, as deployed; ``deploy``: what of
    the deploy path the env emulates) and the clip's source."""
    deploy = deploy or DeployEmulation()
    metadata = read_metadata(policy)
    if not metadata.task.startswith("g1_tracking"):
        raise EvalError(f"{policy}: task {metadata.task!r}: striata eval measures tracking policies")
    source = clip_source(policy, metadata, clip)
    motion: dict[str, Any] = {"file": source}
    if fps is not None:
        motion["fps"] = fps
    config = make_config(
        metadata.task,
        {
            "motion": motion,
            "sampling": {"first_frame": True, "standing_start": 1.0 if from_standing else 0.0},
            "randomization": {"enabled": False},
            "observation_noise": {"enabled": False},
            "episode_length_s": STAND_EPISODE_S if source == STAND_MOTION else EVAL_EPISODE_S,
            "state_estimation": any(n in metadata.observation_names for n in STATE_ESTIMATION_TERMS),
            **_physics(metadata, physics_dt),
            "action_delay_ticks": deploy.action_delay_ticks,
            "observation_delay_ticks": deploy.observation_delay_ticks,
            "bridge_brake": deploy.bridge_brake,
            # As the policy trained: an export from before targets were clipped did not clip them.
            "clip_targets": bool(metadata.clip_targets),
        },
    )
    assert isinstance(config, G1TrackingConfig)
    return metadata, config, source


def _physics(metadata: PolicyMetadata, physics_dt: float | None) -> dict[str, Any]:
    """The task settings of the physics step: ``physics_dt``, else the policy's own (older exports did
    not record it: the task's default)."""
    step = physics_dt if physics_dt is not None else metadata.physics_dt
    if step is None:
        return {}
    decimation = round(metadata.control_dt / step)
    if step <= 0 or decimation < 1 or abs(decimation * step - metadata.control_dt) > 1e-9:
        raise EvalError(f"physics_dt: {step} s does not divide the policy's step of {metadata.control_dt} s")
    return {"physics_dt": step, "decimation": decimation}


def evaluate_policy(
    policy: Path,
    episodes: int = 16,
    clip: str | None = None,
    fps: float | None = None,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
    video: Path | None = None,
    sim_bridge: bool = False,
    physics_dt: float | None = None,
    from_standing: bool = False,
    deploy: DeployEmulation | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``policy`` from its clip's first frame; the figures above.

    ``fps`` is the frame rate of a CSV ``clip`` (CSV files store none; default the task's).
    ``on_step(done, total)`` sees the progress in env steps of the longest episode (in episodes with
    ``sim_bridge``). With ``video``, the first episode is rendered there with its reference beside it
    as a ghost (``eval_video``). With ``sim_bridge`` each episode is a deployment through `striata
    bridge sim` and `striata deploy` instead (``sim2sim``), in real time. ``physics_dt`` simulates the
    env at another step than the policy trained at (the sim bridge's G1 steps at its tick, 2 ms);
    ``from_standing`` starts each env episode as the sim bridge's do, standing on the default pose;
    ``deploy`` emulates the deploy path's latency and its bridge's brake in the env."""
    deploy = deploy or DeployEmulation()
    if episodes < 1:
        raise EvalError(f"episodes: must be >= 1, got {episodes}")
    metadata, config, source = eval_config(policy, clip, fps, physics_dt, from_standing, deploy)
    about = {
        "policy": str(policy),
        "task": metadata.task,
        "clip": metadata.motion_source or source,
        "segment_s": metadata.motion_segment_s,
        "episodes": episodes,
        "trained_physics_dt": metadata.physics_dt,
        "clip_targets": bool(metadata.clip_targets),
    }
    if sim_bridge:
        from striata.deploy.sim_robot import CONTROL_PERIOD_S
        from striata.sim2sim import evaluate_on_sim_bridge

        if video is not None:
            raise EvalError("video: rendered from the training env only; leave out --sim-bridge or --video")
        if from_standing:
            raise EvalError("from_standing: the sim bridge's episodes always start standing; leave it out")
        if physics_dt is not None:
            raise EvalError(f"physics_dt: the sim bridge's G1 steps at its tick, {CONTROL_PERIOD_S} s")
        if deploy != DeployEmulation():
            raise EvalError("the sim bridge has its own latency and brake: leave out the deploy emulation")
        return {
            **about,
            "physics_dt": CONTROL_PERIOD_S,
            **evaluate_on_sim_bridge(policy, clip, episodes, on_step),
        }
    about.update(physics_dt=config.physics_dt, from_standing=from_standing, **deploy._asdict())
    env = make_env(metadata.task, num_envs=episodes, seed=seed, config=config)
    terms = [(name, int(size)) for name, size in env.observation_terms]
    expected = list(zip(metadata.observation_names, metadata.observation_sizes, strict=True))
    if terms != expected:
        raise EvalError(f"{policy}: the policy reads observations {expected}, the task's env gives {terms}")
    session = make_session(policy)
    clip_steps = int(env.reference.num_frames)

    obs = env.reset()
    running = np.ones(episodes, dtype=bool)
    reached = np.zeros(episodes, dtype=bool)
    steps = np.zeros(episodes, dtype=np.int64)
    sums = {key: np.zeros(episodes) for key in ERROR_KEYS}
    counts = np.zeros(episodes)
    poses: list[tuple[np.ndarray, np.ndarray]] = []  # the first episode's robot and reference qpos
    for t in range(clip_steps + 1):
        if video is not None and running[0]:
            poses.append((env.qpos[0].copy(), env.reference_state(np.array([0]))[0][0]))
        errors = env.tracking_errors()
        for key in ERROR_KEYS:
            sums[key][running] += errors[key][running]
        counts[running] += 1
        actions = session.run(None, {"obs": np.asarray(obs["policy"], dtype=np.float32)})[0]
        obs, _, terminated, truncated, info = env.step(actions.astype(np.float64))
        ended = (terminated | truncated) & running
        reached[ended] = info["success"][ended]
        steps[ended] = t + 1
        running &= ~ended
        if on_step is not None:
            on_step(t + 1, clip_steps)
        if not running.any():
            break
    per_episode = {key: sums[key] / np.maximum(counts, 1) for key in ERROR_KEYS}
    figures: dict[str, Any] = {}
    if video is not None:
        from striata.eval_video import render_ghost_video

        robot, reference = (np.stack(column) for column in zip(*poses, strict=True))
        every = max(1, round(1 / (VIDEO_FPS * float(env.step_dt))))
        render_ghost_video(robot[::every], reference[::every], 1 / (every * float(env.step_dt)), video)
        figures["video"] = str(video)
    return {
        **about,
        "clip_s": round(clip_steps * float(env.step_dt), 3),
        "reached_end": float(reached.mean()),
        **{key: round(float(values.mean()), 4) for key, values in per_episode.items()},
        "episode_s": round(float(steps.mean() * env.step_dt), 3),
        **figures,
    }
