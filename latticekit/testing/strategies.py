"""Hypothesis strategies for lattices, group elements, gauge fields and scalar fields.

Random arrays are never drawn element by element by hypothesis (that is slow and shrinks badly):
hypothesis draws a *seed* and a few scalars (a scale), and the array is built from a seeded
:func:`latticekit.backends.rng` on the requested backend and device. Failing examples therefore
shrink to small seeds and small scales, and are reproducible on every backend. Bad arguments (a group
that is not a Group, an unknown or missing backend, a device it does not have, an unknown precision,
non-integer shapes, an infinite bound) are refused when the strategy is built, not at the first draw.

Group elements near the identity are ``exp(X)`` of a **bounded** algebra element: coordinates
``omega^a`` uniform in ``[-s, s]`` with ``s`` drawn in ``[0, max_scale]`` (no rejection sampling,
``s = 0`` gives the identity). Haar-random elements come from ``group.random`` with a drawn seed.

Examples
--------
>>> from hypothesis import given, settings
>>> from latticekit import SU, Lattice
>>> from latticekit.testing import strategies as lks
>>> @settings(max_examples=3, deadline=None)
... @given(lks.group_elements(SU(2), (2,), backend="numpy"))
... def check(U):
...     assert float(SU(2).defect(U, nd=0).max()) < 1e-12
>>> check()
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from hypothesis import strategies as st

from latticekit.backends import namespace, normalize_device, precision_bits, rng as make_rng
from latticekit.groups import Group
from latticekit.lattice import Lattice

from ._validate import check_group

__all__ = [
    "gauge_fields",
    "gauge_transformations",
    "group_elements",
    "haar_elements",
    "lattices",
    "scalar_fields",
    "seeds",
]

_MAX_SEED = 2**32 - 1


def seeds() -> st.SearchStrategy[int]:
    """Seeds for :func:`latticekit.backends.rng` (integers in ``[0, 2**32)``).

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=3, deadline=None)
    ... @given(seeds())
    ... def check(seed):
    ...     assert 0 <= seed < 2**32
    >>> check()
    """
    return st.integers(min_value=0, max_value=_MAX_SEED)


def _is_int(n: Any) -> bool:
    return hasattr(n, "__index__") and not isinstance(n, bool)


def _check_shape(shape: Sequence[int], name: str) -> tuple[int, ...]:
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(f"{name}={shape!r}: expected a sequence of non-negative integers") from None
    if not all(_is_int(s) for s in items):   # 2.5 was truncated to 2
        raise TypeError(f"{name}={shape!r}: expected a sequence of non-negative integers")
    out = tuple(int(s) for s in items)
    if any(s < 0 for s in out):
        raise ValueError(f"{name}={shape!r}: expected non-negative extents")
    return out


def _check_bound(value: Any, name: str) -> float:
    """A finite non-negative real bound (inf drew coordinates of 1e16)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < math.inf:
        raise ValueError(f"{name}={value!r}: expected a finite non-negative number")
    return float(value)


def _check_backend(backend: Any, device: Any) -> None:
    """Refuse an unknown or unavailable backend (and a device it does not have) here, not at the first draw."""
    if backend is None:
        return
    namespace(backend)   # a BackendError naming backend= for an unknown name or a library that is not installed
    if device is not None:
        normalize_device(str(backend).lower(), device)


def _bits(precision: Any) -> str:
    """'float64' / 'float32' for the library's precision names; a ValueError naming ``precision`` otherwise
    (an unknown name such as 'float16' gave float64)."""
    return f"float{precision_bits(precision)}"


