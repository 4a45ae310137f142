"""The SO-101 scene, built in code around the robot spec: a table, lights, a ``front`` webcam, the cube or
the target, and decimated visual meshes for rendering.

The arm stands on the table top (z = 0) with its base at the origin, reaching along +x. The ``front``
camera is where a user would clamp a webcam: across the table from the arm, 30 cm up and 20 cm to the
side, looking down at the pick area (the cube spans a few pixels at 64x64, not one) with the arm behind
it. The ``wrist`` camera rides on the gripper (``striata.envs.robots.so101``). The robot file's
keyframes, sensors, lights and actuators are dropped; actuators are added in code (STS3215 position
servos), so both asset paths give the same controls.
"""

from __future__ import annotations

import mujoco
import numpy as np

from striata.envs.robots.so101 import (
    SO101,
    TIP_SITE,
    add_so101_actuators,
    add_tip_and_wrist_camera,
    so101_spec,
)
from striata.envs.tasks.tabletop.scene import (
    SceneLook,
    add_cube,
    add_target,
    add_visuals,
    compile_scene,
    strip_robot_extras,
)
from striata.envs.visual_meshes import DecimationReport, decimate_visual_meshes

CUBE = "cube"
CUBE_HALF_SIZE = 0.0125
CUBE_MASS = 0.02  # kg: a 2.5 cm 3D-printed cube
CUBE_SOLREF_TIMECONST = 0.004  # s; MuJoCo raises it to 2 physics steps where physics_dt is larger
TARGET_RADIUS = 0.012
FRONT_CAMERA = "front"
FRONT_CAMERA_POS = (0.45, 0.2, 0.32)
FRONT_CAMERA_TARGET = (0.18, 0.0, 0.04)
FRONT_CAMERA_FOVY = 50.0  # a webcam's field of view (a C920: 43 degrees vertical, 70 horizontal)
TABLE_HALF_SIZE = (0.4, 0.4, 0.02)
TABLE_CENTER_X = 0.2
TIP_VEL_SENSOR = "tip_vel"
# The asset scene's look (gradient sky, soft headlight without highlights) and a grey checkered table top.
LOOK = SceneLook(
    headlight_diffuse=(0.5, 0.5, 0.5),
    headlight_ambient=(0.4, 0.4, 0.4),
    headlight_specular=(0.0, 0.0, 0.0),
    stat_center=(0.15, 0.0, 0.1),
    stat_extent=0.5,
    checker="table",
    checker_rgb1=(0.55, 0.55, 0.6),
    checker_rgb2=(0.45, 0.45, 0.5),
    checker_size=256,
    checker_repeat=8.0,
)


def look_at_quat(pos: tuple[float, float, float], target: tuple[float, float, float]) -> np.ndarray:
    """Camera orientation (w, x, y, z) looking from ``pos`` at ``target``, the world's z up in the image."""
    forward = np.asarray(target, dtype=float) - np.asarray(pos, dtype=float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    # A MuJoCo camera looks along its -z with +y up in the image.
    rotation = np.stack((right, up, -forward), axis=1)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, rotation.ravel())
    return quat


def build_scene(
    physics_dt: float,
    image_size: int,
    *,
    cube: bool = False,
    target: bool = False,
    visual_meshes: str = "decimated",
    visual_mesh_faces: int = 1500,
) -> tuple[mujoco.MjModel, DecimationReport | None]:
    """Compile the SO-101 scene; ``cube`` adds the free 2.5 cm cube, ``target`` a visual mocap sphere.

    ``visual_meshes="decimated"`` reduces every visual mesh to ``visual_mesh_faces`` triangles (the report
    says how many there were and are); ``"original"`` keeps the asset's meshes (report None).
    """
    spec = so101_spec()
    strip_robot_extras(spec)
    add_so101_actuators(spec)
    add_tip_and_wrist_camera(spec)
    report = None
    if visual_meshes == "decimated":
        report = decimate_visual_meshes(spec, visual_mesh_faces)

    spec.option.timestep = physics_dt
    # Implicit damping: the servos' kv and the joints' damping on a 0.028 kg m^2 armature stay stable at
    # any step size, and the fast gripper joint does too.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # Elliptic friction cones with a high impedance ratio (as menagerie's SO-101): a 20 g cube pinched by
    # the thin jaws does not creep out of them.
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0

    add_visuals(spec, image_size, LOOK)
    world = spec.worldbody
    world.add_camera(
        name=FRONT_CAMERA,
        pos=list(FRONT_CAMERA_POS),
        quat=look_at_quat(FRONT_CAMERA_POS, FRONT_CAMERA_TARGET).tolist(),
        fovy=FRONT_CAMERA_FOVY,
    )
    world.add_light(pos=[0.2, -0.3, 1.2], dir=[-0.1, 0.25, -1.0], diffuse=[0.8, 0.8, 0.8], specular=[0.2] * 3)
    hx, hy, hz = TABLE_HALF_SIZE
    world.add_geom(
        name="table",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[hx, hy, hz],
        pos=[TABLE_CENTER_X, 0.0, -hz],
        material=LOOK.checker,
    )

    if cube:
        add_cube(
            spec,
            CUBE,
            (0.2, 0.0, CUBE_HALF_SIZE),
            CUBE_HALF_SIZE,
            CUBE_MASS,
            (0.85, 0.15, 0.1, 1.0),
            # Torsional friction: a cube held at one edge does not spin out of the jaws.
            condim=4,
            friction=[1.0, 0.01, 0.0001],
            # MuJoCo's contacts are soft relative to the bodies' masses: the default (solref 0.02) lets the
            # jaws' squeeze sink centimetres into a 20 g cube, which then hangs off the fingertips. A stiff,
            # hard contact (time constant 2 physics steps, the smallest MuJoCo allows) keeps it to about a
            # millimetre; priority makes every contact of the cube use it.
            priority=1,
            solref=[CUBE_SOLREF_TIMECONST, 1.0],
            solimp=[0.95, 0.99, 0.001, 0.5, 2.0],
        )
    if target:
        add_target(spec, (0.2, 0.0, 0.1), TARGET_RADIUS)
    return compile_scene(spec, SO101, TIP_SITE, TIP_VEL_SENSOR), report
