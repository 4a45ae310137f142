"""The Panda scenes, built in code around the robot spec: gym-hil's floor, lights, ``front`` camera and cube,
plus a ``workspace`` camera framed on the pick area.

The robot comes from ``striata.envs.robots.panda`` (actuators added in code, gravity compensated); this module
adds the world around it and compiles the model. The robot files' sensors, keyframes and lights are
dropped so that the local asset and the menagerie composition compile to the same scene.
"""

from __future__ import annotations

import mujoco

from striata.envs.robots.panda import PANDA, PINCH_SITE, add_panda_actuators, compensate_gravity, panda_spec
from striata.envs.tasks.tabletop.scene import (
    SceneLook,
    add_cube,
    add_target,
    add_visuals,
    compile_scene,
    strip_robot_extras,
)

BLOCK = "block"
BLOCK_HALF_SIZE = 0.02
BLOCK_MASS = 0.1
FRONT_CAMERA = "front"
# Framed on the cube's spawn area and the air above it, close enough that the gripper-to-cube gap spans
# many pixels at 80x80: the view the reward server's progress model is trained on.
WORKSPACE_CAMERA = "workspace"
WORKSPACE_CAMERA_POS = (0.95, 0.0, 0.42)
WORKSPACE_CAMERA_QUAT = (0.6234381, 0.3336539, 0.3336539, 0.6234381)
WORKSPACE_CAMERA_FOVY = 50.0
# A second view of the pick area from the side (+y, looking along -y, tilted 20 degrees down): the
# workspace camera looks along x, so a gripper short of the cube and one at it can look alike from there;
# from the side that gap spans pixels. Two views let a reward model tell them apart (HIL-SERL, too, gives
# its reward classifier more than one camera).
SIDE_CAMERA = "side"
SIDE_CAMERA_POS = (0.48, 0.65, 0.3)
SIDE_CAMERA_QUAT = (0.0, 0.0, 0.5716756, 0.8204798)
SIDE_CAMERA_FOVY = 45.0
PINCH_VEL_SENSOR = "pinch_vel"
# gym-hil's look: gradient sky, dark blue checker floor, soft headlight (MuJoCo's default specular).
LOOK = SceneLook(
    headlight_diffuse=(0.4, 0.4, 0.4),
    headlight_ambient=(0.5, 0.5, 0.5),
    headlight_specular=(0.5, 0.5, 0.5),
    stat_center=(0.3, 0.0, 0.4),
    stat_extent=0.8,
    checker="grid",
    checker_rgb1=(0.1, 0.2, 0.3),
    checker_rgb2=(0.2, 0.3, 0.4),
    checker_size=512,
    checker_repeat=2.0,
)


def build_scene(
    physics_dt: float, image_size: int, *, cube: bool = False, target: bool = False
) -> mujoco.MjModel:
    """Compile the Panda scene; ``cube`` adds the free 4 cm cube (``BLOCK``), ``target`` a visual mocap
    sphere."""
    spec = panda_spec()
    # Menagerie's Panda brings a light of its own; the scene's lighting is gym-hil's on both paths.
    strip_robot_extras(spec)
    add_panda_actuators(spec)
    compensate_gravity(spec)

    spec.option.timestep = physics_dt
    # Implicit integration of the servos' damping: kd = 450 on a 0.1 kg m^2 armature is unstable
    # with explicit Euler at 2 ms.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # gym-hil's noslip pass keeps a pinched cube from creeping out of the pads.
    spec.option.noslip_iterations = 5
    spec.option.noslip_tolerance = 0.0

    add_visuals(spec, image_size, LOOK)
    world = spec.worldbody
    world.add_camera(
        name=FRONT_CAMERA, pos=[1.3, 0.0, 0.7], quat=[0.5963678, 0.3799282, 0.3799282, 0.5963678], fovy=45.0
    )
    world.add_camera(
        name=WORKSPACE_CAMERA,
        pos=list(WORKSPACE_CAMERA_POS),
        quat=list(WORKSPACE_CAMERA_QUAT),
        fovy=WORKSPACE_CAMERA_FOVY,
    )
    world.add_camera(
        name=SIDE_CAMERA, pos=list(SIDE_CAMERA_POS), quat=list(SIDE_CAMERA_QUAT), fovy=SIDE_CAMERA_FOVY
    )
    world.add_light(pos=[0.0, 0.0, 3.0], dir=[0.0, 0.0, -1.0], diffuse=[1.0, 1.0, 1.0], specular=[0.3] * 3)
    world.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3.0, 3.0, 0.01], material=LOOK.checker
    )

    if cube:
        add_cube(spec, BLOCK, (0.5, 0.0, BLOCK_HALF_SIZE), BLOCK_HALF_SIZE, BLOCK_MASS, (0.6, 0.3, 0.6, 1.0))
        world.add_light(
            pos=[0.0, -0.5, 0.4],
            mode=mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODYCOM,
            targetbody=BLOCK,
            diffuse=[0.8] * 3,
            specular=[0.3] * 3,
        )
    if target:
        add_target(spec, (0.5, 0.0, 0.3), 0.02)
    return compile_scene(spec, PANDA, PINCH_SITE, PINCH_VEL_SENSOR)
