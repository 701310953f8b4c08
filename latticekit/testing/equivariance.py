"""Equivariance and gauge-invariance checkers (host-side reductions of backend arrays)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from latticekit.backends import Generator, array_namespace, backend_name, check_rng, to_backend, to_numpy
from latticekit.backends import device as _device
from latticekit.gauge import check_gauge_field, gauge_transform
from latticekit.groups import Group, U1Group
from latticekit.lattice import Lattice

__all__ = [
    "assert_equivariant",
    "assert_gauge_equivariant",
    "assert_gauge_invariant",
    "equivariance_error",
    "gauge_equivariance_error",
    "gauge_invariance_error",
    "random_gauge_transformation",
]


def _parts(y: Any) -> list[Any]:
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _max_abs_diff(a: Any, b: Any) -> float:
    d = np.abs(np.asarray(to_numpy(a)) - np.asarray(to_numpy(b)))
    if d.size == 0:
        return 0.0
    return float(np.max(np.where(np.isnan(d), np.inf, d)))


def _angle_distance(a: Any, b: Any) -> float:
    """max |a - b| modulo 2 pi (U(1) angles are defined up to 2 pi)."""
    d = np.asarray(to_numpy(a), dtype=np.float64) - np.asarray(to_numpy(b), dtype=np.float64)
    if d.size == 0:
        return 0.0
    d = np.abs(np.angle(np.exp(1j * d)))
    return float(np.max(np.where(np.isnan(d), np.inf, d)))


def _call(f: Callable[..., Any], x: Any, context: Any) -> Any:
    return f(x) if context is None else f(x, context=context)


def equivariance_error(f: Callable[[Any], Any], x: Any, transform_in: Callable[[Any], Any],
                       transform_out: Callable[[Any], Any] | None = None, *,
                       distance: Callable[[Any, Any], float] | None = None) -> float:
    """``max |f(T x) - T' f(x)|``: how far ``f`` is from commuting with a transformation.

    Parameters
    ----------
    f : callable
        The map. If it returns a tuple (e.g. a flow layer's ``(y, logdet)``), ``transform_out`` acts
        on the first component and the other components must be invariant.
    x : array
        Input.
    transform_in : callable
        ``T``.
    transform_out : callable, optional
        ``T'`` (default: ``T``; pass ``lambda y: y`` for an invariance check).
    distance : callable, optional
        ``distance(a, b) -> float`` for the first component (default: max absolute difference; use
        an angle-aware distance for U(1) fields).

    Returns
    -------
    float
        The largest deviation over all components.

    Examples
    --------
    >>> import numpy as np
    >>> from latticekit import Lattice
    >>> lat = Lattice((4, 4))
    >>> f = lambda phi: phi + 0.5 * (lat.shift(phi, 0, 1) + lat.shift(phi, 0, -1))
    >>> T = lambda phi: lat.shift(phi, 1, 1)                       # a translation
    >>> equivariance_error(f, np.random.default_rng(0).normal(size=(4, 4)), T) < 1e-15
    True
    """
    T_out = transform_in if transform_out is None else transform_out
    a = _parts(f(transform_in(x)))
    b = _parts(f(x))
    if len(a) != len(b):
        raise ValueError("f returned outputs of different structure for x and T x")
    dist = distance or _max_abs_diff
    err = dist(a[0], T_out(b[0]))
    for ai, bi in zip(a[1:], b[1:]):
        err = max(err, _max_abs_diff(ai, bi))
    return float(err)


def assert_equivariant(f: Callable[[Any], Any], x: Any, transform_in: Callable[[Any], Any],
                       transform_out: Callable[[Any], Any] | None = None, *, atol: float = 1e-10,
                       distance: Callable[[Any, Any], float] | None = None, msg: str = "") -> None:
    """Raise AssertionError when :func:`equivariance_error` exceeds ``atol``.

    Examples
    --------
    >>> import numpy as np
    >>> assert_equivariant(np.tanh, np.linspace(-1, 1, 5), lambda x: -x)      # tanh is odd
    """
    err = equivariance_error(f, x, transform_in, transform_out, distance=distance)
    if not err <= atol:
        raise AssertionError(f"{msg + ': ' if msg else ''}not equivariant: max deviation {err:.3e} > atol={atol:.1e}")


def _batch_shape(U: Any, group: Group, lattice: Lattice) -> tuple[int, ...]:
    return tuple(U.shape[: U.ndim - lattice.nd - len(group.element_shape) - 1])


def random_gauge_transformation(U: Any, group: Group, lattice: Lattice, rng: Generator) -> Any:
    """A Haar-random ``Omega(x)`` for the gauge field ``U``: same batch shape, backend, device and
    precision as ``U``.

    Examples
    --------
    >>> from latticekit import Lattice, SU, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); U = random_gauge_field(SU(2), lat, backends.rng(0), (3,))
    >>> random_gauge_transformation(U, SU(2), lat, backends.rng(1)).shape
    (3, 2, 2, 4, 4)
    """
    check_gauge_field(U, group, lattice)
    check_rng(rng)   # of any backend: Omega is moved to U's backend and device below
    xp = array_namespace(U)
    single = U.dtype in (getattr(xp, "float32", None), getattr(xp, "complex64", None))
    Om = group.random(rng, _batch_shape(U, group, lattice), lattice.shape, precision="single" if single else "double")
    if backend_name(Om) != backend_name(U) or str(_device(Om)) != str(_device(U)):
        Om = to_backend(Om, backend_name(U), _device(U))
    return Om


def _gauge_distance(group: Group) -> Callable[[Any, Any], float]:
    return _angle_distance if isinstance(group, U1Group) else _max_abs_diff


def gauge_equivariance_error(layer_or_fn: Callable[..., Any], U: Any, group: Group, lattice: Lattice,
                             rng: Generator, *, context: Any = None, Omega: Any = None) -> float:
    """``max |f(U^Omega) - f(U)^Omega|`` for a random gauge transformation ``Omega``.

    ``f`` maps a gauge field to a gauge field (or returns ``(field, logdet, ...)``: the further
    outputs must be gauge invariant). U(1) angles are compared modulo ``2 pi``. ``Omega`` defaults
    to a Haar-random transformation drawn from ``rng`` (see :func:`random_gauge_transformation`).

    Examples
    --------
    >>> from latticekit import Lattice, SU, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); G = SU(2); rng = backends.rng(0)
    >>> U = random_gauge_field(G, lat, rng)
    >>> f = lambda V: G.mul(V, V, nd=2)            # U_mu(x)^2 is NOT gauge covariant
    >>> gauge_equivariance_error(f, U, G, lat, rng) > 0.1
    True
    >>> gauge_equivariance_error(lambda V: V, U, G, lat, rng) < 1e-12
    True
    """
    Om = random_gauge_transformation(U, group, lattice, rng) if Omega is None else Omega

    def T(V: Any) -> Any:
        return gauge_transform(V, Om, group, lattice)

    return equivariance_error(lambda V: _call(layer_or_fn, V, context), U, T, distance=_gauge_distance(group))


def gauge_invariance_error(fn: Callable[..., Any], U: Any, group: Group, lattice: Lattice, rng: Generator, *,
                           context: Any = None, Omega: Any = None) -> float:
    """``max |fn(U^Omega) - fn(U)|`` for scalars such as actions or Wilson loops (all outputs invariant).

    Examples
    --------
    >>> from latticekit import Lattice, U1, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); rng = backends.rng(0)
    >>> U = random_gauge_field(U1, lat, rng)
    >>> plaq = lambda V: U1.re_trace(V[0] + lat.shift(V[1], 0) - lat.shift(V[0], 1) - V[1], nd=2).sum()
    >>> gauge_invariance_error(plaq, U, U1, lat, rng) < 1e-12
    True
    """
    Om = random_gauge_transformation(U, group, lattice, rng) if Omega is None else Omega
    return equivariance_error(lambda V: _call(fn, V, context), U, lambda V: gauge_transform(V, Om, group, lattice),
                              lambda y: y)


def assert_gauge_equivariant(layer_or_fn: Callable[..., Any], U: Any, group: Group, lattice: Lattice,
                             rng: Generator, *, atol: float = 1e-10, context: Any = None, msg: str = "") -> None:
    """Raise AssertionError when :func:`gauge_equivariance_error` exceeds ``atol``.

    Examples
    --------
    >>> from latticekit import Lattice, U1, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); rng = backends.rng(0)
    >>> assert_gauge_equivariant(lambda V: V, random_gauge_field(U1, lat, rng), U1, lat, rng)
    """
    err = gauge_equivariance_error(layer_or_fn, U, group, lattice, rng, context=context)
    if not err <= atol:
        raise AssertionError(f"{msg + ': ' if msg else ''}not gauge equivariant: max deviation {err:.3e} > "
                             f"atol={atol:.1e}")


def assert_gauge_invariant(fn: Callable[..., Any], U: Any, group: Group, lattice: Lattice, rng: Generator, *,
                           atol: float = 1e-10, context: Any = None, msg: str = "") -> None:
    """Raise AssertionError when :func:`gauge_invariance_error` exceeds ``atol``.

    Examples
    --------
    >>> from latticekit import Lattice, U1, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); rng = backends.rng(0)
    >>> U = random_gauge_field(U1, lat, rng)
    >>> try:
    ...     assert_gauge_invariant(lambda V: V[0, 0, 0], U, U1, lat, rng)   # one link angle is not
    ... except AssertionError as e:
    ...     print(str(e)[:19])
    not gauge invariant
    """
    err = gauge_invariance_error(fn, U, group, lattice, rng, context=context)
    if not err <= atol:
        raise AssertionError(f"{msg + ': ' if msg else ''}not gauge invariant: max deviation {err:.3e} > "
                             f"atol={atol:.1e}")
