"""The torch device of a flow job, checked before any work (flow jobs are torch by design)."""

from __future__ import annotations

from typing import Any

from latticekit.utils.schema import ConfigError

__all__ = ["torch_device"]


def torch_device(backend: str, device: Any) -> Any:
    """The torch device of a flow job (None: CPU); ``backend`` must be ``"torch"``."""
    if backend != "torch":
        raise ConfigError(f"backend: flows are torch by design; expected 'torch', got {backend!r}")
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device: {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but torch sees no CUDA device")
    return dev
