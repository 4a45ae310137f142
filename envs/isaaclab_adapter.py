"""Isaac Lab adapter: an Isaac Lab ``ManagerBasedRLEnv`` as a striata batched env on GPU tensors.

``IsaacLabEnv(task)`` maps a striata task name to an Isaac Lab task id (``ISAACLAB_TASKS``; an
Isaac Lab id such as ``Isaac-Velocity-Flat-G1-v0`` is taken as it is), builds the env with
``gym.make(task_id, cfg=...)`` from Isaac Lab's registered config, and steps it:
``step(actions[N, A]) -> obs, reward, terminated, truncated, info`` with torch tensors on the
simulation device. Isaac Lab's ``terminated`` and ``time_outs`` stay apart (time-outs are
bootstrapped); ``info["success"]`` comes from a termination term named ``success`` when the task
has one. ``info`` follows the device env contract of ``G1TrackingDeviceEnv``, so
``striata.learner.device_rollout`` trains PPO on either without host copies: ``info["final_obs"]`` covers
all N envs (the time-outs' rows are the ones to bootstrap from) and ``info["episode_length"]`` is
each ended episode's length (0 elsewhere); nothing in ``step`` waits for the GPU. Isaac Lab resets
ended envs inside ``step`` and keeps no observation of their last state, so a time-out's final
observation is its observation before the step, the approximation rsl_rl makes on Isaac Lab
(V(s_t) instead of V(s_t+1) in the bootstrap).

Isaac Lab needs Omniverse's ``AppLauncher`` started before its modules import; ``IsaacLabEnv``
starts one (headless) unless the caller already has.
"""

from __future__ import annotations

from typing import Any

import torch

# striata task -> Isaac Lab task id, where Isaac Lab has the same robot and task.
ISAACLAB_TASKS = {
    "g1_velocity_flat": "Isaac-Velocity-Flat-G1-v0",
    "g1_velocity_rough": "Isaac-Velocity-Rough-G1-v0",
    "franka_lift": "Isaac-Lift-Cube-Franka-v0",
    "franka_reach": "Isaac-Reach-Franka-v0",
}


class IsaacLabTaskError(ValueError):
    """A task name with no Isaac Lab counterpart."""


def isaaclab_task_id(task: str) -> str:
    """The Isaac Lab task id of a striata task name, or an Isaac Lab id (``Isaac-...``) as given."""
    if task.startswith("Isaac-"):
        return task
    if task not in ISAACLAB_TASKS:
        raise IsaacLabTaskError(
            f"task: {task!r} has no Isaac Lab counterpart; "
            f"use one of {sorted(ISAACLAB_TASKS)} or an 'Isaac-' id"
        )
    return ISAACLAB_TASKS[task]


def split_dones(terminated: torch.Tensor, time_outs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(terminated, truncated) bool tensors: a time-out that is also a termination counts as a termination."""
    terminated = terminated.bool()
    return terminated, time_outs.bool() & ~terminated


def policy_observation(obs: dict[str, Any]) -> torch.Tensor | dict[str, torch.Tensor]:
    """Isaac Lab's observation groups as striata's: one group -> its tensor, several -> the dict of them."""
    groups = {name: value for name, value in obs.items() if isinstance(value, torch.Tensor)}
    if not groups:
        raise ValueError(f"observation has no tensor groups: keys {sorted(obs)}")
    return next(iter(groups.values())) if len(groups) == 1 else groups


class IsaacLabEnv:
    """A ``ManagerBasedRLEnv`` of ``task`` with ``num_envs`` envs, as a striata batched env on GPU tensors."""

    def __init__(self, task: str, num_envs: int, device: str = "cuda:0", headless: bool = True) -> None:
        from isaaclab.app import AppLauncher  # Isaac Lab's modules import only after the app starts

        self._app = AppLauncher(headless=headless, device=device).app
        import gymnasium as gym
        import isaaclab_tasks  # noqa: F401 - registers Isaac Lab's tasks with Gymnasium
        from isaaclab_tasks.utils import parse_env_cfg

        self.task_id = isaaclab_task_id(task)
        cfg = parse_env_cfg(self.task_id, device=device, num_envs=num_envs)
        self.env = gym.make(self.task_id, cfg=cfg).unwrapped
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.action_dim = int(self.env.action_manager.total_action_dim)
        terms = self.env.termination_manager.active_terms
        self._success_term = "success" if "success" in terms else None
        self._length = torch.zeros(num_envs, dtype=torch.int64, device=self.device)

    def reset(self) -> torch.Tensor | dict[str, torch.Tensor]:
        obs, _ = self.env.reset()
        self._obs = policy_observation(obs)
        self._length.zero_()
        return self._obs

    def step(
        self, actions: torch.Tensor
    ) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        if actions.shape != (self.num_envs, self.action_dim):
            raise ValueError(
                f"actions: expected shape {(self.num_envs, self.action_dim)}, got {tuple(actions.shape)}"
            )
        obs, reward, terminated, time_outs, extras = self.env.step(actions)
        terminated, truncated = split_dones(terminated, time_outs)
        previous, obs = self._obs, policy_observation(obs)
        self._obs = obs
        success = (
            self.env.termination_manager.get_term(self._success_term).bool()
            if self._success_term
            else torch.zeros_like(terminated)
        )
        self._length += 1
        done = terminated | truncated
        info: dict[str, Any] = {
            "success": success,
            "log": extras.get("log", {}),
            "final_obs": previous,
            "episode_length": torch.where(done, self._length, 0),
        }
        self._length = torch.where(done, 0, self._length)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self.env.close()
        self._app.close()
