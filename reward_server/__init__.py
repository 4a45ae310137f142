"""Reward service: VLM process-reward backends, micro-batching, cache, its client and shaping helpers."""
