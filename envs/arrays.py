"""One MDP definition for numpy and torch: the array namespace of inputs, and random draws from either
library's generator.

Task terms call ``namespace(x)`` (``array_api_compat.array_namespace``) and use its functions, so the
same code runs on the CPU backend's numpy arrays and on a GPU backend's torch tensors, where the
tensors never leave the device. ``uniform`` and ``integers`` draw from a ``numpy.random.Generator``
or a ``torch.Generator`` (then on that generator's device).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

Array = Any  # a numpy array or a torch tensor
Rng = Any  # numpy.random.Generator or torch.Generator

__all__ = ["Array", "Rng", "bincount", "device", "integers", "namespace", "uniform"]


def namespace(*arrays: Array) -> Any:
    """The array-API namespace of ``arrays`` (numpy's or torch's, wrapped by array_api_compat)."""
    return array_namespace(*arrays)


def uniform(rng: Rng, low: Any, high: Any, size: tuple[int, ...]) -> Array:
    """Uniform draws in [low, high) of ``size``; ``low`` / ``high`` broadcast like numpy's."""
    if isinstance(rng, np.random.Generator):
        return rng.uniform(low, high, size=size)
    import torch

    unit = torch.rand(size, generator=rng, device=rng.device, dtype=torch.float32)
    low = torch.as_tensor(low, dtype=torch.float32, device=rng.device)
    high = torch.as_tensor(high, dtype=torch.float32, device=rng.device)
    return low + (high - low) * unit


def integers(rng: Rng, high: int, size: int) -> Array:
    """``size`` integers in [0, high)."""
    if isinstance(rng, np.random.Generator):
        return rng.integers(0, high, size=size)
    import torch

    return torch.randint(0, high, (size,), generator=rng, device=rng.device)


def bincount(values: Array, length: int, dtype: Any, weights: Array | None = None) -> Array:
    """Counts of each integer in [0, length) among ``values``, each counted ``weights`` times."""
    if isinstance(values, np.ndarray):
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        return np.bincount(values, weights=w, minlength=length).astype(dtype)
    import torch

    w = None if weights is None else weights.to(torch.float32)
    return torch.bincount(values, weights=w, minlength=length).to(dtype)
