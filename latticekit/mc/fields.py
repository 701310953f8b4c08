"""Field kinds: what a Monte Carlo sampler needs to know about the manifold a field lives on.

A *field kind* bundles the geometry of one type of field, so that HMC, Langevin and the
integrators are written once:

========================  ==========================  ==================================
kind                      update ``move(x, v, eps)``  momenta / kinetic energy
========================  ==========================  ==================================
:class:`RealField`        ``x + eps v``               ``v ~ N(0, 1)``, ``sum v^2 / 2``
:class:`U1Field`          ``theta + eps v``           same (the algebra of U(1) is R)
:class:`SUNField`         ``exp(eps V) U``            ``V = group.random_algebra``,
                                                      ``algebra_norm2(V) / 2``
========================  ==========================  ==================================

Forces follow the Lie-derivative convention of :mod:`latticekit.groups`: ``F = sum_a (d_a S) T_a``
with ``d_a f(U) = d/dt f(exp(t T_a) U)|_0``; for real fields ``F = dS/dx``. The Hamiltonian flow is
``dx/dt = p`` (``dU/dt = P U``), ``dp/dt = -F``, i.e. momenta are *kicked* by ``p - eps F``.

Fields carry leading batch axes ``*B`` (independent chains) followed by ``event_ndim`` axes that
belong to one configuration; per-chain quantities (kinetic energy, accept flags) have shape ``B``.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.mc import SUNField
>>> lat = lk.Lattice((4, 4)); G = lk.SU(2); rng = lk.backends.rng(0)
>>> kind = SUNField(G, lat)
>>> U = lk.gauge.random_gauge_field(G, lat, rng, batch_shape=(3,))
>>> P = kind.momenta(rng, U)
>>> kind.kinetic(P).shape, kind.batch_shape(U)
((3,), (3,))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from latticekit.backends import Generator, array_namespace, device, real_dtype_for
from latticekit.groups import U1, Group, SUGroup, U1Group
from latticekit.lattice import Lattice

__all__ = ["FieldKind", "RealField", "SUNField", "U1Field", "field_kind"]


#: largest link defect (``||U^dag U - 1||_F + |det U - 1|``) a sampler accepts in its input: rounding and the drift
#: between reprojections stay far below (a single-precision file read in double: up to 5e-5, the readers' limit),
#: a field that is not in the group is O(1) off
MAX_START_DEFECT = 1e-3


class FieldKind(ABC):
    """Geometry of a field type for HMC and Langevin (see the module docstring).

    Subclasses define :attr:`event_ndim` and the manifold operations; everything is vectorised over
    the leading batch axes.
    """

    #: number of trailing axes belonging to one configuration
    event_ndim: int = 0

    # -- shapes --------------------------------------------------------------------------------
    def batch_shape(self, x: Any) -> tuple[int, ...]:
        """The leading batch shape ``B`` of a field ``x``."""
        self.check(x)
        return tuple(x.shape[: x.ndim - self.event_ndim])

    def check(self, x: Any, name: str = "x") -> None:
        """Raise ValueError when ``x`` has fewer than :attr:`event_ndim` axes."""
        if x.ndim < self.event_ndim:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected at least {self.event_ndim} axes "
                             f"for {self!r}")

    def per_chain_sum(self, a: Any) -> Any:
        """Sum an array of shape ``(*B, *event)`` (or with fewer event axes, see subclasses) over the event axes."""
        xp = array_namespace(a)
        return xp.sum(a, axis=tuple(range(-self.event_ndim, 0))) if self.event_ndim else a

    def select(self, cond: Any, a: Any, b: Any) -> Any:
        """Per chain: ``a`` where ``cond`` (shape ``B``) is true, else ``b``."""
        xp = array_namespace(a, b)
        c = xp.reshape(cond, tuple(cond.shape) + (1,) * self.event_ndim)
        return xp.where(c, a, b)

    # -- manifold operations -------------------------------------------------------------------
    @abstractmethod
    def momenta(self, rng: Generator, x: Any) -> Any:
        """Gaussian momenta conjugate to ``x`` (density ``exp(-kinetic)``), from the explicit ``rng``."""

    @abstractmethod
    def kinetic(self, p: Any) -> Any:
        """Kinetic energy per chain, shape ``B``."""

    @abstractmethod
    def move(self, x: Any, v: Any, eps: Any) -> Any:
        """Move ``x`` along the tangent vector ``v`` for a time ``eps`` (``x + eps v`` or ``exp(eps V) U``)."""

    def kick(self, p: Any, force: Any, eps: Any) -> Any:
        """Momentum update ``p - eps * force``."""
        return p - eps * force

    def noise(self, rng: Generator, x: Any) -> Any:
        """Standard Gaussian noise in the tangent space of ``x`` (the same law as :meth:`momenta`)."""
        return self.momenta(rng, x)

    def normalize(self, x: Any) -> Any:
        """Canonical representative of ``x`` (wrap angles, reunitarise); identity for real fields."""
        return x

    def defect(self, x: Any) -> Any:
        """Largest distance from the manifold per chain, shape ``B`` (zeros for flat manifolds)."""
        xp = array_namespace(x)
        return xp.zeros(self.batch_shape(x), dtype=real_dtype_for(x.dtype, xp), device=_dev(x))

    def check_values(self, x: Any, name: str = "x") -> None:
        """Raise ValueError unless ``x`` is a point of the manifold: every entry finite and (SU(N)) every link
        within :data:`MAX_START_DEFECT` of the group. The samplers call it on their input: a NaN field was
        rejected trajectory after trajectory (a stuck chain), and a field off the group (``2 U``) was evolved and
        then silently reprojected (user probe). One pass over the field, one host synchronisation."""
        xp = array_namespace(x)
        bad = int(xp.sum(xp.astype(xp.logical_not(xp.isfinite(x)), xp.int64)))
        if bad:
            raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); expected a field of {self!r}")
        worst = float(xp.max(self.defect(x)))
        if not worst <= MAX_START_DEFECT:
            raise ValueError(f"{name} is not on the manifold of {self!r}: largest link defect {worst:.3g} > "
                             f"{MAX_START_DEFECT:g} (project it first, e.g. group.normalize)")


def _dev(x: Any) -> Any:
    return device(x)


class RealField(FieldKind):
    """Real fields (scalars): ``event_ndim`` trailing axes per configuration.

    Parameters
    ----------
    event_ndim : int
        Number of trailing axes of one configuration (``lattice.nd`` for a scalar field).

    Examples
    --------
    >>> import numpy as np
    >>> k = RealField(2)
    >>> x = np.zeros((5, 4, 4)); p = np.ones((5, 4, 4))
    >>> k.kinetic(p)
    array([8., 8., 8., 8., 8.])
    >>> float(k.move(x, p, 0.1)[0, 0, 0])
    0.1
    """

    def __init__(self, event_ndim: int) -> None:
        if not isinstance(event_ndim, int) or event_ndim < 0:
            raise ValueError(f"event_ndim={event_ndim!r}: expected a non-negative integer")
        self.event_ndim = event_ndim

    @classmethod
    def for_lattice(cls, lattice: Lattice) -> "RealField":
        """The kind of a real scalar field ``(*B, *L)`` on ``lattice``."""
        return cls(lattice.nd)

    def momenta(self, rng: Generator, x: Any) -> Any:
        return rng.normal(tuple(x.shape), dtype=x.dtype)

    def kinetic(self, p: Any) -> Any:
        return 0.5 * self.per_chain_sum(p * p)

    def move(self, x: Any, v: Any, eps: Any) -> Any:
        return x + eps * v

    def __repr__(self) -> str:
        return f"RealField(event_ndim={self.event_ndim})"


class U1Field(RealField):
    """U(1) gauge fields stored as angles ``(*B, Nd, *L)``: flat algebra, angles wrapped by :meth:`normalize`.

    Examples
    --------
    >>> import latticekit as lk
    >>> k = U1Field(lk.Lattice((4, 4)))
    >>> k.event_ndim
    3
    """

    def __init__(self, lattice: Lattice) -> None:
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        self.lattice = lattice
        self.group = U1
        super().__init__(1 + lattice.nd)

    def check(self, x: Any, name: str = "x") -> None:
        if not array_namespace(x).isdtype(x.dtype, "real floating"):
            raise TypeError(f"{name}: expected U(1) link angles of a real floating dtype, got dtype {x.dtype} "
                            f"(a field of another group?)")
        self.lattice.check(x, name, inner=(self.lattice.nd,))

    def normalize(self, x: Any) -> Any:
        return self.group.normalize(x, nd=self.lattice.nd)

    def __repr__(self) -> str:
        return f"U1Field({self.lattice})"


class SUNField(FieldKind):
    """SU(N) gauge fields ``(*B, Nd, N, N, *L)``: momenta in the algebra, ``U <- exp(eps P) U``.

    Parameters
    ----------
    group : SUGroup
        The gauge group (e.g. ``latticekit.SU(3)``).
    lattice : Lattice

    Examples
    --------
    >>> import latticekit as lk
    >>> k = SUNField(lk.SU(3), lk.Lattice((4, 4)))
    >>> U = lk.gauge.cold_gauge_field(lk.SU(3), lk.Lattice((4, 4)), (2,))
    >>> P = k.momenta(lk.backends.rng(0), U)
    >>> float(k.defect(k.move(U, P, 0.3)).max()) < 1e-12
    True
    """

    def __init__(self, group: SUGroup, lattice: Lattice) -> None:
        if not isinstance(group, SUGroup):
            raise TypeError(f"group={group!r}: expected an SU(N) group such as latticekit.SU(3)")
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        self.group = group
        self.lattice = lattice
        self.event_ndim = 1 + 2 + lattice.nd

    def check(self, x: Any, name: str = "x") -> None:
        if not array_namespace(x).isdtype(x.dtype, "complex floating"):
            raise TypeError(f"{name}: expected {self.group.name} link matrices of a complex dtype, got dtype {x.dtype} "
                            f"(a field of another group?)")
        self.lattice.check(x, name, inner=(self.lattice.nd, self.group.N, self.group.N))

    def momenta(self, rng: Generator, x: Any) -> Any:
        self.check(x)
        xp = array_namespace(x)
        prec = "single" if x.dtype == xp.complex64 else "double"
        B = tuple(x.shape[: x.ndim - self.event_ndim])
        return self.group.random_algebra(rng, B + (self.lattice.nd,), self.lattice.shape, precision=prec)

    def kinetic(self, p: Any) -> Any:
        n2 = self.group.algebra_norm2(p, nd=self.lattice.nd)  # (*B, Nd, *L)
        xp = array_namespace(n2)
        return 0.5 * xp.sum(n2, axis=tuple(range(-1 - self.lattice.nd, 0)))

    def move(self, x: Any, v: Any, eps: Any) -> Any:
        nd = self.lattice.nd
        return self.group.exp_mul(eps * v, x, nd=nd)

    def normalize(self, x: Any) -> Any:
        return self.group.normalize(x, nd=self.lattice.nd)

    def defect(self, x: Any) -> Any:
        d = self.group.defect(x, nd=self.lattice.nd)  # (*B, Nd, *L)
        xp = array_namespace(d)
        return xp.max(d, axis=tuple(range(-1 - self.lattice.nd, 0)))

    def __repr__(self) -> str:
        return f"SUNField({self.group}, {self.lattice})"


def field_kind(lattice: Lattice, group: Group | None = None) -> FieldKind:
    """The field kind of a gauge field of ``group`` on ``lattice``, or of a real scalar field (``group=None``).

    Examples
    --------
    >>> import latticekit as lk
    >>> field_kind(lk.Lattice((4, 4)), lk.U1)
    U1Field(Lattice(shape=(4, 4)))
    >>> field_kind(lk.Lattice((4, 4)))
    RealField(event_ndim=2)
    """
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if group is None:
        return RealField.for_lattice(lattice)
    if isinstance(group, U1Group):
        return U1Field(lattice)
    if isinstance(group, SUGroup):
        return SUNField(group, lattice)
    raise TypeError(f"group={group!r}: expected latticekit.U1, an SU(N) group or None")
