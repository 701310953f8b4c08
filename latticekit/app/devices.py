"""Backend and device of a job, checked before any work.

``latticekit run`` takes any array backend (:mod:`latticekit.backends`); the flow jobs are torch by
design and take a torch device.
"""

from __future__ import annotations

from typing import Any

from latticekit import backends
from latticekit.utils.schema import ConfigError

__all__ = ["resolve_backend", "torch_device"]


def resolve_backend(backend: str | None, device: Any) -> tuple[str, Any]:
    """``(backend name, device)`` with the defaults filled in; an unknown or unavailable backend raises
    :class:`latticekit.backends.BackendError`."""
    name = backend or backends.default_backend()
    backends.namespace(name)  # raises a clear BackendError when unknown/unavailable
    dev = device if device is not None else backends.default_device()
    return name, dev


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
