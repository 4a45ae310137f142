"""Learner: trajectory chunks, networks, normalisers, PPO, SAC/RLPD, replay buffers, checkpoints.

Public modules (import from them; this package imports nothing heavy on its own):

- ``striata.learner.chunk``: the trajectory chunk contract (``ChunkBuilder``, ``validate_chunk``,
  ``concat_chunks``, ``flatten_transitions``, ``apply_rewards``).
- ``striata.learner.config``: ``PPOConfig``, ``SACConfig``, ``NetworkConfig``, ``SymmetryConfig``.
- ``striata.learner.ppo``: ``PPO`` (``act``, ``update``, ``policy_state``), ``compute_gae``.
- ``striata.learner.sac``: ``SAC`` with RLPD (critic ensemble + LayerNorm, UTD, 50/50 online/demo batches).
- ``striata.learner.replay``: ``ReplayBuffer``, ``DemoBuffer``, ``add_transitions`` (numpy, .npz files).
- ``striata.learner.networks``, ``striata.learner.normalizer``, ``striata.learner.symmetry``: building blocks.
- ``striata.learner.checkpoint``: atomic ``save_checkpoint`` / ``load_checkpoint`` (weights-only loading).
- ``striata.learner.device``: ``resolve_device("auto")``.
- ``striata.learner.trainer``: the per-algorithm loop the ``striata train`` launcher drives (chunks in,
  updates, weights out, checkpoints, evaluation).
"""
