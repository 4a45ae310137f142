"""How deep a joint configuration presses a robot into itself, from its model's collision geoms.

Joint limits alone do not keep a humanoid safe from its own commands: with every joint driven to a
limit, a G1's wrist meets its knee, and the contact, stronger than the wrist's 5 N m motor, wedges the
wrist 0.44 rad past its soft limit (measured in the sim bridge). The bridge's safety filter asks this
check about every target it is about to apply and refuses a step that would press two of the robot's
bodies deeper into each other than ``tolerance_m``, or deeper than the target before it (so a robot
already touching itself can always move out).

Only the robot's own geoms count: the model given must hold no world geoms (no floor), and its free
base, if any, stays where the model puts it, since self-contact does not depend on it. MuJoCo's
kinematics and collision on the G1's 33 capsules and spheres take ~6 us.

``hold_upper_body`` serves the controller: a policy target that presses the robot into itself keeps the
joints that do not carry the robot (off the chains from its root to its ``support_bodies``: a G1's arms
and waist) where they were, and the legs take their new targets, where that is enough.
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

# Penetration a configuration may have without being refused: the reference motions striata's G1 tracks
# come within 5.5 mm of it on the G1's capsules (measured on both dance clips).
DEFAULT_TOLERANCE_M = 0.01


class SelfCollision:
    """``depth(q)``: the deepest penetration (m) between two of the robot's own geoms at joint
    positions ``q`` (in ``joint_names`` order); 0 when nothing touches."""

    def __init__(
        self,
        model: mujoco.MjModel,
        joint_names: Sequence[str],
        tolerance_m: float = DEFAULT_TOLERANCE_M,
        support_bodies: Sequence[str] = (),
    ) -> None:
        world = [
            model.geom(i).name or str(i)
            for i in range(model.ngeom)
            if model.geom_bodyid[i] == 0 and (model.geom_contype[i] or model.geom_conaffinity[i])
        ]
        if world:
            raise ValueError(f"self-collision model: world geoms would count as the robot: {world}")
        if tolerance_m < 0:
            raise ValueError(f"tolerance_m must be >= 0, got {tolerance_m}")
        self.model = model
        self.data = mujoco.MjData(model)
        self.tolerance_m = tolerance_m
        joint_ids = [model.joint(name).id for name in joint_names]
        self._qpos_adr = model.jnt_qposadr[joint_ids]
        # The joints that carry the robot: those on the chain from the root to each support body.
        self._carries = np.zeros(len(joint_ids), dtype=bool)
        for name in support_bodies:
            body = model.body(name).id
            while body > 0:
                self._carries |= model.jnt_bodyid[joint_ids] == body
                body = model.body_parentid[body]

    def depth(self, q: np.ndarray) -> float:
        data = self.data
        data.qpos[self._qpos_adr] = q
        mujoco.mj_kinematics(self.model, data)
        mujoco.mj_collision(self.model, data)
        if data.ncon == 0:
            return 0.0
        return max(0.0, -float(data.contact.dist[: data.ncon].min()))

    def hold_upper_body(self, allowed: np.ndarray, target: np.ndarray, depth: float) -> np.ndarray | None:
        """``target`` with the joints that do not carry the robot at ``allowed`` (a posture no deeper than
        ``depth``), where that keeps it within ``depth`` (m); None where it does not (a leg moves the
        contact)."""
        mixed = np.where(self._carries, target, allowed)
        return mixed if self.depth(mixed) <= depth else None