def lattices(nd: int | Sequence[int] = 2, min_size: int = 2, max_size: int = 6, even: bool = True
             ) -> st.SearchStrategy[Lattice]:
    """Hypercubic lattices with ``nd`` dimensions and extents in ``[min_size, max_size]``.

    Parameters
    ----------
    nd : int or sequence of int
        Number of dimensions, or the choices for it.
    min_size, max_size : int
        Bounds for every extent (inclusive).
    even : bool
        Only even extents (needed for even/odd decompositions and blocking by 2).

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=5, deadline=None)
    ... @given(lattices(nd=(2, 3), min_size=2, max_size=4))
    ... def check(lat):
    ...     assert lat.nd in (2, 3) and all(s in (2, 4) for s in lat.shape)
    >>> check()
    """
    try:
        nds = (nd,) if _is_int(nd) else tuple(nd)
    except TypeError:
        nds = ()
    if not nds or not all(_is_int(n) and int(n) >= 1 for n in nds):
        raise ValueError(f"nd={nd!r}: expected a positive integer or a sequence of them")
    nds = tuple(int(n) for n in nds)
    for name, v in (("min_size", min_size), ("max_size", max_size)):
        if not _is_int(v):
            raise TypeError(f"{name}={v!r}: expected an integer")
    if not isinstance(even, bool):
        raise TypeError(f"even={even!r}: expected True or False")
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"min_size={min_size}, max_size={max_size}: expected 1 <= min_size <= max_size")
    sizes = [s for s in range(min_size, max_size + 1) if (s % 2 == 0 or not even)]
    if not sizes:
        raise ValueError(f"no even extent in [{min_size}, {max_size}]; widen the range or pass even=False")
    return st.sampled_from(nds).flatmap(
        lambda n: st.lists(st.sampled_from(sizes), min_size=n, max_size=n).map(Lattice)
    )


def group_elements(group: Group, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
                   backend: str | None = None, device: Any = None, max_scale: float = 2.0,
                   precision: Any = "double") -> st.SearchStrategy[Any]:
    """Group elements ``exp(X)`` of bounded algebra elements, shape ``(*batch_shape, *G, *site_shape)``.

    The coordinates of ``X`` are uniform in ``[-s, s]`` with ``s`` drawn by hypothesis in
    ``[0, max_scale]`` (``s = 0``: the identity, which hypothesis tries early). U(1): angles in
    ``[-s, s]`` (unwrapped when ``s > pi``).

    Parameters
    ----------
    group : Group
        U1 or SU(N).
    batch_shape, site_shape : sequence of int
        Leading batch axes and trailing site axes (``nd = len(site_shape)``).
    backend, device :
        Where the arrays live (default: the current default backend).
    max_scale : float
        Bound on every algebra coordinate (finite, non-negative).
    precision : 'double' or 'single'

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from latticekit import U1
    >>> @settings(max_examples=5, deadline=None)
    ... @given(group_elements(U1, (10,), backend="numpy", max_scale=0.5))
    ... def check(theta):
    ...     assert abs(theta).max() <= 0.5
    >>> check()
    """
    check_group(group)
    bs, ss = _check_shape(batch_shape, "batch_shape"), _check_shape(site_shape, "site_shape")
    max_scale = _check_bound(max_scale, "max_scale")
    dt = _bits(precision)
    _check_backend(backend, device)
    nd = len(ss)

    def build(seed: int, scale: float) -> Any:
        g = make_rng(seed, backend=backend, device=device)
        omega = g.uniform(bs + (group.algebra_dim,) + ss, low=-scale, high=scale, dtype=dt)
        return group.exp(group.from_coords(omega, nd=nd), nd=nd)

    return st.builds(build, seeds(), st.floats(min_value=0.0, max_value=max_scale,
                                               allow_nan=False, allow_infinity=False))


def haar_elements(group: Group, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
                  backend: str | None = None, device: Any = None, precision: Any = "double"
                  ) -> st.SearchStrategy[Any]:
    """Haar-random group elements from ``group.random`` with a seed drawn by hypothesis.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from latticekit import SU
    >>> @settings(max_examples=3, deadline=None)
    ... @given(haar_elements(SU(3), (2,), (4, 4), backend="numpy"))
    ... def check(U):
    ...     assert U.shape == (2, 3, 3, 4, 4)
    >>> check()
    """
    check_group(group)   # refused here, not at the first draw, as precision and backend
    bs, ss = _check_shape(batch_shape, "batch_shape"), _check_shape(site_shape, "site_shape")
    _bits(precision)
    _check_backend(backend, device)

    def build(seed: int) -> Any:
        return group.random(make_rng(seed, backend=backend, device=device), bs, ss, precision=precision)

    return st.builds(build, seeds())


