"""Unitree G1 29-DoF: joint order (SDK motor index 0..28), motors, gains and poses.

Armatures are the reflected inertias of Unitree's actuators (as in mjlab and BeyondMimic);
tracking gains follow kp = armature (2 pi 10 Hz)^2 with damping ratio 2. Standby gains are the
stiffer ones a deploy stack uses to hold a pose: with tracking gains alone the G1 cannot stand.
"""

from __future__ import annotations

import mujoco

from striata.envs.assets import load_robot_spec
from striata.envs.robots.actuators import MotorFamily, RobotConfig


def _reflected_inertia(rotor: tuple[float, float, float], gears: tuple[float, float, float]) -> float:
    """Reflected inertia of a two-stage planetary gearbox."""
    return rotor[0] * (gears[1] * gears[2]) ** 2 + rotor[1] * gears[2] ** 2 + rotor[2]


ARMATURE_5020 = _reflected_inertia((0.139e-4, 0.017e-4, 0.169e-4), (1, 1 + 46 / 18, 1 + 56 / 16))
ARMATURE_7520_14 = _reflected_inertia((0.489e-4, 0.098e-4, 0.533e-4), (1, 4.5, 1 + 48 / 22))
ARMATURE_7520_22 = _reflected_inertia((0.489e-4, 0.109e-4, 0.738e-4), (1, 4.5, 5))
ARMATURE_4010 = _reflected_inertia((0.068e-4, 0.0, 0.0), (1, 5, 5))

G1_JOINT_NAMES: tuple[str, ...] = (
    "left_hip_pitch_joint",
    "left_hip_roll_joint",
    "left_hip_yaw_joint",
    "left_knee_joint",
    "left_ankle_pitch_joint",
    "left_ankle_roll_joint",
    "right_hip_pitch_joint",
    "right_hip_roll_joint",
    "right_hip_yaw_joint",
    "right_knee_joint",
    "right_ankle_pitch_joint",
    "right_ankle_roll_joint",
    "waist_yaw_joint",
    "waist_roll_joint",
    "waist_pitch_joint",
    "left_shoulder_pitch_joint",
    "left_shoulder_roll_joint",
    "left_shoulder_yaw_joint",
    "left_elbow_joint",
    "left_wrist_roll_joint",
    "left_wrist_pitch_joint",
    "left_wrist_yaw_joint",
    "right_shoulder_pitch_joint",
    "right_shoulder_roll_joint",
    "right_shoulder_yaw_joint",
    "right_elbow_joint",
    "right_wrist_roll_joint",
    "right_wrist_pitch_joint",
    "right_wrist_yaw_joint",
)

G1 = RobotConfig(
    name="unitree_g1",
    joint_names=G1_JOINT_NAMES,
    families=(
        MotorFamily(
            (r".*_hip_pitch_joint", r".*_hip_yaw_joint", "waist_yaw_joint"), ARMATURE_7520_14, 88.0, 32.0
        ),
        MotorFamily((r".*_hip_roll_joint", r".*_knee_joint"), ARMATURE_7520_22, 139.0, 20.0),
        MotorFamily(
            (r".*_shoulder_.*_joint", r".*_elbow_joint", r".*_wrist_roll_joint"), ARMATURE_5020, 25.0, 37.0
        ),
        MotorFamily((r".*_wrist_pitch_joint", r".*_wrist_yaw_joint"), ARMATURE_4010, 5.0, 22.0),
        # Ankles and waist roll/pitch are driven by two 5020 motors through linkages.
        MotorFamily(
            (r".*_ankle_pitch_joint", r".*_ankle_roll_joint", "waist_roll_joint", "waist_pitch_joint"),
            2 * ARMATURE_5020,
            50.0,
            37.0,
        ),
    ),
    default_joint_pos={
        r".*_hip_pitch_joint": -0.312,
        r".*_knee_joint": 0.669,
        r".*_ankle_pitch_joint": -0.363,
        r".*_elbow_joint": 0.6,
        "left_shoulder_roll_joint": 0.2,
        "left_shoulder_pitch_joint": 0.2,
        "right_shoulder_roll_joint": -0.2,
        "right_shoulder_pitch_joint": 0.2,
    },
    # Derived, not tuned by eye (deploy/gain_stability.py): every joint holds with a gain margin of 1.5
    # in an explicit-PD, semi-implicit-Euler loop on this model and Unitree's (unitree_mujoco), at
    # 2 ms and 5 ms; low kd because a step of 5 ms cannot damp a 0.01 kg m2 ankle at kd 5. At 2 ms
    # they also hold when the PD reads a one-step-old state (unitree_mujoco does) with the feet in
    # the air; at 5 ms that lagged bound is met by the arms and waist, and the legs need ground
    # contact (a PD-only stand needs ankle kp > ~175; the lagged bound allows < 125 there).
    standby_gains={
        r".*_hip_(pitch|roll)_joint": (200.0, 2.5),
        r".*_hip_yaw_joint": (150.0, 1.5),
        r".*_knee_joint": (300.0, 2.5),
        r".*_ankle_.*_joint": (200.0, 1.2),
        r"waist_.*_joint": (200.0, 2.5),
        r".*_shoulder_(pitch|roll)_joint": (40.0, 1.5),
        r".*_(shoulder_yaw|elbow)_joint": (40.0, 0.5),
        r".*_wrist_.*_joint": (15.0, 0.2),
    },
)

G1_DEFAULT_ROOT_HEIGHT = 0.76
ANCHOR_BODY = "torso_link"
TRACKED_BODIES: tuple[str, ...] = (
    "pelvis",
    "left_hip_roll_link",
    "left_knee_link",
    "left_ankle_roll_link",
    "right_hip_roll_link",
    "right_knee_link",
    "right_ankle_roll_link",
    "torso_link",
    "left_shoulder_roll_link",
    "left_elbow_link",
    "left_wrist_yaw_link",
    "right_shoulder_roll_link",
    "right_elbow_link",
    "right_wrist_yaw_link",
)
END_EFFECTOR_BODIES: tuple[str, ...] = (
    "left_ankle_roll_link",
    "right_ankle_roll_link",
    "left_wrist_yaw_link",
    "right_wrist_yaw_link",
)
FOOT_GEOM_PATTERN = r"(left|right)_foot\d*_collision"


def g1_spec() -> mujoco.MjSpec:
    """The G1's MJCF (mjlab's G1: no actuators, no floor) as an editable spec."""
    return load_robot_spec(
        "unitree_g1",
        local=("unitree_g1", "g1.xml"),
        menagerie=lambda mm: mm.get("unitree_g1").spec("g1_mjlab"),
        menagerie_description="unitree_g1:g1_mjlab",
    )
