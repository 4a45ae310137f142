"""SO-101 follower arm (TheRobotStudio): servo order, STS3215 position servos, home pose, limits, assets.

Joints are the follower's Feetech servo ids 1..6 in this order (``deploy/ARMS.md``): shoulder_pan,
shoulder_lift, elbow_flex, wrist_flex, wrist_roll, gripper. Every joint is an STS3215 running its own
position loop on a goal position; the actuators are the asset's ``sts3215`` class (kp 998.22, kv 2.731,
stall torque 2.94 N m at 12 V; the gripper's capped at half, as LeRobot configures the follower), added
in code in servo order. Nothing compensates gravity: the servo holds the arm against it, as on the bus.

Joint limits are the model's (the SO-101 URDF's, the same numbers as the Feetech adapter's defaults);
``joint_limits(model)`` reads them from a compiled model in servo order. A position target moves at most
``max_target_step(dt)`` rad in ``dt`` seconds: the servo's no-load speed, so a target never leads the
servo by more than it can follow in one control step.

Assets: ``$STRIATA_ASSETS/robotstudio_so101/so101_new_calib.xml`` (calibration: each joint's zero in the
middle of its range, as LeRobot's), or, online, menagerie's ``robotstudio_so101:so101`` (derived from the
same file; it adds primitive collision geoms to the gripper).
"""

from __future__ import annotations

from types import ModuleType

import mujoco
import numpy as np

from striata.envs.assets import load_robot_spec
from striata.envs.robots.actuators import MotorFamily, RobotConfig, add_position_actuators

SO101_JOINT_NAMES: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
# Feetech bus id of each joint (the follower's wiring; deploy/arms/feetech.py uses the same).
SERVO_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(SO101_JOINT_NAMES)}
N_ARM = 5  # the arm's joints come first; the gripper servo is the last one
GRIPPER_JOINT = "gripper"

STS3215_STALL_TORQUE = 2.94  # N m, 12 V servo (the 7.4 V one gives ~1.9)
STS3215_MAX_SPEED = 4.7  # rad/s, no load (datasheet: 0.222 s per 60 degrees)
GRIPPER_TORQUE_LIMIT = 0.5 * STS3215_STALL_TORQUE

SO101 = RobotConfig(
    name="so101",
    joint_names=SO101_JOINT_NAMES,
    families=(
        # The asset's sts3215 class: armature is the servo's reflected rotor inertia, kp/kv the servo's
        # position loop at P = 16 expressed as torque gains (see the XML's comment for the derivation).
        MotorFamily(
            ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"),
            armature=0.028,
            effort_limit=STS3215_STALL_TORQUE,
            velocity_limit=STS3215_MAX_SPEED,
            kp_override=998.22,
            kd_override=2.731,
        ),
        # LeRobot's follower caps the gripper servo at half its torque (Max_Torque_Limit 500 of 1000) so a
        # closed gripper does not overheat; what it squeezes with.
        MotorFamily(
            ("gripper",),
            armature=0.028,
            effort_limit=GRIPPER_TORQUE_LIMIT,
            velocity_limit=STS3215_MAX_SPEED,
            kp_override=998.22,
            kd_override=2.731,
        ),
    ),
    # Tip 20 cm in front of the base and 9 cm above the table, pointing down, jaws closing along x and
    # open: over the middle of the pick area, every target of the tasks a short move away.
    default_joint_pos={
        "shoulder_lift": -0.32,
        "elbow_flex": 0.31,
        "wrist_flex": 1.58,
        "wrist_roll": 0.05,
        "gripper": 0.8,
    },
    # A servo holds a pose with the same position loop it tracks with.
    standby_gains={".*": (998.22, 2.731)},
)

# The grasp point, in the ``gripper`` body (the fixed jaw's link): between the open jaws, 1 cm back from
# the fixed jaw's tip and 2 cm in front of its inner face, so a 2.5 cm cube centred on it clears the fixed
# jaw by 7 mm on the way down; closing, the moving jaw pushes it against the fixed one. The gripper body's
# -z is the approach direction and +x the side the moving jaw closes from.
TIP_SITE = "tip"
TIP_POS = (0.01, -0.0002, -0.088)
GRIPPER_BODY = "gripper"
# The wrist camera as menagerie places it on the SO-101's camera mount: beside the jaws, looking at them.
# Its field of view lies between that camera's vertical (48 degrees) and horizontal (77) ones, so that a
# square frame shows the fixed jaw's tip and the cube between the jaws.
WRIST_CAMERA = "wrist"
WRIST_CAMERA_POS = (0.0, 0.055, -0.045)
WRIST_CAMERA_QUAT = (0.9596688, -0.2811442, 0.0, 0.0)  # 0.57 rad about the body's -x
WRIST_CAMERA_FOVY = 70.0


def so101_spec() -> mujoco.MjSpec:
    """The SO-101 arm (XML actuators still present) as an editable spec."""
    return load_robot_spec(
        "robotstudio_so101",
        local=("robotstudio_so101", "so101_new_calib.xml"),
        menagerie=_menagerie_so101,
        menagerie_description="robotstudio_so101:so101",
    )


def _menagerie_so101(mm: ModuleType) -> mujoco.MjSpec:
    return mm.get("robotstudio_so101").spec("so101")


def add_so101_actuators(spec: mujoco.MjSpec) -> None:
    """Replace the XML's actuators with one STS3215 position servo per joint, in servo order."""
    add_position_actuators(spec, SO101)


def add_tip_and_wrist_camera(spec: mujoco.MjSpec) -> None:
    """The grasp point the tasks measure (``tip``) and the wrist camera, both on the gripper body."""
    gripper = spec.body(GRIPPER_BODY)
    gripper.add_site(name=TIP_SITE, pos=list(TIP_POS), size=[0.004, 0.0, 0.0], group=3)
    gripper.add_camera(
        name=WRIST_CAMERA, pos=list(WRIST_CAMERA_POS), quat=list(WRIST_CAMERA_QUAT), fovy=WRIST_CAMERA_FOVY
    )


def joint_limits(model: mujoco.MjModel) -> np.ndarray:
    """[6, 2] lower/upper limits (rad) of the SO-101's joints in servo order, as the model has them."""
    return np.array([model.joint(name).range for name in SO101_JOINT_NAMES])


def max_target_step(control_dt: float) -> float:
    """The most a position target may move in one control step of ``control_dt`` s: what the servo
    covers at its no-load speed, so that the servo can follow the target and none lead builds up."""
    return STS3215_MAX_SPEED * control_dt