def _fields(group: Group, batch: tuple[int, ...], site: tuple[int, ...], kind: str, backend: str | None,
            device: Any, max_scale: float, precision: Any) -> st.SearchStrategy[Any]:
    kinds = ("mixed", "haar", "smooth")
    if kind not in kinds:
        raise ValueError(f"kind={kind!r}: expected one of {kinds}")
    haar = haar_elements(group, batch, site, backend=backend, device=device, precision=precision)
    smooth = group_elements(group, batch, site, backend=backend, device=device, max_scale=max_scale,
                            precision=precision)
    if kind == "haar":
        return haar
    if kind == "smooth":
        return smooth
    return st.one_of(smooth, haar)


def _lattice(lattice: Lattice) -> Lattice:
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice (draw one with lattices() and "
                        "flatmap)")
    return lattice


def gauge_fields(group: Group, lattice: Lattice, batch_shape: Sequence[int] = (), *, backend: str | None = None,
                 device: Any = None, kind: str = "mixed", max_scale: float = 2.0, precision: Any = "double"
                 ) -> st.SearchStrategy[Any]:
    """Gauge fields of shape ``(*batch_shape, Nd, *G, *L)``.

    ``kind``: ``"haar"`` (hot start), ``"smooth"`` (links ``exp(X)`` with bounded ``X``, see
    :func:`group_elements`; includes the cold field) or ``"mixed"`` (either).

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from latticekit import U1
    >>> from latticekit.testing.strategies import gauge_fields, lattices
    >>> pairs = lattices(nd=2, max_size=4).flatmap(lambda lat: gauge_fields(U1, lat).map(lambda U: (lat, U)))
    >>> @settings(max_examples=3, deadline=None)
    ... @given(pairs)
    ... def check(pair):
    ...     lat, U = pair
    ...     assert U.shape == (lat.nd,) + lat.shape
    >>> check()
    """
    lat = _lattice(lattice)
    bs = _check_shape(batch_shape, "batch_shape") + (lat.nd,)
    return _fields(group, bs, lat.shape, kind, backend, device, max_scale, precision)


def gauge_transformations(group: Group, lattice: Lattice, batch_shape: Sequence[int] = (), *,
                          backend: str | None = None, device: Any = None, kind: str = "mixed",
                          max_scale: float = 2.0, precision: Any = "double") -> st.SearchStrategy[Any]:
    """Gauge transformations ``Omega(x)`` of shape ``(*batch_shape, *G, *L)`` (``kind`` as in
    :func:`gauge_fields`).

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from latticekit import SU, Lattice
    >>> @settings(max_examples=3, deadline=None)
    ... @given(gauge_transformations(SU(2), Lattice((2, 2)), kind="haar", backend="numpy"))
    ... def check(Om):
    ...     assert Om.shape == (2, 2, 2, 2)
    >>> check()
    """
    lat = _lattice(lattice)
    bs = _check_shape(batch_shape, "batch_shape")
    return _fields(group, bs, lat.shape, kind, backend, device, max_scale, precision)


def scalar_fields(lattice: Lattice, batch_shape: Sequence[int] = (), *, backend: str | None = None,
                  device: Any = None, max_abs: float = 3.0, precision: Any = "double"
                  ) -> st.SearchStrategy[Any]:
    """Real scalar fields of shape ``(*batch_shape, *L)``, uniform in ``[-s, s]``, ``s`` drawn in
    ``[0, max_abs]``.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from latticekit import Lattice
    >>> @settings(max_examples=3, deadline=None)
    ... @given(scalar_fields(Lattice((4, 4)), (2,), backend="numpy", max_abs=1.0))
    ... def check(phi):
    ...     assert phi.shape == (2, 4, 4) and abs(phi).max() <= 1.0
    >>> check()
    """
    lat = _lattice(lattice)
    bs = _check_shape(batch_shape, "batch_shape")
    max_abs = _check_bound(max_abs, "max_abs")
    dt = _bits(precision)
    _check_backend(backend, device)

    def build(seed: int, scale: float) -> Any:
        g = make_rng(seed, backend=backend, device=device)
        return g.uniform(bs + lat.shape, low=-scale, high=scale, dtype=dt)

    return st.builds(build, seeds(), st.floats(min_value=0.0, max_value=max_abs, allow_nan=False,
                                               allow_infinity=False))
