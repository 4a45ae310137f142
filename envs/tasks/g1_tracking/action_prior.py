"""The G1 tracking task's action prior: the actions that put the PD targets on the reference joints.

With ``target = default + action_scale * action`` (``TrackingMDP.joint_targets``), the action that
targets the reference joint position q_ref is ``(q_ref - default) / action_scale``. The policy reads
q_ref as its first observation term (``command_joint_pos``), in both policy layouts, so one prior serves
both.
``ACTION_PRIORS`` names it as ``ppo.action_prior`` accepts it (through the task registry).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from striata.envs.action_prior import ActionPrior
from striata.envs.robots.g1 import G1
from striata.envs.tasks.g1_tracking.observations import POLICY_TERMS, policy_term_layout


def _command_start() -> int:
    """Where ``command_joint_pos`` starts in the policy observation (the same in both layouts)."""
    starts = set()
    for layout in (POLICY_TERMS, policy_term_layout(False)):
        names = [name for name, _ in layout]
        starts.add(sum(size for _, size in layout[: names.index("command_joint_pos")]))
    (start,) = starts
    return start


def reference_joint_prior() -> ActionPrior:
    """Actions whose PD targets are the reference joint positions of the observation."""
    scale = np.asarray(G1.action_scale, dtype=np.float64)
    default = np.asarray(G1.default_pos, dtype=np.float64)
    return ActionPrior(
        index=_command_start() + np.arange(len(G1.joint_names)), gain=1.0 / scale, offset=-default / scale
    )


ACTION_PRIORS: dict[str, Callable[[], ActionPrior]] = {"reference_joint_pos": reference_joint_prior}
