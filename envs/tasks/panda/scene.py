"""The Panda scenes, built in code around the robot spec: gym-hil's floor, lights, ``front`` camera and cube,
plus a ``workspace`` camera framed on the pick area.

The robot comes from ``striata.envs.robots.panda`` (actuators added in code, gravity compensated); this module
adds the world around it and compiles the model. The robot files' sensors, keyframes and lights are
dropped so that the local asset and the menagerie composition compile to the same scene.
"""

from __future__ import annotations

import mujoco

from striata.envs.robots.panda import PANDA, PINCH_SITE, add_panda_actuators, compensate_gravity, panda_spec

BLOCK = "block"
BLOCK_HALF_SIZE = 0.02
BLOCK_MASS = 0.1
TARGET = "target"
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


def build_scene(
    physics_dt: float, image_size: int, *, block: bool = False, target: bool = False
) -> mujoco.MjModel:
    """Compile the Panda scene; ``block`` adds the free 4 cm cube, ``target`` a visual mocap sphere."""
    spec = panda_spec()
    for sensor in list(spec.sensors):
        spec.delete(sensor)
    for key in list(spec.keys):
        spec.delete(key)
    # Menagerie's Panda brings a light of its own; the scene's lighting is gym-hil's on both paths.
    for light in list(spec.lights):
        spec.delete(light)
    add_panda_actuators(spec)
    compensate_gravity(spec)

    spec.option.timestep = physics_dt
    # Implicit integration of the servos' damping: kd = 450 on a 0.1 kg m^2 armature is unstable
    # with explicit Euler at 2 ms.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # gym-hil's noslip pass keeps a pinched cube from creeping out of the pads.
    spec.option.noslip_iterations = 5
    spec.option.noslip_tolerance = 0.0

    _add_visuals(spec, image_size)
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
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3.0, 3.0, 0.01], material="grid")

    if block:
        body = world.add_body(name=BLOCK, pos=[0.5, 0.0, BLOCK_HALF_SIZE])
        body.add_freejoint(name=BLOCK)
        body.add_geom(
            name=BLOCK,
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[BLOCK_HALF_SIZE] * 3,
            mass=BLOCK_MASS,
            rgba=[0.6, 0.3, 0.6, 1.0],
        )
        world.add_light(
            pos=[0.0, -0.5, 0.4],
            mode=mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODYCOM,
            targetbody=BLOCK,
            diffuse=[0.8] * 3,
            specular=[0.3] * 3,
        )
    if target:
        body = world.add_body(name=TARGET, pos=[0.5, 0.0, 0.3], mocap=True)
        body.add_geom(
            name=TARGET,
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[0.02, 0.0, 0.0],
            contype=0,
            conaffinity=0,
            rgba=[0.2, 0.8, 0.2, 0.6],
        )

    spec.add_sensor(
        name=PINCH_VEL_SENSOR,
        type=mujoco.mjtSensor.mjSENS_FRAMELINVEL,
        objtype=mujoco.mjtObj.mjOBJ_SITE,
        objname=PINCH_SITE,
    )
    model = spec.compile()
    _check_joint_order(model)
    return model


def _add_visuals(spec: mujoco.MjSpec, image_size: int) -> None:
    """gym-hil's look: gradient sky, checker floor, soft headlight."""
    spec.visual.headlight.diffuse = [0.4, 0.4, 0.4]
    spec.visual.headlight.ambient = [0.5, 0.5, 0.5]
    spec.visual.global_.azimuth = 160.0
    spec.visual.global_.elevation = -20.0
    spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, image_size)
    spec.visual.global_.offheight = max(spec.visual.global_.offheight, image_size)
    spec.stat.center = [0.3, 0.0, 0.4]
    spec.stat.extent = 0.8
    spec.add_texture(
        name="skybox",
        type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
        rgb1=[0.3, 0.5, 0.7],
        rgb2=[0.0, 0.0, 0.0],
        width=32,
        height=512,
    )
    spec.add_texture(
        name="grid",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.1, 0.2, 0.3],
        rgb2=[0.2, 0.3, 0.4],
        width=512,
        height=512,
    )
    grid = spec.add_material(name="grid", texrepeat=[2.0, 2.0], texuniform=True, reflectance=0.0)
    grid.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "grid"


def _check_joint_order(model: mujoco.MjModel) -> None:
    """The tasks index qpos/qvel/ctrl by position: the arm's joints and actuators must come first."""
    for i, name in enumerate(PANDA.joint_names):
        joint = model.joint(name)
        if joint.qposadr[0] != i or joint.dofadr[0] != i or model.actuator(i).name != name:
            raise RuntimeError(f"Panda scene: {name!r} is not joint/actuator {i}; the asset's layout changed")
