"""Device choice (``resolve_device("auto")`` is CUDA when available, else CPU) and host->device transfers.

``to_device`` is how learners move chunk arrays: a numpy array bound for CUDA is staged in pinned
(page-locked) memory and copied with ``non_blocking=True``, so the copy overlaps the work already
queued on the GPU; a torch tensor already on the device (a GPU env backend's output) is used as it
is, without a copy; on CPU it is ``torch.as_tensor`` (no copy for float32 arrays), except that a
read-only array (Ray hands chunks out of its object store read-only) is copied: a tensor over memory
it may not write is undefined behaviour to torch, which warns on every run.
"""

from __future__ import annotations

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; anything else is passed to ``torch.device``.

    Asking for CUDA where there is none fails here, with the name, rather than at the first tensor.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def to_device(
    x: np.ndarray | torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``x`` as a ``dtype`` tensor on ``device`` (see the module docstring for what is copied)."""
    if device.type == "cuda" and isinstance(x, np.ndarray):
        host = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
        return host.pin_memory().to(device, non_blocking=True)
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        return torch.tensor(x, dtype=dtype, device=device)  # one copy, converted as it is made
    return torch.as_tensor(x, dtype=dtype, device=device)
