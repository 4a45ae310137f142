"""``ppo.init_policy``: a new learner starts from an exported policy's actor, normaliser and prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from striata.learner.warm_start import WarmStartError, load_exported_actor

SHIPPED = Path("tests/data/g1_track_jazzwalk.onnx")


def _learner(hidden: list[int]):
    from striata.envs.registry import make_env
    from striata.experiment import load_experiment
    from striata.train import build_trainer

    config = load_experiment(
        Path("configs/g1_track_jazzwalk.yaml"),
        {"ppo": {"actor": {"hidden": hidden}, "critic": {"hidden": [32]}}},
    )
    env = make_env(config.task, num_envs=2, seed=0, config=config.task_settings())
    return build_trainer(config, env).algo, env


def test_a_learner_started_from_the_shipped_export_acts_as_it_does() -> None:
    from striata.learner.export import make_session

    ppo, env = _learner([256, 128, 64])
    load_exported_actor(ppo, SHIPPED, [name for name, _ in env.observation_terms])
    obs = env.reset()["policy"].astype(np.float32)
    expected = make_session(SHIPPED).run(["actions"], {"obs": obs})[0]
    with torch.no_grad():
        np.testing.assert_allclose(ppo.model(torch.as_tensor(obs)).numpy(), expected, atol=1e-4)
    # The normaliser keeps the export's statistics through the fine-tune's first batches.
    assert int(ppo.model.actor_normalizer.count) >= 1_000_000


@pytest.mark.parametrize(
    ("hidden", "names", "message"),
    [
        ([64, 64], None, "shape"),
        ([256, 128, 64], ["joint_pos"], "observes"),
    ],
)
def test_an_export_that_does_not_fit_is_refused_by_name(hidden, names, message) -> None:
    ppo, _ = _learner(hidden)
    with pytest.raises(WarmStartError, match=message):
        load_exported_actor(ppo, SHIPPED, names)


def test_a_missing_or_malformed_init_policy_names_the_setting(tmp_path: Path) -> None:
    ppo, _ = _learner([256, 128, 64])
    with pytest.raises(WarmStartError, match=r"ppo\.init_policy: no such file"):
        load_exported_actor(ppo, tmp_path / "nope.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("not an onnx file")
    with pytest.raises(WarmStartError, match="not a striata policy export"):
        load_exported_actor(ppo, garbage)


def test_a_new_run_with_init_policy_starts_from_the_export(tmp_path: Path) -> None:
    from striata.experiment import load_experiment
    from striata.learner.export import make_session
    from striata.run_dir import new_run_dir
    from striata.train import Training

    config = load_experiment(Path("configs/g1_track_jazzwalk_deploy.yaml"), {"eval": {"num_envs": 2}})
    assert config.ppo.init_policy == str(SHIPPED)
    run_dir = new_run_dir(config, tmp_path)
    training = Training(config, run_dir)
    ppo = training.trainer.algo
    obs = training.eval_env.reset()["policy"].astype(np.float32)
    expected = make_session(SHIPPED).run(["actions"], {"obs": obs})[0]
    with torch.no_grad():
        np.testing.assert_allclose(ppo.model(torch.as_tensor(obs)).numpy(), expected, atol=1e-4)
    training.writer.close()
