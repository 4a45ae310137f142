"""Start a PPO run from an exported policy: its actor, observation normaliser and action prior.

A run's checkpoint holds everything a resume needs; an exported ONNX file holds only what acts. That is
enough to fine-tune a shipped policy (another physics step, a deploy bound it must learn to respect)
when its checkpoint is gone: ``ppo.init_policy`` loads the export's weights into a new learner, whose
critic starts untrained and learns alone for ``ppo.critic_warmup_updates`` updates before the actor
moves. The action noise restarts at ``ppo.init_noise_std`` (an export carries no noise).

The export folds the normaliser's ``sqrt(var + eps)`` into one constant; it is read back as the
variance. A parity check on random observations (ONNX against the loaded torch actor) proves the
mapping, whatever the exporter named things.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from striata.learner.config import LearnerSetupError
from striata.learner.export import read_metadata
from striata.learner.normalizer import EmpiricalNormalizer
from striata.learner.ppo import PPO

# A warm start's normaliser counts as having seen this many samples, so the first batches of the
# fine-tune do not drag the statistics the actor was trained with.
PRIOR_SAMPLES = 10_000_000
PARITY_TOLERANCE = 1e-4


class WarmStartError(LearnerSetupError):
    """An export that does not fit the learner (its layout, sizes or network)."""


def load_exported_actor(ppo: PPO, policy: str | Path, observation_names: list[str] | None = None) -> None:
    """Load ``policy``'s actor, normaliser and prior into ``ppo`` (a new learner) and check parity.

    ``observation_names``: the env's policy observation terms, checked against the export's."""
    import onnx
    from onnx import numpy_helper

    path = Path(policy)
    if not path.is_file():
        raise WarmStartError(f"ppo.init_policy: no such file {path}")
    try:
        metadata = read_metadata(path)
    except Exception as exc:  # onnxruntime's and pydantic's errors alike: not an export of ours
        raise WarmStartError(f"ppo.init_policy {path}: not a striata policy export ({exc})") from None
    if observation_names is not None and list(metadata.observation_names) != list(observation_names):
        raise WarmStartError(
            f"ppo.init_policy {path}: it observes {metadata.observation_names}, this task gives "
            f"{observation_names}"
        )
    if (metadata.obs_dim, metadata.action_dim) != (ppo.obs_dim, ppo.action_dim):
        raise WarmStartError(
            f"ppo.init_policy {path}: obs_dim {metadata.obs_dim} / action_dim {metadata.action_dim}, "
            f"this learner {ppo.obs_dim} / {ppo.action_dim}"
        )
    constants = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    model = ppo.model
    weights = {name: constants[name] for name in model.state_dict() if name in constants}
    missing = [n for n, _ in model.actor.named_parameters(prefix="actor") if n not in weights]
    if missing:
        raise WarmStartError(f"ppo.init_policy {path}: no {missing} (an actor of another network size?)")
    normalizer = model.actor_normalizer
    if isinstance(normalizer, EmpiricalNormalizer):
        scale = [v for n, v in constants.items() if n.startswith("sqrt") and v.shape == (ppo.obs_dim,)]
        if "actor_normalizer.mean" not in weights or len(scale) != 1:
            raise WarmStartError(f"ppo.init_policy {path}: no observation normaliser to start from")
        weights["actor_normalizer.var"] = np.maximum(scale[0].astype(np.float64) ** 2 - normalizer.eps, 0.0)
        weights["actor_normalizer.count"] = np.array(PRIOR_SAMPLES)
    with torch.no_grad():
        state = model.state_dict()
        for name, value in weights.items():
            if tuple(state[name].shape) != value.shape:
                raise WarmStartError(
                    f"ppo.init_policy {path}: {name} has shape {value.shape}, this learner's "
                    f"{tuple(state[name].shape)}"
                )
            state[name].copy_(torch.tensor(np.array(value), dtype=state[name].dtype))
    _check_parity(ppo, path)


def _check_parity(ppo: PPO, path: Path) -> None:
    from striata.learner.export import make_session

    session = make_session(path)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(64, ppo.obs_dim)).astype(np.float32)
    expected = np.concatenate([session.run(["actions"], {"obs": o[None]})[0] for o in obs])
    with torch.no_grad():
        got = ppo.model(torch.as_tensor(obs, device=ppo.device)).cpu().numpy()
    error = float(np.abs(got - expected).max())
    if error > PARITY_TOLERANCE:
        raise WarmStartError(
            f"ppo.init_policy {path}: the loaded actor differs from the export by {error:.2e} "
            f"(> {PARITY_TOLERANCE}): not a PPO export of this network"
        )
