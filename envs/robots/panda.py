"""Franka Emika Panda + Robotiq 2F-85: joint order, gains, home pose, gripper actuator, asset loading.

Arm gains are menagerie's Panda position actuators (kp 4500..2000, kd = kp / 10, effort 87 / 12 N m);
the gripper actuator is the 2F-85's own ``fingers_actuator`` (a position servo on the ``split``
tendon, commanded 0 = open .. 255 = closed). Both are added in code, never taken from the XML.

Assets: ``$STRIATA_ASSETS/franka_panda_2f85/panda.xml`` (gym-hil's Panda and 2F-85 in one file), or,
online, menagerie's ``franka_emika_panda:panda_nohand`` with ``robotiq_2f85:2f85`` attached at the
Panda's ``attachment_site``, mounted the way gym-hil mounts it so that both paths give the same robot.
"""

from __future__ import annotations

from types import ModuleType

import mujoco
import numpy as np

from striata.envs.assets import load_robot_spec
from striata.envs.robots.actuators import MotorFamily, RobotConfig, add_position_actuators

PANDA_JOINT_NAMES: tuple[str, ...] = tuple(f"joint{i}" for i in range(1, 8))

PANDA = RobotConfig(
    name="franka_panda_2f85",
    joint_names=PANDA_JOINT_NAMES,
    families=(
        # Armature 0.1 is the XML's own joint armature; velocity limits are Franka's datasheet values.
        MotorFamily(("joint[12]",), 0.1, 87.0, 2.175, kp_override=4500.0, kd_override=450.0),
        MotorFamily(("joint[34]",), 0.1, 87.0, 2.175, kp_override=3500.0, kd_override=350.0),
        MotorFamily(("joint[567]",), 0.1, 12.0, 2.61, kp_override=2000.0, kd_override=200.0),
    ),
    # gym-hil's home: pinch site 0.49 m in front of the base, 8 cm above the floor, pointing down.
    default_joint_pos={"joint2": 0.195, "joint4": -2.43, "joint6": 2.62, "joint7": 0.785},
    # An arm holds a pose with its tracking gains (unlike a humanoid, nothing has to balance).
    standby_gains={
        "joint[12]": (4500.0, 450.0),
        "joint[34]": (3500.0, 350.0),
        "joint[567]": (2000.0, 200.0),
    },
)

PINCH_SITE = "pinch"
WRIST_CAMERA = "handcam_rgb"
ATTACHMENT_BODY = "attachment"
GRIPPER_TENDON = "split"
GRIPPER_ACTUATOR = "fingers_actuator"
GRIPPER_DRIVER_JOINTS: tuple[str, ...] = ("right_driver_joint", "left_driver_joint")
GRIPPER_CTRL_RANGE = (0.0, 255.0)
# Driver joint travel (rad): 0 open, 0.8 closed; the actuator maps 0..255 onto it.
GRIPPER_DRIVER_RANGE = (0.0, 0.8)
# The 2F-85's affine servo: force = gain * ctrl + bias1 * length + bias2 * velocity, kp 100 on the
# tendon and gain = 0.8 * 100 / 255 so that ctrl 255 targets the fully closed driver angle.
_GRIPPER_GAIN = 0.8 * 100.0 / 255.0
_GRIPPER_BIAS = (0.0, -100.0, -10.0)
_GRIPPER_FORCE_LIMIT = 5.0

# gym-hil's wrist cameras, on the body between link7 and the gripper (menagerie's Panda has none).
_HANDCAMS = (
    ("handcam_depth", (-0.05, 0.0, 0.0), 62.0),
    (WRIST_CAMERA, (-0.05, 0.015, 0.0), 42.5),
)


def panda_spec() -> mujoco.MjSpec:
    """The Panda with its 2F-85 gripper (XML actuators still present) as an editable spec."""
    return load_robot_spec(
        "franka_panda_2f85",
        local=("franka_panda_2f85", "panda.xml"),
        menagerie=_menagerie_panda_2f85,
        menagerie_description="franka_emika_panda:panda_nohand + robotiq_2f85:2f85",
    )


def _menagerie_panda_2f85(mm: ModuleType) -> mujoco.MjSpec:
    """Compose menagerie's bare Panda and 2F-85 into gym-hil's panda.xml layout."""
    arm = mm.get("franka_emika_panda").spec("panda_nohand")
    gripper = mm.get("robotiq_2f85").spec("2f85")
    # Menagerie's keyframes size qpos for the bare arm; the composed scene has more joints.
    for key in list(arm.keys):
        arm.delete(key)
    for key in list(gripper.keys):
        gripper.delete(key)
    # gym-hil turns the site half a turn and mounts the gripper flush (menagerie lifts it 7 mm), which
    # puts the fingers along world y at the home pose and the pinch site where panda.xml has it.
    site = arm.site("attachment_site")
    site.quat = [0.0, 0.0, 0.0, 1.0]
    gripper.body("base_mount").pos = [0.0, 0.0, 0.0]
    arm.attach(gripper, prefix="", site=site)
    attachment = arm.body(ATTACHMENT_BODY)
    for name, pos, fovy in _HANDCAMS:
        attachment.add_camera(name=name, pos=list(pos), quat=[0.0, 1.0, -1.0, 0.0], fovy=fovy)
    return arm


def add_panda_actuators(spec: mujoco.MjSpec) -> None:
    """Replace the XML's actuators: PD position servos on joint1..7, then the gripper servo (ctrl 0..255)."""
    add_position_actuators(spec, PANDA)
    gripper = spec.add_actuator(
        name=GRIPPER_ACTUATOR, target=GRIPPER_TENDON, trntype=mujoco.mjtTrn.mjTRN_TENDON
    )
    gripper.gaintype = mujoco.mjtGain.mjGAIN_FIXED
    gripper.biastype = mujoco.mjtBias.mjBIAS_AFFINE
    gripper.gainprm[0] = _GRIPPER_GAIN
    gripper.biasprm[:3] = _GRIPPER_BIAS
    gripper.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
    gripper.ctrlrange = list(GRIPPER_CTRL_RANGE)
    gripper.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    gripper.forcerange = [-_GRIPPER_FORCE_LIMIT, _GRIPPER_FORCE_LIMIT]


def compensate_gravity(spec: mujoco.MjSpec) -> None:
    """Cancel gravity on the arm and gripper bodies, as Franka's controller does on the real robot.

    Without it a position servo sags under load, and a target set relative to the current pose
    (end-effector deltas) would drift down step after step under a zero action.
    """
    root = spec.body("link0")
    for body in [root, *root.find_all(mujoco.mjtObj.mjOBJ_BODY)]:
        body.gravcomp = 1.0


def gripper_ctrl(command: np.ndarray) -> np.ndarray:
    """Gripper command in [-1, 1] (-1 open, +1 closed) to the actuator's 0..255 control."""
    low, high = GRIPPER_CTRL_RANGE
    return low + (np.clip(command, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
