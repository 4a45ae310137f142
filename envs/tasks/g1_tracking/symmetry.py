"""Left/right mirror maps of the G1 tracking task, for PPO's symmetry augmentation and mirror loss.

``tracking_symmetry(policy_terms)`` builds them from ``G1_JOINT_NAMES`` (actions [29]), the policy's
observation terms (``POLICY_TERMS``, 160, or the deployable 154) and ``TRACKED_BODIES`` (critic
observation [286]); the rules for joints, vectors, pseudo-vectors and 6D rotations are
``striata.envs.symmetry``'s. ``SYMMETRIES`` names them as ``ppo.symmetry.mirror`` accepts them
(through the task registry). Waist yaw and roll change sign like every roll and yaw joint.

Approximations, all small: the G1 model is mirror-symmetric only to ~1e-5 m (e.g. shoulder offsets
0.10022 vs 0.10021 m) and its link inertias to the same order; a mirrored observation is that of the
robot tracking the *mirrored* reference clip, which the augmentation assumes to be as plausible as
the clip itself. Both observation maps are exact involutions (``tests/test_learner_symmetry.py``
also checks the joint and body maps against MuJoCo forward kinematics of mirrored poses).
"""

from __future__ import annotations

from collections.abc import Callable

from striata.envs.robots.g1 import G1_JOINT_NAMES, TRACKED_BODIES
from striata.envs.symmetry import (
    PSEUDO_VECTOR,
    ROTATION_6D,
    VECTOR,
    SignedPermutation,
    Symmetry,
    joint_mirror,
    mirror_partners,
    terms_mirror,
)
from striata.envs.tasks.g1_tracking.observations import POLICY_TERMS, TermLayout, policy_term_layout


def g1_joint_mirror() -> SignedPermutation:
    """Mirror of the G1's 29 joints in SDK order (joint positions, velocities, actions)."""
    return joint_mirror(G1_JOINT_NAMES)


def policy_term_mirrors() -> dict[str, SignedPermutation]:
    """Mirror of each tracking policy observation term (``POLICY_TERMS`` names)."""
    joints = g1_joint_mirror()
    return {
        "command_joint_pos": joints,
        "command_joint_vel": joints,
        "motion_anchor_pos_b": VECTOR,
        "motion_anchor_ori_b": ROTATION_6D,
        "base_lin_vel": VECTOR,
        "base_ang_vel": PSEUDO_VECTOR,
        "joint_pos": joints,  # offsets from the default pose, which is itself mirror-symmetric
        "joint_vel": joints,
        "actions": joints,
    }


def tracking_symmetry(policy_terms: TermLayout = POLICY_TERMS) -> Symmetry:
    """Mirrors of the G1 tracking task: actions [29], policy obs [160 or 154], critic obs [286].

    The critic layout follows ``striata.envs.tasks.g1_tracking.observations.critic_obs``: the first four
    policy terms, every tracked body's position (3 each) then 6D orientation (6 each) in the anchor
    frame, then the remaining policy terms.
    """
    terms = policy_term_mirrors()
    partners = mirror_partners(TRACKED_BODIES)
    critic = SignedPermutation.concat(
        [
            terms_mirror(POLICY_TERMS[:4], terms),
            SignedPermutation.blocks(partners, VECTOR),
            SignedPermutation.blocks(partners, ROTATION_6D),
            terms_mirror(POLICY_TERMS[4:], terms),
        ]
    )
    return Symmetry(
        actions=g1_joint_mirror(), policy_obs=terms_mirror(policy_terms, terms), critic_obs=critic
    )


SYMMETRIES: dict[str, Callable[[], Symmetry]] = {
    "g1_tracking": tracking_symmetry,
    "g1_tracking_no_state_estimation": lambda: tracking_symmetry(policy_term_layout(False)),
}
