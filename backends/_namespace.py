"""Namespace lookup, default backend selection and device checks."""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from types import ModuleType
from typing import Any, Iterator

import array_api_compat

BACKENDS: tuple[str, ...] = ("numpy", "torch", "cupy", "array_api_strict")

_COMPAT_MODULES = {
    "numpy": "array_api_compat.numpy",
    "torch": "array_api_compat.torch",
    "cupy": "array_api_compat.cupy",
    "array_api_strict": "array_api_strict",
}

_DEFAULT: contextvars.ContextVar[tuple[str, Any] | None] = contextvars.ContextVar(
    "latticekit_default_backend", default=None
)


class BackendError(ValueError):
    """Unknown or unavailable backend, mixed namespaces or mixed devices."""


def _check_name(name: str, argname: str = "backend") -> str:
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise BackendError(f"{argname}={name!r}: expected one of {', '.join(BACKENDS)}")
    return name.lower()


def namespace(backend: str | None = None) -> ModuleType:
    """Return the Array API namespace of a backend name (default: the current default backend).

    Examples
    --------
    >>> namespace("numpy").__name__
    'array_api_compat.numpy'
    """
    name = _check_name(backend) if backend is not None else default_backend()
    try:
        return importlib.import_module(_COMPAT_MODULES[name])
    except ImportError as exc:  # the library itself is missing
        raise BackendError(
            f"backend={name!r} is not available: {exc}. Install it (e.g. pip install latticekit[{name}])"
        ) from exc


def available_backends() -> list[str]:
    """Names of the backends whose array library imports on this machine."""
    out = []
    for name in BACKENDS:
        try:
            namespace(name)
        except BackendError:
            continue
        out.append(name)
    return out


_PY_SCALARS = (int, float, complex, bool)


def _arrays(arrays: tuple[Any, ...]) -> list[Any]:
    """The arrays among ``arrays``: Python scalars and None are dropped. NumPy scalars (``np.float64``
    subclasses ``float``) are what NumPy returns from 0-d indexing; they count when nothing else does."""
    arrs = [a for a in arrays if a is not None and not isinstance(a, _PY_SCALARS)]
    if not arrs:
        arrs = [a for a in arrays if a is not None and type(a) not in _PY_SCALARS and hasattr(a, "dtype")]
    return arrs


def array_namespace(*arrays: Any) -> ModuleType:
    """The Array API namespace shared by ``arrays`` (Python scalars and None are ignored).

    Raises
    ------
    BackendError
        If the arrays come from different array libraries.
    """
    if len(arrays) == 1:        # the common call: one array of a type seen before
        xp = _BY_TYPES.get((type(arrays[0]),))
        if xp is not None:
            return xp
    arrs = _arrays(arrays)
    key = tuple(dict.fromkeys(type(a) for a in arrs))
    xp = _BY_TYPES.get(key)
    if xp is not None:
        return xp
    try:
        xp = array_api_compat.array_namespace(*arrs)
    except TypeError as exc:
        kinds = sorted({type(a).__module__ + "." + type(a).__name__ for a in arrs})
        raise BackendError(f"arrays from different or unsupported array libraries: {kinds}") from exc
    if len(_BY_TYPES) < 64:
        _BY_TYPES[key] = xp
    return xp


# The namespace depends on the array types alone: array_api_compat's lookup (a chain of type tests, and for
# array_api_strict a flags call per array) was ~7% of the time of the array_api_strict tests. Only successful
# lookups are kept (mixed libraries raise every time); the bound keeps exotic subclasses from growing it.
_BY_TYPES: dict[tuple[type, ...], ModuleType] = {}


def backend_name(x: Any) -> str:
    """Backend name of an array or a namespace (``'numpy'``, ``'torch'``, ``'cupy'``, ``'array_api_strict'``)."""
    xp = x if isinstance(x, ModuleType) else array_namespace(x)
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    raise BackendError(f"unsupported array namespace {getattr(xp, '__name__', xp)!r}")


def device(*arrays: Any) -> Any:
    """The device shared by ``arrays``; raises :class:`BackendError` on mixed devices."""
    arrs = _arrays(arrays)
    if not arrs:
        raise BackendError("device(): no arrays given")
    devs = [array_api_compat.device(a) for a in arrs]
    first = devs[0]
    for d in devs[1:]:
        if d != first:
            raise BackendError(f"arrays live on different devices: {sorted({str(x) for x in devs})}")
    return first


def default_backend() -> str:
    """The backend used when none is given: innermost :func:`use`, else ``LATTICEKIT_BACKEND``, else numpy."""
    cur = _DEFAULT.get()
    if cur is not None:
        return cur[0]
    env = os.environ.get("LATTICEKIT_BACKEND")
    if env:
        return _check_name(env, "LATTICEKIT_BACKEND")
    return "numpy"


def default_device() -> Any:
    """The device set by the innermost :func:`use` (``None`` means the backend's default)."""
    cur = _DEFAULT.get()
    if cur is not None:
        return cur[1]
    return os.environ.get("LATTICEKIT_DEVICE") or None


def normalize_device(backend: str, dev: Any) -> Any:
    """Turn a user device spec (``'cpu'``, ``'cuda'``, ``'cuda:1'``, None) into the backend's device object."""
    if dev is None:
        return None
    if backend == "torch":
        import torch

        try:
            d = torch.device(dev) if isinstance(dev, str) else dev
        except RuntimeError as exc:   # 'gpu', 'cuda:x', 'CPU': torch's own message names what it accepts
            raise BackendError(f"device={dev!r}: not a torch device ({str(exc).splitlines()[0]}); expected e.g. "
                               f"'cpu', 'cuda' or 'cuda:1'") from None
        if not isinstance(d, torch.device):
            raise BackendError(f"device={dev!r}: expected a device name such as 'cpu' or 'cuda:1', or a "
                               f"torch.device")
        if d.type == "meta":   # holds no data: the first random draw failed with "not an accelerator"
            raise BackendError(f"device={dev!r}: a meta tensor holds no data; expected e.g. 'cpu' or 'cuda'")
        if d.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device={dev!r}: torch reports no CUDA device on this machine")
        return d
    if backend == "cupy":
        import cupy

        if isinstance(dev, str):
            if dev == "cpu":
                raise BackendError("device='cpu' is not a cupy device; cupy arrays live on the GPU")
            idx = int(dev.split(":")[1]) if ":" in dev else 0
            return cupy.cuda.Device(idx)
        return dev
    if backend in ("numpy",):
        if dev not in ("cpu", None) and str(dev) != "cpu":
            raise BackendError(f"device={dev!r}: numpy arrays live on the host; expected 'cpu' or None")
        return None
    if backend == "array_api_strict":
        if isinstance(dev, str):
            import array_api_strict

            if dev == "cpu":
                return array_api_strict.Device()
            try:
                return array_api_strict.Device(dev)
            except ValueError:
                raise BackendError(f"device={dev!r}: array_api_strict arrays live on its CPU device; expected "
                                   f"'cpu' or None") from None
        return dev
    return dev


@contextlib.contextmanager
def use(backend: str, device: Any = None) -> Iterator[str]:
    """Context manager selecting the default backend (and device) for constructors.

    Examples
    --------
    >>> from latticekit.backends import use, default_backend
    >>> with use("numpy"):
    ...     default_backend()
    'numpy'
    """
    name = _check_name(backend)
    namespace(name)  # fail early when it is not installed
    token = _DEFAULT.set((name, device))
    try:
        yield name
    finally:
        _DEFAULT.reset(token)
