"""Entry-point conversion of measurement arrays to host NumPy arrays.

This is the only place in :mod:`latticekit.analysis` that deals with array
backends. Torch tensors, CuPy arrays etc. are converted through
:func:`latticekit.backends.to_numpy` (owned by the backend layer); when that is
not importable, plain :func:`numpy.asarray` is used.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

__all__ = ["to_host", "as_generator"]


@functools.lru_cache(maxsize=1)
def _converter() -> Callable[[Any], np.ndarray]:
    try:
        from latticekit.backends import to_numpy  # type: ignore[attr-defined]
    except ImportError:  # backend layer not available (yet): host data only
        return np.asarray
    return to_numpy


def to_host(x: Any, name: str = "x", *, dtype: Any = None) -> np.ndarray:
    """Convert ``x`` (numpy, torch, cupy, list, scalar ...) to a NumPy array.

    Parameters
    ----------
    x : array_like
        Input data, of any supported backend.
    name : str
        Argument name used in error messages.
    dtype : numpy dtype, optional
        If given, the result is cast to this dtype.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> to_host([1, 2, 3], dtype=float)
    array([1., 2., 3.])
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = _converter()(x)
            if not isinstance(arr, np.ndarray):
                arr = np.asarray(arr)
        except Exception as exc:  # pragma: no cover - message path
            raise TypeError(
                f"{name}: cannot convert object of type {type(x).__name__} to a "
                f"host array ({exc})"
            ) from exc
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def as_generator(rng: Any, name: str = "rng") -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from an explicit ``rng``.

    Parameters
    ----------
    rng : numpy.random.Generator, int, numpy.random.SeedSequence, or latticekit Generator
        Explicit source of randomness (a ``latticekit.backends.rng(seed)`` generator of
        any backend seeds a host NumPy stream). ``None`` is rejected on purpose: every
        random function in latticekit takes an explicit seed or generator.

    Examples
    --------
    >>> g = as_generator(1234)
    >>> isinstance(g, np.random.Generator)
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a numpy.random.Generator or an integer seed, got bool")
    if isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    # a latticekit.backends.rng(...) Generator (any backend): seed a host stream from it
    # through its public integers() method; this advances it, so results stay reproducible
    # for the same seed and sequence of calls.
    if callable(getattr(rng, "integers", None)) and hasattr(rng, "backend"):
        seed = to_host(rng.integers(0, 2**62, (2,)), name).astype(np.int64)
        return np.random.default_rng([int(v) for v in seed])
    raise TypeError(
        f"{name}: expected a numpy.random.Generator or an integer seed, got "
        f"{type(rng).__name__}"
    )
