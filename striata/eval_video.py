"""A video of one tracking episode with its reference beside it as a ghost (``striata eval --video``).

The robot is the scene the policy was evaluated in; the ghost is a second G1 in the same scene with no
collisions, drawn translucent, posed at each step from the reference frame the robot was tracking.
The camera follows the robot's pelvis.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from striata.common.files import atomic_write
from striata.envs.robots.g1 import g1_spec
from striata.envs.tasks.g1_tracking.env import g1_scene_spec
from striata.envs.visual_meshes import decimate_visual_meshes
from striata.learner.session_dataset import encode_video

GHOST_RGBA = (0.35, 0.75, 1.0, 0.35)
# Triangles per visual mesh: the G1's 35 meshes hold 393k, twice over with the ghost.
VISUAL_MESH_FACES = 2000
GHOST_PREFIX = "ghost_"


def ghost_scene(physics_dt: float) -> mujoco.MjModel:
    """The G1 scene with a ghost G1 added; qpos is the robot's, then the ghost's."""
    spec = g1_scene_spec(physics_dt)
    ghost = g1_spec()
    # Each spec is decimated on its own, before one is attached to the other.
    decimate_visual_meshes(spec, VISUAL_MESH_FACES, drop_unused=False)
    decimate_visual_meshes(ghost, VISUAL_MESH_FACES, drop_unused=False)
    for geom in ghost.geoms:
        geom.contype, geom.conaffinity, geom.material, geom.rgba = 0, 0, "", GHOST_RGBA
    spec.worldbody.add_frame().attach_body(ghost.body("pelvis"), GHOST_PREFIX, "")
    spec.visual.quality.offsamples = 0  # software rendering: multisampling costs more than it shows
    return spec.compile()


def render_ghost_video(
    robot_qpos: np.ndarray,
    reference_qpos: np.ndarray,
    fps: float,
    path: Path,
    physics_dt: float = 0.005,
    size: tuple[int, int] = (320, 240),
) -> Path:
    """Render [T, nq] robot and reference poses side by side (one frame each) to an mp4 at ``path``."""
    model = ghost_scene(physics_dt)
    nq = robot_qpos.shape[1]
    if model.nq != 2 * nq:
        raise ValueError(f"poses of {nq} coordinates do not fit a scene of {model.nq}")
    data = mujoco.MjData(model)
    width, height = size
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.distance, camera.azimuth, camera.elevation = 3.5, 120.0, -15.0
    images = []
    with mujoco.Renderer(model, height, width) as renderer:
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
            renderer.scene.flags[flag] = False
        for robot, reference in zip(robot_qpos, reference_qpos, strict=True):
            data.qpos[:nq], data.qpos[nq:] = robot, reference
            mujoco.mj_kinematics(model, data)
            camera.lookat[:] = (robot[0], robot[1], 0.8)
            renderer.update_scene(data, camera)
            images.append(renderer.render())
    video = encode_video(np.stack(images), fps)
    atomic_write(path, lambda f: f.write(video))
    return path
