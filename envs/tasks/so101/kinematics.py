"""Forward kinematics of the SO-101's tip on a bare copy of the arm: the scripted policies' IK and the
deploy controller's ``tip_pos`` observation term (a robot computer has the joint angles, not the tip).

The tip (``TIP_SITE``, the grasp point between the jaws) is in the arm base's frame, which is the tasks'
world frame (its origin is the arm's base on the table top).
"""

from __future__ import annotations

import mujoco
import numpy as np

from striata.envs.robots.so101 import N_ARM, TIP_SITE, add_tip_and_wrist_camera, so101_spec


class ArmKinematics:
    """Forward kinematics and tip Jacobians of a bare SO-101 (no meshes: it compiles in milliseconds)."""

    def __init__(self) -> None:
        spec = so101_spec()
        for geom in list(spec.geoms):
            if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
                spec.delete(geom)
        for mesh in list(spec.meshes):
            spec.delete(mesh)
        add_tip_and_wrist_camera(spec)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.tip = self.model.site(TIP_SITE).id
        self.joint_range = self.model.jnt_range[: N_ARM + 1].copy()

    def tip_and_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tip position [N, 3], orientation [N, 3, 3] and Jacobian [N, 6, 5] (arm joints) at joints ``q``."""
        n = len(q)
        pos, rot, jac = np.empty((n, 3)), np.empty((n, 3, 3)), np.empty((n, 6, N_ARM))
        jacp, jacr = np.zeros((3, self.model.nv)), np.zeros((3, self.model.nv))
        for i in range(n):
            self.data.qpos[:] = q[i]
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, jacp, jacr, self.tip)
            pos[i] = self.data.site_xpos[self.tip]
            rot[i] = self.data.site_xmat[self.tip].reshape(3, 3)
            jac[i, :3], jac[i, 3:] = jacp[:, :N_ARM], jacr[:, :N_ARM]
        return pos, rot, jac

    def tip_position(self, q: np.ndarray) -> np.ndarray:
        """Tip positions [N, 3] at joints ``q`` [N, 6] (no Jacobian)."""
        out = np.empty((len(q), 3))
        for i in range(len(q)):
            self.data.qpos[:] = q[i]
            mujoco.mj_kinematics(self.model, self.data)
            out[i] = self.data.site_xpos[self.tip]
        return out
