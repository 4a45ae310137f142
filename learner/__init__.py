"""Learner: trajectory chunks, networks, normalisers, PPO, SAC/RLPD, replay buffers, checkpoints.

Public modules (import from them; this package imports nothing heavy on its own):

- ``learner.chunk``: the trajectory chunk contract (``ChunkBuilder``, ``validate_chunk``,
  ``concat_chunks``, ``flatten_transitions``, ``apply_rewards``).
- ``learner.config``: ``PPOConfig``, ``SACConfig``, ``NetworkConfig``, ``SymmetryConfig``.
- ``learner.ppo``: ``PPO`` (``act``, ``update``, ``policy_state``), ``compute_gae``.
- ``learner.sac``: ``SAC`` with RLPD (critic ensemble + LayerNorm, UTD, 50/50 online/demo batches).
- ``learner.replay``: ``ReplayBuffer``, ``DemoBuffer``, ``add_transitions`` (numpy, .npz files).
- ``learner.networks``, ``learner.normalizer``, ``learner.symmetry``: building blocks.
- ``learner.checkpoint``: atomic ``save_checkpoint`` / ``load_checkpoint`` (weights-only loading).
- ``learner.device``: ``resolve_device("auto")``.
- ``learner.trainer``: the per-algorithm loop the ``striata train`` launcher drives (chunks in,
  updates, weights out, checkpoints, evaluation).
"""
