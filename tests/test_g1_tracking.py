"""G1 tracking task: standing under PD, kinematic tracking, falls, time-outs, rendering, config."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from pydantic import ValidationError

from striata.envs import ActionError, make_config, make_env
from striata.envs.robots.actuators import set_actuator_gains
from striata.envs.robots.g1 import END_EFFECTOR_BODIES, G1, G1_DEFAULT_ROOT_HEIGHT, TRACKED_BODIES
from striata.envs.rotations import yaw_angle
from striata.envs.tasks.g1_tracking.config import SamplingConfig
from striata.envs.tasks.g1_tracking.env import build_g1_scene
from striata.envs.tasks.g1_tracking.observations import POLICY_DIM
from striata.envs.tasks.g1_tracking.rewards import max_step_reward
from striata.envs.tasks.g1_tracking.sampling import AdaptiveStartSampler

DETERMINISTIC = {"randomization": {"enabled": False}, "observation_noise": {"enabled": False}}


def _standing_height(kp: np.ndarray, kd: np.ndarray, seconds: float = 5.0) -> np.ndarray:
    model = build_g1_scene(0.005)
    set_actuator_gains(model, kp, kd)
    data = mujoco.MjData(model)
    adr = model.jnt_qposadr[[model.joint(n).id for n in G1.joint_names]]
    data.qpos[2] = G1_DEFAULT_ROOT_HEIGHT
    data.qpos[3] = 1.0
    data.qpos[adr] = G1.default_pos
    data.ctrl[:] = G1.default_pos
    heights = []
    for _ in range(round(seconds / model.opt.timestep)):
        mujoco.mj_step(model, data)
        heights.append(data.qpos[2])
    return np.array(heights)


def test_g1_stands_for_5s_under_standby_pd_at_default_pose():
    heights = _standing_height(*G1.standby_kp_kd)
    settled = heights[int(0.2 / 0.005)]
    assert np.abs(heights - settled).max() < 0.03
    assert heights[-1] > 0.7


def test_tracking_gains_alone_do_not_hold_the_g1_up():
    # The fact in DESIGN.md: standby gains belong in the robot config because these cannot stand.
    assert _standing_height(G1.kp, G1.kd)[-1] < 0.4


def test_gains_follow_the_mjlab_rule():
    armature = G1.armature
    kp = armature * (2 * np.pi * 10) ** 2
    np.testing.assert_allclose(G1.kp, kp)
    np.testing.assert_allclose(G1.kd, 2 * 2.0 * armature * 2 * np.pi * 10)
    np.testing.assert_allclose(G1.action_scale, 0.25 * G1.effort_limit / kp)
    assert G1.joint_names[12:15] == ("waist_yaw_joint", "waist_roll_joint", "waist_pitch_joint")


def test_observation_layout_and_action_checks():
    env = make_env("g1_tracking", num_envs=3, seed=0)
    obs = env.reset()
    assert obs["policy"].shape == (3, POLICY_DIM) == (3, 160)
    assert obs["critic"].shape == (3, 160 + len(TRACKED_BODIES) * 9)
    assert obs["policy"].dtype == np.float32
    with pytest.raises(ActionError, match=r"expected shape \(3, 29\)"):
        env.step(np.zeros((3, 28)))
    bad = np.zeros((3, 29))
    bad[1, 4] = np.nan
    with pytest.raises(ActionError, match=r"actions\[1, 4\] is nan"):
        env.step(bad)


def test_without_state_estimation_the_policy_sees_only_what_a_robot_measures():
    full = make_env("g1_tracking", num_envs=2, seed=3, observation_noise={"enabled": False})
    deployable = make_env(
        "g1_tracking", num_envs=2, seed=3, observation_noise={"enabled": False}, state_estimation=False
    )
    a, b = full.reset()["policy"], deployable.reset()["policy"]
    assert deployable.observation_dim == b.shape[1] == 154
    names = [name for name, _ in deployable.observation_terms]
    assert "base_lin_vel" not in names and "motion_anchor_pos_b" not in names
    # The kept terms are the same numbers: full layout minus anchor position (58:61), base lin vel (67:70).
    np.testing.assert_array_equal(b, np.delete(a, np.r_[58:61, 67:70], axis=1))


def test_the_reference_joint_prior_puts_the_pd_targets_on_the_reference():
    """An untrained policy with ``ppo.action_prior: reference_joint_pos`` plays the clip open loop."""
    from striata.envs.registry import TASKS

    prior = TASKS["g1_tracking"].action_prior("reference_joint_pos")
    for state_estimation in (True, False):
        env = make_env("g1_tracking", num_envs=4, seed=1, state_estimation=state_estimation, **DETERMINISTIC)
        obs = env.reset()
        for _ in range(3):
            obs, *_ = env.step(prior(obs["policy"].astype(np.float64)))
        reference = env.reference_state()[0][:, 7:]
        np.testing.assert_allclose(obs["policy"][:, :29], reference, atol=1e-6)
        # On the reference, where a bridge's soft limits allow it (the clip touches its ankle stops).
        allowed = np.clip(reference, env.mdp.target_lower, env.mdp.target_upper)
        np.testing.assert_allclose(
            env.mdp.joint_targets(G1.default_pos, prior(obs["policy"])), allowed, atol=1e-5
        )
        assert np.abs(allowed - reference).max() < 0.05
    with pytest.raises(
        KeyError, match="unknown action prior 'x' of task 'g1_tracking'; known: reference_joint_pos"
    ):
        TASKS["g1_tracking"].action_prior("x")


def test_driving_the_robot_along_the_reference_tracks_it_perfectly():
    env = make_env("g1_tracking", num_envs=4, seed=1, **DETERMINISTIC)
    env.reset()
    best = max_step_reward(env.mdp.rewards, env.step_dt)
    zeros = np.zeros((4, 29))
    rewards = []
    for _ in range(60):
        env.set_state(*env.reference_state())
        reward, terms, terminated = env.evaluate()
        assert not terminated.any()
        for name in ("anchor_pos", "anchor_ori", "body_pos", "body_ori"):
            assert terms[name].min() > 0.999, name
        assert terms["body_lin_vel"].min() > 0.95
        assert terms["body_ang_vel"].min() > 0.95
        assert (terms["action_rate"] == 0).all()
        # The clip itself touches the ankle limits (see its SOURCES.md); that penalty is the reference's.
        penalty = env.cfg.rewards["joint_limit"].weight * terms["joint_limit"] * env.step_dt
        assert (reward - penalty).min() > 0.97 * best
        rewards.append(reward)
        obs = env._observe()["policy"]
        np.testing.assert_allclose(obs[:, 58:61], 0.0, atol=1e-5)  # reference anchor = robot anchor
        np.testing.assert_allclose(obs[:, 61:67], np.tile([1, 0, 0, 1, 0, 0], (4, 1)), atol=1e-5)
        env.step(zeros)
    assert np.mean(rewards) > 0.95 * best


def test_standing_starts_put_the_g1_still_on_its_held_default_pose_at_the_first_frame():
    env = make_env("g1_tracking", num_envs=64, seed=6, sampling={"standing_start": 0.5}, **DETERMINISTIC)
    env.reset()
    held = env.mdp.standing_qpos
    adr = env.mdp.joint_qpos_adr
    standing = np.all(np.isclose(env.qpos[:, adr], held[adr]), axis=1)
    assert 16 < standing.sum() < 48  # about half of 64
    assert (env.frame_index[standing] == 0).all() and not env.qvel[standing].any()
    # The default pose as the hold leaves it: within a few cm of the exact pose's height and joints.
    np.testing.assert_allclose(held[adr], G1.default_pos, atol=0.06)
    assert abs(held[2] - G1_DEFAULT_ROOT_HEIGHT) < 0.02
    ref_pos, ref_quat = env.mdp.motion.qpos[0, :2], env.mdp.motion.qpos[0, 3:7]
    assert np.allclose(env.qpos[standing, :2], ref_pos)
    # Upright, facing where the reference's first frame faces.
    quat = env.qpos[standing, 3:7]
    np.testing.assert_allclose(quat[:, 1:3], 0.0, atol=0.02)
    np.testing.assert_allclose(yaw_angle(quat), yaw_angle(ref_quat), atol=1e-9)
    moving = ~standing
    assert not np.allclose(env.qpos[moving][:, adr], held[adr])


def test_joint_targets_are_clipped_where_a_bridge_would_clip_them():
    from striata.deploy.safety import SafetyConfig, SafetyFilter

    env = make_env("g1_tracking", num_envs=2, seed=0, **DETERMINISTIC)
    ranges = np.array([env.model.joint(name).range for name in G1.joint_names])
    bridge = SafetyFilter(SafetyConfig(), ranges, G1.effort_limit, G1.velocity_limit)
    np.testing.assert_allclose(env.mdp.target_lower, bridge.lower)
    np.testing.assert_allclose(env.mdp.target_upper, bridge.upper)
    far = env.mdp.joint_targets(G1.default_pos[None], np.full((1, 29), 100.0))
    np.testing.assert_allclose(far[0], bridge.upper)
    free = make_env("g1_tracking", num_envs=1, seed=0, clip_targets=False, **DETERMINISTIC)
    assert (free.mdp.joint_targets(G1.default_pos[None], np.full((1, 29), 100.0)) > bridge.upper).all()


def _reset_pair(**settings):
    """An env with ``settings`` and one without, both reset to the same states."""
    pair = [make_env("g1_tracking", num_envs=2, seed=3, **s, **DETERMINISTIC) for s in (settings, {})]
    for env in pair:
        env.reset()
    return pair


def _stepped_by_hand(env, chunks):
    """Step ``env``'s physics through ``chunks`` of (ticks, ctrl), as the env's own step would."""
    for ticks, ctrl in chunks:
        env.ctrl[:] = ctrl
        env.batch.step(nstep=ticks, stage=mujoco.mjtStage.mjSTAGE_VEL)


def test_a_delayed_action_holds_the_last_targets_for_its_ticks():
    delayed, by_hand = _reset_pair(action_delay_ticks=(2, 2))
    moved = np.full((2, 29), 0.3)
    held = by_hand.mdp.holding_targets(by_hand.qpos)  # a new episode's robot holds its pose
    targets = by_hand.mdp.joint_targets(by_hand.default_joint_pos, moved)
    _stepped_by_hand(by_hand, [(2, held), (by_hand.decimation - 2, targets)])
    delayed.step(moved)
    np.testing.assert_allclose(delayed.qpos, by_hand.qpos, atol=1e-12)
    undelayed = _reset_pair()[0]
    undelayed.step(moved)
    assert not np.allclose(undelayed.qpos, delayed.qpos, atol=1e-3)


def test_a_standing_start_is_the_posture_the_sim_bridges_g1_settles_to_in_the_deploys_hold():
    """The controller interpolates to the default pose on the standby gains (the sim bridge's G1 held up
    by its band) and holds it on its own feet; the policy starts from there, not from the exact pose."""
    from striata.deploy.robot import JointCommand
    from striata.deploy.sim_robot import SimRobot
    from striata.envs.tasks.g1_tracking.mdp import HOLD_S

    env = make_env("g1_tracking", num_envs=1, seed=0, **DETERMINISTIC)
    sim = SimRobot("g1")
    kp, kd = G1.standby_kp_kd
    zeros = np.zeros(len(kp))
    sim.on_controller_phase("interpolate")
    for tick in range(1000):
        pose = G1.default_pos * min(1.0, tick / 800)
        sim.write_command(JointCommand(pose, zeros, kp, kd, zeros))
        sim.read_state()
    sim.on_controller_phase("hold")
    for _ in range(round(HOLD_S / sim.control_period_s)):
        sim.read_state()
    held = sim.data.qpos
    start = env.mdp.standing_qpos
    adr = env.mdp.joint_qpos_adr
    np.testing.assert_allclose(start[adr], held[sim.qpos_adr], atol=0.015)
    assert abs(start[2] - held[2]) < 0.003
    # ...and it is not the exact pose: the weight bends the legs.
    assert np.abs(start[adr] - G1.default_pos).max() > 0.02


def test_a_delayed_observation_shows_the_policy_the_state_ticks_before_the_step_ends():
    late, by_hand = _reset_pair(observation_delay_ticks=(3, 3))
    actions = np.full((2, 29), 0.2)
    targets = by_hand.mdp.joint_targets(by_hand.default_joint_pos, actions)
    _stepped_by_hand(by_hand, [(by_hand.decimation - 3, targets)])
    sensed = by_hand.qpos[:, by_hand.mdp.joint_qpos_adr].copy()
    _stepped_by_hand(by_hand, [(3, targets)])
    obs = late.step(actions)[0]
    names = [name for name, _ in late.observation_terms]
    start = sum(size for _, size in late.observation_terms[: names.index("joint_pos")])
    joint_pos = obs["policy"][:, start : start + 29]
    np.testing.assert_allclose(joint_pos, sensed - late.default_joint_pos, atol=1e-6)
    np.testing.assert_allclose(late.qpos, by_hand.qpos, atol=1e-12)  # the physics is the same
    # The critic sees the state the step ended in.
    fresh = _reset_pair()[0]
    np.testing.assert_allclose(obs["critic"], fresh.step(actions)[0]["critic"], atol=1e-6)


def test_each_env_draws_its_own_delays_and_steps_as_its_draw_says(monkeypatch):
    """Delay ranges are drawn per env (an evaluation's episodes differ as deployments do); each env then
    steps and observes as an env whose delays were fixed at its draw."""
    from striata.envs.tasks.g1_tracking.mdp import TrackingMDP

    ranges = {"action_delay_ticks": (0, 2), "observation_delay_ticks": (0, 2)}
    ranged = make_env("g1_tracking", num_envs=3, seed=3, **ranges, **DETERMINISTIC)
    drawn = ranged.mdp.action_delays(np.random.default_rng(0), 1000)
    assert set(drawn) == {0, 1, 2}
    ranged.reset()
    actions = np.full((3, 29), 0.3)
    act, sense = np.array([0, 1, 2]), np.array([2, 0, 1])
    with monkeypatch.context() as patch:
        patch.setattr(TrackingMDP, "action_delays", lambda self, rng, n: act)
        patch.setattr(TrackingMDP, "observation_delays", lambda self, rng, n: sense)
        obs = ranged.step(actions)[0]["policy"]
    for i in range(3):
        fixed = {"action_delay_ticks": (act[i], act[i]), "observation_delay_ticks": (sense[i], sense[i])}
        alone = make_env("g1_tracking", num_envs=3, seed=3, **fixed, **DETERMINISTIC)
        alone.reset()
        np.testing.assert_allclose(obs[i], alone.step(actions)[0]["policy"][i], atol=1e-6)
        np.testing.assert_allclose(ranged.qpos[i], alone.qpos[i], atol=1e-12)


def test_the_emulated_bridge_passes_targets_on_as_the_bridge_does():
    from striata.deploy.protocol import Command
    from striata.deploy.robot import RobotState
    from striata.deploy.safety import SafetyConfig, SafetyFilter
    from striata.deploy.sim_robot import SimRobot

    env = make_env("g1_tracking", num_envs=1, seed=0, bridge_brake=True, **DETERMINISTIC)
    env.reset()
    sim = SimRobot("g1")
    bridge = SafetyFilter(
        SafetyConfig(), sim.joint_limits, sim.effort_limits, sim.velocity_limits,
        brake_accel=sim.brake_accel, applies_gains=False,
    )  # fmt: skip
    waist, knee = G1.joint_names.index("waist_pitch_joint"), G1.joint_names.index("left_knee_joint")
    q = np.clip(G1.default_pos, bridge.lower, bridge.upper)
    q[waist] = bridge.upper[waist] - 0.02
    dq = np.zeros(29)
    dq[waist] = 3.0  # too fast to stop before the limit: braked
    dq[knee] = 0.5
    qpos, qvel = env.qpos.copy(), np.zeros_like(env.qvel)
    qpos[0, env.mdp.joint_qpos_adr], qvel[0, env.mdp.joint_dof_adr] = q, dq
    env.set_state(qpos, qvel)
    env._applied[:] = q  # as the bridge ramps from the measured pose after a passive phase
    targets = G1.default_pos + np.linspace(-0.4, 0.4, 29)
    env._brake(targets[None])
    n = np.zeros(29)
    command = Command(
        seq=1, session=1, phase="policy", q_target=targets, dq_target=n, kp=G1.kp, kd=G1.kd, tau_ff=n
    )
    out = bridge.position(command, RobotState(q=q, dq=dq))
    np.testing.assert_allclose(env.ctrl[0], out.q_target, atol=1e-12)
    np.testing.assert_allclose(-env._actuator_bias[0, :29, 2], out.kd, atol=1e-12)
    assert out.kd[waist] > G1.kd[waist] and out.q_target[waist] == pytest.approx(q[waist])


def test_limit_envelope_charges_the_speed_a_bridge_would_brake():
    from striata.deploy.safety import SafetyConfig, SafetyFilter
    from striata.deploy.sim_robot import SimRobot
    from striata.envs.robots.actuators import braking_speeds

    env = make_env("g1_tracking", num_envs=1, seed=0, rewards={"limit_envelope": -1.0}, **DETERMINISTIC)
    env.reset()
    sim = SimRobot("g1")
    bridge = SafetyFilter(
        SafetyConfig(), sim.joint_limits, sim.effort_limits, sim.velocity_limits, sim.brake_accel
    )
    np.testing.assert_allclose(env.mdp.brake_accel, bridge.brake_accel)
    waist = G1.joint_names.index("waist_pitch_joint")
    q = env.qpos[0, env.mdp.joint_qpos_adr].copy()
    q[waist] = bridge.upper[waist] - 0.05
    up, _ = braking_speeds(q, bridge.lower, bridge.upper, bridge.brake_accel)
    speeds = {"slow": 0.9 * up[waist], "fast": up[waist] + 0.5}
    charged = {}
    for name, speed in speeds.items():
        qpos, qvel = env.qpos.copy(), np.zeros_like(env.qvel)
        qpos[0, env.mdp.joint_qpos_adr] = q
        qvel[0, env.mdp.joint_dof_adr[waist]] = speed
        env.set_state(qpos, qvel)
        frame, relative = env._current()
        charged[name] = env.mdp.reward(frame, relative)[1]["limit_envelope"][0]
    assert charged["slow"] == 0.0
    assert charged["fast"] == pytest.approx(0.5, abs=1e-6)


def test_termination_fires_when_the_g1_falls():
    env = make_env("g1_tracking", num_envs=4, seed=2, **DETERMINISTIC)
    env.reset()
    fell = np.zeros(4, dtype=bool)
    for _ in range(250):
        # Zero actions hold the default pose on tracking gains, which cannot carry the robot.
        _, _, terminated, truncated, info = env.step(np.zeros((4, 29)))
        assert not (terminated & truncated).any()
        fell |= terminated
        if fell.all():
            break
    assert fell.all()
    assert np.isfinite(info["episode_return"][terminated]).all()


def test_time_out_is_truncation_not_termination():
    env = make_env("g1_tracking", num_envs=2, seed=3, episode_length_s=0.2, **DETERMINISTIC)
    env.reset()
    for step in range(1, 11):
        env.set_state(*env.reference_state())
        _, _, terminated, truncated, info = env.step(np.zeros((2, 29)))
        assert not terminated.any()
        assert truncated.all() == (step == 10)
    assert (info["episode_length"] == 10).all()
    assert set(info["final_obs"]) == {"policy", "critic"}


def test_rendering_returns_non_blank_frames():
    env = make_env("g1_tracking", num_envs=2, seed=4)
    env.reset()
    frames = env.render("tracking", height=96, width=128)
    assert frames.shape == (2, 96, 128, 3) and frames.dtype == np.uint8
    for frame in frames:
        assert frame.std() > 10
    env.close()


def test_keypoint_variant_weights_end_effectors_higher():
    env = make_env("g1_tracking_keypoints", num_envs=1, seed=0)
    weights = dict(zip(TRACKED_BODIES, env.mdp.body_weights, strict=True))
    assert abs(sum(weights.values()) - 1.0) < 1e-9
    for ee in END_EFFECTOR_BODIES:
        assert weights[ee] > weights["pelvis"]
    plain = make_env("g1_tracking", num_envs=1, seed=0)
    np.testing.assert_allclose(plain.mdp.body_weights, 1 / len(TRACKED_BODIES))


def test_adaptive_sampler_starts_more_episodes_where_failures_happen():
    cfg = SamplingConfig(kernel_size=3, alpha=0.5)
    sampler = AdaptiveStartSampler(num_frames=500, frames_per_bin=50, cfg=cfg, rng=np.random.default_rng(0))
    for _ in range(5):
        sampler.record_failures(np.array([320, 330, 340]))
        sampler.update()
    p = sampler.probabilities()
    failing = sampler.bin_of(np.array([330]))[0]
    assert p.argmax() == failing
    assert p[failing - 1] > p[failing + 1]  # smoothing reaches back to where the fall started
    bins = sampler.bin_of(sampler.sample(2000))
    assert np.bincount(bins).argmax() == failing
    assert np.mean((bins >= failing - 2) & (bins <= failing)) > 0.8


def test_bad_config_names_the_field():
    with pytest.raises(ValidationError, match=r"rewards\.body_pos\.std"):
        make_config("g1_tracking", {"rewards": {"body_pos": {"std": -1}}})
    with pytest.raises(ValidationError, match="unknown bodies"):
        make_config("g1_tracking", {"keypoint_weights": {"nose": 2.0}})
    with pytest.raises(ValidationError, match="bogus"):
        make_config("g1_tracking", {"bogus": 1})
    with pytest.raises(ValidationError, match=r"action_delay_ticks: \[0, 4\] must be .* < decimation \(4\)"):
        make_config("g1_tracking", {"action_delay_ticks": [0, 4]})
    with pytest.raises(ValidationError, match="bridge_brake: the 'warp' backend does not emulate it"):
        make_config("g1_tracking", {"backend": "warp", "bridge_brake": True})


def test_anchor_and_body_frames_match_their_quaternion_definitions():
    from striata.envs.rotations import quat_apply, quat_conj, quat_mul, quat_to_matrix

    env = make_env("g1_tracking", num_envs=8, seed=5, observation_noise={"enabled": False})
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):  # push the robots off their references so every frame is non-trivial
        env.step(rng.uniform(-1, 1, size=(8, 29)))
    frame = env._current()[0]
    obs = env._observe()
    inv_anchor = quat_conj(frame.anchor_quat)
    pos_b = quat_apply(inv_anchor, frame.ref_anchor_pos - frame.anchor_pos)
    rot_b = quat_to_matrix(quat_mul(inv_anchor, frame.ref_anchor_quat))[..., :2].reshape(-1, 6)
    np.testing.assert_allclose(obs["policy"][:, 58:61], pos_b, atol=1e-5)
    np.testing.assert_allclose(obs["policy"][:, 61:67], rot_b, atol=1e-5)
    base_lin_vel = quat_apply(quat_conj(frame.root_quat), frame.root_lin_vel_w)
    np.testing.assert_allclose(obs["policy"][:, 67:70], base_lin_vel, atol=1e-5)
    body_pos_b = quat_apply(inv_anchor[:, None], frame.body_pos - frame.anchor_pos[:, None])
    np.testing.assert_allclose(obs["critic"][:, 67:109], body_pos_b.reshape(8, -1), atol=1e-5)
