"""What the tabletop arm scenes share, built around a robot spec: the robot file's extras dropped, the
look (headlight, gradient sky, a checkered surface), the cube, the reach target, the end-effector
velocity sensor and the check that the arm's joints and actuators come first.

Each robot's ``scene`` module composes these with what differs: the robot's actuators, the physics
options, the cameras, lights and surface it stands on, and the cube's size and contacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco

from striata.envs.robots.actuators import RobotConfig
from striata.envs.tasks.tabletop.config import Vec3

TARGET = "target"


@dataclass(frozen=True)
class SceneLook:
    """The numbers of a scene's look; ``checker`` names the checkered texture and material it adds."""

    headlight_diffuse: Vec3
    headlight_ambient: Vec3
    headlight_specular: Vec3
    stat_center: Vec3
    stat_extent: float
    checker: str
    checker_rgb1: Vec3
    checker_rgb2: Vec3
    checker_size: int  # texture width and height (pixels)
    checker_repeat: float  # texture repeats per metre (texuniform)


def strip_robot_extras(spec: mujoco.MjSpec) -> None:
    """Drop the robot file's sensors, keyframes and lights: the scene adds its own, so the local asset and
    menagerie's compile to the same scene."""
    for sensor in list(spec.sensors):
        spec.delete(sensor)
    for key in list(spec.keys):
        spec.delete(key)
    for light in list(spec.lights):
        spec.delete(light)


def add_visuals(spec: mujoco.MjSpec, image_size: int, look: SceneLook) -> None:
    """Headlight, free-camera view, offscreen buffer for ``image_size`` frames, gradient sky and the
    checkered texture and material ``look.checker``."""
    spec.visual.headlight.diffuse = list(look.headlight_diffuse)
    spec.visual.headlight.ambient = list(look.headlight_ambient)
    spec.visual.headlight.specular = list(look.headlight_specular)
    spec.visual.global_.azimuth = 160.0
    spec.visual.global_.elevation = -20.0
    spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, image_size)
    spec.visual.global_.offheight = max(spec.visual.global_.offheight, image_size)
    spec.stat.center = list(look.stat_center)
    spec.stat.extent = look.stat_extent
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
        name=look.checker,
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=list(look.checker_rgb1),
        rgb2=list(look.checker_rgb2),
        width=look.checker_size,
        height=look.checker_size,
    )
    repeat = look.checker_repeat
    material = spec.add_material(
        name=look.checker, texrepeat=[repeat, repeat], texuniform=True, reflectance=0.0
    )
    material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = look.checker


def add_cube(
    spec: mujoco.MjSpec,
    name: str,
    pos: Vec3,
    half_size: float,
    mass: float,
    rgba: tuple[float, ...],
    **contact: Any,
) -> None:
    """The cube to pick: a free body ``name`` (its joint and box geom named alike) at ``pos``; ``contact``
    holds the box geom's contact settings beyond MuJoCo's defaults."""
    body = spec.worldbody.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=name)
    body.add_geom(
        name=name,
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[half_size] * 3,
        mass=mass,
        rgba=list(rgba),
        **contact,
    )


def add_target(spec: mujoco.MjSpec, pos: Vec3, radius: float) -> None:
    """The reach target: a green sphere on a mocap body, without collisions."""
    body = spec.worldbody.add_body(name=TARGET, pos=list(pos), mocap=True)
    body.add_geom(
        name=TARGET,
        type=mujoco.mjtGeom.mjGEOM_SPHERE,
        size=[radius, 0.0, 0.0],
        contype=0,
        conaffinity=0,
        rgba=[0.2, 0.8, 0.2, 0.6],
    )


def compile_scene(
    spec: mujoco.MjSpec, robot: RobotConfig, ee_site: str, ee_vel_sensor: str
) -> mujoco.MjModel:
    """Add the end-effector velocity sensor (``ee_vel_sensor``, world frame, on ``ee_site``), compile, and
    check that ``robot``'s joints and actuators come first."""
    spec.add_sensor(
        name=ee_vel_sensor,
        type=mujoco.mjtSensor.mjSENS_FRAMELINVEL,
        objtype=mujoco.mjtObj.mjOBJ_SITE,
        objname=ee_site,
    )
    model = spec.compile()
    # The tasks index qpos/qvel/ctrl by position: the arm's joints and actuators must come first.
    for i, name in enumerate(robot.joint_names):
        joint = model.joint(name)
        if joint.qposadr[0] != i or joint.dofadr[0] != i or model.actuator(i).name != name:
            raise RuntimeError(
                f"{robot.name} scene: {name!r} is not joint/actuator {i}; the asset's layout changed"
            )
    return model
