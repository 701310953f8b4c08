"""Host <-> device conversion and zero-copy DLPack hand-off between backends."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._namespace import BackendError, backend_name, default_backend, default_device, namespace, normalize_device


def to_numpy(x: Any) -> np.ndarray:
    """Copy (or view, on the host) an array of any backend as a NumPy array.

    torch tensors are detached; conjugate views are resolved; CUDA data is copied to the host.
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (int, float, complex, bool, np.generic, list, tuple)):
        return np.asarray(x)
    name = backend_name(x)
    if name == "torch":
        return x.detach().resolve_conj().cpu().numpy()
    if name == "cupy":
        return x.get()
    if name == "array_api_strict":
        return np.from_dlpack(x)
    return np.asarray(x)


def from_numpy(a: Any, backend: str | None = None, device: Any = None, copy: bool = False) -> Any:
    """Hand a host (NumPy) array to ``backend`` on ``device`` (defaults: :func:`use` / env / numpy).

    torch tensors on the CPU share memory with ``a`` unless ``copy=True``.
    """
    name = backend or default_backend()
    dev = normalize_device(name, device if device is not None else default_device())
    a = np.asarray(a)
    if name == "numpy":
        return a.copy() if copy else a
    if name == "torch":
        import torch

        if copy or not a.flags.writeable or any(st < 0 for st in a.strides):
            # torch cannot share read-only or negatively strided memory: hand it a fresh copy
            a = np.array(a, order="C", copy=True)
        t = torch.from_numpy(a)
        return t if dev is None else t.to(dev)
    xp = namespace(name)
    if name == "cupy":
        import cupy

        if dev is None:
            return cupy.asarray(a)
        with dev:
            return cupy.asarray(a)
    return xp.asarray(a, device=dev) if dev is not None else xp.asarray(a)


def from_dlpack(x: Any, backend: str) -> Any:
    """Zero-copy hand-off of ``x`` to ``backend`` through DLPack (same device, shared memory).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(3.0)
    >>> b = from_dlpack(a, "numpy")
    >>> b[0] = 7.0; a[0]
    np.float64(7.0)
    """
    name = backend.lower()
    src = backend_name(x)
    if name == src:
        return x
    if name == "numpy":
        return np.from_dlpack(x)
    if name == "torch":
        import torch

        return torch.from_dlpack(x)
    if name == "cupy":
        import cupy

        return cupy.from_dlpack(x)
    if name == "array_api_strict":
        import array_api_strict

        return array_api_strict.from_dlpack(x)
    raise BackendError(f"backend={backend!r}: unknown")


def to_backend(x: Any, backend: str | None = None, device: Any = None) -> Any:
    """Move ``x`` to ``backend``/``device``: zero copy through DLPack where possible, else via the host."""
    name = backend or default_backend()
    src = backend_name(x)
    dev = normalize_device(name, device)
    if src == name:
        if dev is None:
            return x
        return namespace(name).asarray(x, device=dev) if name != "torch" else x.to(dev)
    try:
        if name == "torch":
            # requires_grad tensors cannot be exported; numpy<->torch on the CPU is zero copy
            y = from_dlpack(x, name)
            return y if dev is None else y.to(dev)
        if dev is None:
            return from_dlpack(x, name)
    except (BufferError, RuntimeError, TypeError, ValueError, AttributeError):
        pass
    return from_numpy(to_numpy(x), backend=name, device=device)


def asarray(x: Any, backend: str | None = None, device: Any = None, dtype: Any = None) -> Any:
    """Any array-like (list, NumPy array, other backend) as an array of ``backend`` on ``device``.

    ``dtype`` may be a dtype of the target namespace or a name such as ``"float64"``.
    """
    name = backend or default_backend()
    xp = namespace(name)
    if isinstance(x, (list, tuple, int, float, complex, np.ndarray, np.generic)):
        y = from_numpy(np.asarray(x), backend=name, device=device)
    else:
        y = to_backend(x, name, device)
    if dtype is not None:
        dt = getattr(xp, dtype) if isinstance(dtype, str) else dtype
        if y.dtype != dt:
            y = xp.astype(y, dt)
    return y
