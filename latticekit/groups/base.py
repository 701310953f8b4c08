"""The group interface shared by U(1) and SU(N).

Every gauge-group operation of the library goes through a :class:`Group` object, so a backend can
override one function (a fused kernel) without touching the physics (DESIGN.md).

Element layout: ``(*B, *G, *S)`` where ``G = group.element_shape`` (``()`` for U(1) angles,
``(N, N)`` for SU(N)) and ``S`` are ``nd`` trailing site axes. Every method that needs to find
the group axes takes the keyword ``nd`` (the number of trailing site axes; ``nd=0`` for plain
group elements with the group axes last).

Algebra: elements ``X`` of the Lie algebra are stored like group elements — U(1): real angles
``theta`` (``X = i theta``); SU(N): traceless anti-Hermitian matrices. Coordinates ``omega^a``
refer to the generators ``T_a`` with ``X = sum_a omega^a T_a``; for SU(N) ``T_a = i lambda_a / 2``
(generalised Gell-Mann matrices, ``tr T_a T_b = -delta_ab / 2``), for U(1) ``T = i``. The HMC kinetic
energy is ``(1/2) sum_a omega_a^2 = algebra_norm2(P) / 2``.

Lie derivative: ``d_a f(U) = d/dt f(exp(t T_a) U) |_{t=0}``; forces are ``sum_a (d_a S) T_a``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

from latticekit.backends import (
    Generator,
    array_namespace,
    backend_name,
    check_rng,
    namespace,
    normalize_device,
    precision_bits,
)

__all__ = ["Group", "NonUnitaryError", "wrap_angle"]


class NonUnitaryError(ValueError):
    """Links that are not group elements beyond the stated tolerance."""


def wrap_angle(theta: Any) -> Any:
    """Map angles into ``(-pi, pi]``.

    Exact up to one rounding: an angle within a few ulp above ``-pi`` can come out a few ulp above ``pi`` (the
    quotient by ``2 pi`` rounds to ``-1``). The element is the same; a clamp would cost two more passes over the
    field in every U(1) flow layer that wraps, for no change in any observable (user probe).

    Examples
    --------
    >>> import numpy as np
    >>> float(wrap_angle(np.asarray(3 * np.pi)))
    3.141592653589793
    """
    xp = array_namespace(theta)
    two_pi = 2.0 * math.pi
    return theta - two_pi * xp.ceil((theta - math.pi) / two_pi)


def _full_precision(xp: Any) -> tuple[Any, ...]:
    """The dtypes of fields the library computes with, in the namespace ``xp``."""
    return tuple(getattr(xp, n) for n in ("float32", "float64", "complex64", "complex128"))


class Group(ABC):
    """Abstract gauge group. See the module docstring for layouts and conventions."""

    #: shape of one element (``()`` or ``(N, N)``)
    element_shape: tuple[int, ...] = ()
    #: N of U(N)/SU(N) (1 for U(1)); the action normalisation is ``beta / N``
    N: int = 1
    name: str = "group"
    #: Array API dtype kind of stored elements: ``"real floating"`` (U(1) angles) or ``"complex floating"``
    dtype_kind: str = "complex floating"

    # -- construction --------------------------------------------------------------------------
    def _alloc_args(self, backend: str | None, device: Any) -> tuple[Any, Any]:
        xp = namespace(backend)
        return xp, normalize_device(backend_name(xp), device)

    @abstractmethod
    def identity(self, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
                 backend: str | None = None, device: Any = None, precision: Any = "double") -> Any:
        """The unit element, shape ``(*batch_shape, *G, *site_shape)``."""

    @abstractmethod
    def random(self, rng: Generator, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
               precision: Any = "double") -> Any:
        """Haar-random elements, shape ``(*batch_shape, *G, *site_shape)``, from the explicit ``rng``."""

    def random_algebra(self, rng: Generator, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
                       scale: float = 1.0, precision: Any = "double") -> Any:
        """Gaussian algebra elements with coordinates ``omega^a ~ N(0, scale^2)`` (HMC momenta for scale=1)."""
        nd = len(tuple(site_shape))
        dt = f"float{precision_bits(precision)}"   # an unknown precision is refused (it gave float64)
        coords = check_rng(rng).normal(tuple(batch_shape) + (self.algebra_dim,) + tuple(site_shape), dtype=dt,
                                       std=scale)
        return self.from_coords(coords, nd=nd)

    def near_identity(self, rng: Generator, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
                      eps: float = 0.1, precision: Any = "double") -> Any:
        """``exp(eps * X)`` with a standard Gaussian algebra element ``X``: elements close to 1."""
        nd = len(tuple(site_shape))
        return self.exp(self.random_algebra(rng, batch_shape, site_shape, scale=eps, precision=precision), nd=nd)

    # -- group operations ----------------------------------------------------------------------
    @abstractmethod
    def mul(self, a: Any, b: Any, *, nd: int) -> Any:
        """Product ``a b``."""

    @abstractmethod
    def adjoint(self, a: Any, *, nd: int) -> Any:
        """Inverse ``a^dagger``."""

    def mul_adj(self, a: Any, b: Any, *, nd: int) -> Any:
        """``a b^dagger``."""
        return self.mul(a, self.adjoint(b, nd=nd), nd=nd)

    def adj_mul(self, a: Any, b: Any, *, nd: int) -> Any:
        """``a^dagger b``."""
        return self.mul(self.adjoint(a, nd=nd), b, nd=nd)

    @abstractmethod
    def trace(self, a: Any, *, nd: int) -> Any:
        """Complex trace, shape ``(*B, *S)``."""

    @abstractmethod
    def re_trace(self, a: Any, *, nd: int) -> Any:
        """Real part of the trace, shape ``(*B, *S)``."""

    @abstractmethod
    def re_trace_mul_adj(self, a: Any, b: Any, *, nd: int) -> Any:
        """``Re tr(a b^dagger)`` without forming the product."""

    @abstractmethod
    def act(self, U: Any, v: Any, *, nd: int) -> Any:
        """``U v`` for colour vectors ``v`` of shape ``(*B, N, *S)`` (U(1): ``exp(i theta) v``)."""

    @abstractmethod
    def act_adj(self, U: Any, v: Any, *, nd: int) -> Any:
        """``U^dagger v`` for colour vectors ``v`` of shape ``(*B, N, *S)``."""

    @abstractmethod
    def exp(self, X: Any, *, nd: int) -> Any:
        """Exponential of an algebra element."""

    def exp_mul(self, X: Any, W: Any, *, nd: int) -> Any:
        """``exp(X) W``: the update of HMC moves and of the Wilson flow (a group may fuse the two)."""
        return self.mul(self.exp(X, nd=nd), W, nd=nd)

    @abstractmethod
    def log(self, U: Any, *, nd: int) -> Any:
        """A logarithm in the algebra, ``exp(log U) = U`` (U(1): the angle in ``(-pi, pi]``; SU(N): traceless, its
        eigen-angles in ``(-pi, pi]`` except where they must be shifted to sum to 0, :meth:`SUGroup.log`)."""

    @abstractmethod
    def eigen_angles(self, U: Any, *, nd: int) -> Any:
        """Eigen-angles ``phi_k`` of ``U = V diag(exp(i phi)) V^dagger``, shape ``(*B, N, *S)``."""

    @abstractmethod
    def project(self, M: Any, *, nd: int) -> Any:
        """A group element near a general matrix: the group's projection (U(1): the angle of ``z / |z|``; SU(N):
        the unitary polar factor with the phase of its determinant removed, which is close to but not exactly the
        maximiser of ``Re tr(W^dag M)``: see :meth:`SUGroup.project`)."""

    @abstractmethod
    def project_algebra(self, M: Any, *, nd: int) -> Any:
        """Traceless anti-Hermitian part of a general matrix (U(1): ``Im z``)."""

    @abstractmethod
    def normalize(self, U: Any, *, nd: int) -> Any:
        """Canonical representative (U(1): angles wrapped to (-pi, pi]; SU(N): reunitarised)."""

    @abstractmethod
    def to_matrix(self, U: Any, *, nd: int) -> Any:
        """Complex matrix representation (U(1): ``exp(i theta)``, shape ``(*B, *S)``; SU(N): ``U``)."""

    # -- algebra coordinates -------------------------------------------------------------------
    @property
    @abstractmethod
    def algebra_dim(self) -> int:
        """Dimension of the Lie algebra (1 for U(1), N^2 - 1 for SU(N))."""

    @abstractmethod
    def to_coords(self, X: Any, *, nd: int) -> Any:
        """Coordinates ``omega^a`` of an algebra element: shape ``(*B, algebra_dim, *S)`` (real)."""

    @abstractmethod
    def from_coords(self, omega: Any, *, nd: int) -> Any:
        """The algebra element ``sum_a omega^a T_a`` from coordinates of shape ``(*B, algebra_dim, *S)``."""

    @abstractmethod
    def algebra_norm2(self, X: Any, *, nd: int) -> Any:
        """``sum_a (omega^a)^2`` per site, shape ``(*B, *S)``."""

    # -- checks --------------------------------------------------------------------------------
    def check_shape(self, U: Any, *, nd: int, name: str = "U") -> None:
        """Raise ValueError unless ``U`` has the group axes ``G`` right before ``nd`` site axes."""
        g = self.element_shape
        shp = tuple(U.shape)
        if len(shp) < nd + len(g) or tuple(shp[len(shp) - nd - len(g): len(shp) - nd]) != g:
            gs = ", ".join(map(str, g)) + ", " if g else ""
            raise ValueError(f"{name} has shape {shp}; expected (*batch, {gs}<{nd} lattice axes>) for {self.name}")

    def check_dtype(self, U: Any, *, name: str = "U") -> None:
        """Raise TypeError unless ``U`` has the dtype kind of stored elements (:attr:`dtype_kind`).

        Examples
        --------
        >>> import numpy as np
        >>> from latticekit.groups import SU
        >>> SU(3).check_dtype(np.zeros((3, 3, 4)), name="U")
        Traceback (most recent call last):
            ...
        TypeError: U has dtype float64; SU(3) elements are stored as complex floating arrays
        """
        xp = array_namespace(U)
        if not xp.isdtype(U.dtype, self.dtype_kind):
            what = "real angles" if self.dtype_kind == "real floating" else "complex floating arrays"
            hint = " (complex phases: U1.project gives the angles)" if self.dtype_kind == "real floating" and \
                xp.isdtype(U.dtype, "complex floating") else ""
            raise TypeError(f"{name} has dtype {U.dtype}; {self.name} elements are stored as {what}{hint}")
        if U.dtype not in _full_precision(xp):   # float16/bfloat16: the physics is float32 or float64 (DESIGN.md)
            raise TypeError(f"{name} has dtype {U.dtype}; {self.name} fields are float32/float64 (complex64/"
                            f"complex128 for SU(N)): half precisions are not supported")

    @abstractmethod
    def defect(self, U: Any, *, nd: int) -> Any:
        """Per-element distance from the group (0 for exact group elements), shape ``(*B, *S)``."""

    def check(self, U: Any, *, nd: int, name: str = "U", tol: float | None = None) -> None:
        """Raise :class:`NonUnitaryError` when ``max defect(U) > tol`` (default: 1e3 * dtype eps)."""
        self.check_shape(U, nd=nd, name=name)
        self.check_dtype(U, name=name)
        xp = array_namespace(U)
        d = self.defect(U, nd=nd)
        if tol is None:
            tol = 1e3 * float(xp.finfo(d.dtype).eps)
        worst = float(xp.max(d)) if d.ndim else float(d)
        if not worst <= tol:
            raise NonUnitaryError(f"{name} is not in {self.name}: largest defect {worst:.3e} > tolerance {tol:.1e}")

    def __repr__(self) -> str:
        return self.name
