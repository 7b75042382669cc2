"""Choosing the torch device and dtype."""
from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a ``torch.device``: ``"auto"`` (or None) picks CUDA when ``torch.cuda.is_available()``.

    Asking explicitly for ``"cuda"`` on a machine without CUDA raises ``ValueError`` rather than
    silently running on the CPU.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was requested but torch sees no CUDA device; "
                         "use device='auto' or 'cpu'")
    return dev
