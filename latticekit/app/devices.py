"""Backend and device of a job, checked before any work.

``latticekit run`` takes any array backend (:mod:`latticekit.backends`); the flow jobs are torch by
design and take a torch device (:func:`latticekit.app.flows.devices.torch_device`).
"""

from __future__ import annotations

from typing import Any

from latticekit import backends

__all__ = ["resolve_backend"]


def resolve_backend(backend: str | None, device: Any) -> tuple[str, Any]:
    """``(backend name, device)`` with the defaults filled in; an unknown or unavailable backend raises
    :class:`latticekit.backends.BackendError`."""
    name = backend or backends.default_backend()
    backends.namespace(name)  # raises a clear BackendError when unknown/unavailable
    dev = device if device is not None else backends.default_device()
    backends.normalize_device(name, dev)   # a misspelt device is refused here, before any folder is made
    return name, dev
