"""Small numerical helpers shared by the exact-results modules (host side, NumPy only)."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.polynomial.legendre import leggauss

F = TypeVar("F", bound=Callable[..., Any])


@functools.lru_cache(maxsize=64)
def _leggauss(order: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = leggauss(order)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def composite_gauss_legendre(edges: np.ndarray, order: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of composite Gauss-Legendre quadrature on the panels ``edges``."""
    edges = np.asarray(edges, dtype=float)
    x, w = _leggauss(order)
    a, b = edges[:-1, None], edges[1:, None]
    nodes = 0.5 * (b - a) * x[None, :] + 0.5 * (b + a)
    weights = 0.5 * (b - a) * w[None, :]
    return nodes.ravel(), weights.ravel()


def signed_logsumexp(logs: np.ndarray, signs: np.ndarray | None = None) -> tuple[float, float]:
    """Return ``(log|S|, sign(S))`` of ``S = sum_i signs_i exp(logs_i)`` without overflow.

    Entries with ``logs = -inf`` contribute nothing.
    """
    logs = np.asarray(logs, dtype=float).ravel()
    signs = np.ones_like(logs) if signs is None else np.asarray(signs, dtype=float).ravel()
    finite = np.isfinite(logs) & (signs != 0)
    if not np.any(finite):
        return -math.inf, 0.0
    m = np.max(logs[finite])
    s = float(np.sum(signs[finite] * np.exp(logs[finite] - m)))
    if s == 0.0:
        return -math.inf, 0.0
    return m + math.log(abs(s)), math.copysign(1.0, s)


#: the largest coupling the exact results accept: scipy's scaled Bessel functions return NaN from about 1e10,
#: and at 1e8 the U(1) plaquette is still right to 1e-8 relative in 1 - P (SU(N) has its own, lower bound)
MAX_BETA = 1e8


def check_beta(beta: float, name: str = "beta") -> float:
    """Validate a coupling in ``[0, MAX_BETA]`` and return it as a Python float (a bool is refused: True read as
    beta = 1)."""
    if isinstance(beta, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {beta!r}")
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {beta!r}") from None
    if not math.isfinite(b) or b < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {beta!r}")
    if b > MAX_BETA:
        raise ValueError(f"{name}={beta!r}: expected {name} <= {MAX_BETA:g} (the Bessel functions of the exact results "
                         f"lose accuracy beyond; there 1 - P is its weak-coupling value (N^2 - 1)/(2 beta) to 1/beta)")
    return b


def check_shape(shape: Sequence[int], nd: int | None = None, name: str = "shape") -> tuple[int, ...]:
    """Validate a lattice shape (positive integers, optionally of fixed length ``nd``)."""
    try:
        if any(isinstance(s, (bool, np.bool_)) for s in shape):   # (True, 4) was a 1 x 4 torus
            raise TypeError
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of positive integers, got {shape!r}") from None
    if any(o != s for o, s in zip(out, shape)) or any(s < 1 for s in out) or len(out) == 0:
        raise ValueError(f"{name} must be a sequence of positive integers, got {shape!r}")
    if nd is not None and len(out) != nd:
        raise ValueError(f"{name} must have length {nd} (a {nd}D lattice), got {shape!r}")
    return out


def check_int(value: int, name: str, minimum: int = 0) -> int:
    """Validate an integer argument ``>= minimum`` (Python or NumPy integers; 2.0 and True are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return v


def vectorize_beta(func: F) -> F:
    """Let a scalar function of ``beta`` (first argument) accept array-like ``beta``.

    A scalar ``beta`` gives a Python float; an array gives a float64 array of the same shape.
    """

    @functools.wraps(func)
    def wrapper(beta: Any, *args: Any, **kwargs: Any) -> Any:
        b = np.asarray(beta)
        if b.ndim == 0:
            return float(func(check_beta(b.item()), *args, **kwargs))
        out = np.empty(b.shape, dtype=float)
        for idx, bi in np.ndenumerate(b):
            out[idx] = func(check_beta(bi.item() if hasattr(bi, "item") else bi), *args, **kwargs)
        return out

    return wrapper  # type: ignore[return-value]
