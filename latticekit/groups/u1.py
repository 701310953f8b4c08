"""U(1) stored as angles ``theta`` in (-pi, pi] (the element is ``exp(i theta)``).

Products add angles without wrapping (any real angle represents a valid element; wrapping costs a
floor per operation and is only needed where the branch matters, e.g. the topological charge).
``normalize`` wraps into (-pi, pi]; constructors and readers return wrapped angles.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from latticekit.backends import Generator, array_namespace, check_rng, complex_dtype_for, precision_bits, real_dtype

from .base import Group, wrap_angle

__all__ = ["U1", "U1Group"]


def _expand(a: Any, nd: int) -> Any:
    """Insert the one-element group/colour axis before the site axes."""
    xp = array_namespace(a)
    return xp.expand_dims(a, axis=a.ndim - nd)


class U1Group(Group):
    """The group U(1) in the angle representation.

    Examples
    --------
    >>> from latticekit import U1, backends
    >>> U = U1.random(backends.rng(0), (2,), (4, 4))
    >>> U.shape
    (2, 4, 4)
    >>> float(abs(U1.re_trace_mul_adj(U, U, nd=2) - 1.0).max())
    0.0
    """

    element_shape = ()
    N = 1
    name = "U(1)"
    dtype_kind = "real floating"

    def identity(self, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
                 backend: str | None = None, device: Any = None, precision: Any = "double") -> Any:
        xp, dev = self._alloc_args(backend, device)
        return xp.zeros(tuple(batch_shape) + tuple(site_shape), dtype=real_dtype(xp, precision), device=dev)

    def random(self, rng: Generator, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
               precision: Any = "double") -> Any:
        dt = f"float{precision_bits(precision)}"   # an unknown precision is refused (it gave float64)
        return -check_rng(rng).uniform(tuple(batch_shape) + tuple(site_shape), low=-math.pi, high=math.pi, dtype=dt)

    def mul(self, a: Any, b: Any, *, nd: int) -> Any:
        return a + b

    def adjoint(self, a: Any, *, nd: int) -> Any:
        return -a

    def mul_adj(self, a: Any, b: Any, *, nd: int) -> Any:
        return a - b

    def adj_mul(self, a: Any, b: Any, *, nd: int) -> Any:
        return b - a

    def trace(self, a: Any, *, nd: int) -> Any:
        return self.to_matrix(a, nd=nd)

    def re_trace(self, a: Any, *, nd: int) -> Any:
        return array_namespace(a).cos(a)

    def re_trace_mul_adj(self, a: Any, b: Any, *, nd: int) -> Any:
        return array_namespace(a, b).cos(a - b)

    def to_matrix(self, U: Any, *, nd: int) -> Any:
        xp = array_namespace(U)
        ct = complex_dtype_for(U.dtype, xp)
        return xp.astype(xp.cos(U), ct) + 1j * xp.astype(xp.sin(U), ct)

    def act(self, U: Any, v: Any, *, nd: int) -> Any:
        return _expand(self.to_matrix(U, nd=nd), nd) * v

    def act_adj(self, U: Any, v: Any, *, nd: int) -> Any:
        return _expand(self.to_matrix(-U, nd=nd), nd) * v

    def exp(self, X: Any, *, nd: int) -> Any:
        return X

    def log(self, U: Any, *, nd: int) -> Any:
        return wrap_angle(U)

    def eigen_angles(self, U: Any, *, nd: int) -> Any:
        return _expand(wrap_angle(U), nd)

    def project(self, M: Any, *, nd: int) -> Any:
        xp = array_namespace(M)
        if not xp.isdtype(M.dtype, "complex floating"):
            raise TypeError(f"U1.project expects complex numbers z (returns arg z); got dtype {M.dtype}")
        return xp.atan2(xp.imag(M), xp.real(M))

    def project_algebra(self, M: Any, *, nd: int) -> Any:
        xp = array_namespace(M)
        return xp.imag(M) if xp.isdtype(M.dtype, "complex floating") else M

    def normalize(self, U: Any, *, nd: int) -> Any:
        return wrap_angle(U)

    @property
    def algebra_dim(self) -> int:
        return 1

    def to_coords(self, X: Any, *, nd: int) -> Any:
        return _expand(X, nd)

    def from_coords(self, omega: Any, *, nd: int) -> Any:
        return omega[(..., 0) + (slice(None),) * nd]

    def algebra_norm2(self, X: Any, *, nd: int) -> Any:
        return X * X

    def defect(self, U: Any, *, nd: int) -> Any:
        xp = array_namespace(U)
        if xp.isdtype(U.dtype, "complex floating"):
            raise TypeError("U(1) fields are stored as real angles; got a complex array (use U1.project)")
        return xp.where(xp.isfinite(U), xp.zeros_like(U), xp.full_like(U, math.inf))


#: the U(1) group object
U1 = U1Group()
