"""Path-ordered products of links: plaquettes, staples, two-plaquette loops and any path (one builder).

Every closed loop or open line of links in the library is built here: the Wilson action (plaquettes,
staple sums, force), the heatbath (staple sums), the plaquette observables and every gauge flow layer
(plaquettes, staples, two-plaquette loops as network context). The module sits at gauge level (beside
:mod:`latticekit.gauge`) because all of those import it; it imports no array library by name and works
for U(1) angles and SU(N) matrices through the group object, on every backend.

Paths (Grid/GPT style)
----------------------
A :class:`Path` is a sequence of signed steps ``(mu, +1)`` (forward) or ``(mu, -1)`` (backward). Its
product starting at ``y`` is ``W(y) = U_1 U_2 ... U_n`` with, for each step from the current point
``z``, ``U_mu(z)`` (then ``z -> z + mu``) for a forward step and ``U_mu(z - mu)^dag`` (then
``z -> z - mu``) for a backward one. :meth:`LoopBuilder.path` returns the field ``W(x + origin)`` for
every site ``x``. Under a gauge transformation ``U_mu(x) -> Omega(x) U_mu(x) Omega(x+mu)^dag`` it
transforms as ``Omega(start) W Omega(end)^dag``: closed paths (loops) as ``Omega(x) W Omega(x)^dag``.

Staples (DESIGN.md conventions)
-------------------------------
The staples of the link ``U_mu(x)`` run from ``x + mu`` back to ``x``; for ``rho != mu``::

    S_rho^+(x) = U_rho(x+mu) U_mu(x+rho)^dag U_rho(x)^dag                 (path +rho, -mu, -rho)
    S_rho^-(x) = U_rho(x+mu-rho)^dag U_mu(x-rho)^dag U_rho(x-rho)         (path -rho, -mu, +rho)

so ``U_mu(x) S_rho^+(x) = P_{mu rho}(x)`` and ``U_mu(x) S_rho^-(x)`` is ``P_{mu rho}(x - rho)^dag`` read
from ``x``. The staple sum ``A_mu = sum_{rho, side} S_rho^side`` (:meth:`LoopBuilder.staple_sum`) gives
``S = -(beta/N) Re tr(U_mu(x) A_mu(x)) + (terms without U_mu(x))`` for the Wilson action. Any path from
``x + mu`` to ``x`` is an "abstract staple" in the sense of the multiscale flows (Abbott et al.,
arXiv:2404.10819, Sec. 3.1, eqs. 11-14): :meth:`LoopBuilder.abstract_staple` evaluates one, and
``P = U_mu S`` is then a closed loop at ``x`` on which a conjugation-equivariant map can act.

Economy
-------
A product of ``n`` links costs ``n - 1`` group multiplications. Because the product is translation
covariant, it is evaluated at the base point that needs the fewest translated link fields and moved
once at the end: the lower staple costs one translated link and one final shift (not three
translated links), as in the hand-written staple sums it replaces. Adjoints are folded into
``mul_adj`` / ``adj_mul`` (``a^dag b^dag = (b a)^dag``), so no explicit adjoint is formed inside a
product. Translated links are cached per builder, so the staples of one direction share
``U_rho(x + mu)`` between their two sides and all directions share each other's translations.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.observables import plaquettes
>>> lat, G = lk.Lattice((4, 4, 4)), lk.SU(3)
>>> U = lk.gauge.random_gauge_field(G, lat, lk.backends.rng(0), (2,))
>>> lb = LoopBuilder(U, G, lat)
>>> P = lb.path(Path().f(0).f(2).b(0).b(2))                  # the plaquette P_02 as a path
>>> bool(abs(P - plaquettes(U, G, lat, 0, 2)).max() < 1e-12)
True
>>> UA = G.mul(lb.link(1), lb.staple_sum(1), nd=3)           # U_1 A_1: 4 plaquettes through U_1
>>> UA.shape
(2, 3, 3, 4, 4, 4)
"""

from __future__ import annotations

import numbers

from functools import lru_cache, wraps
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from latticekit.backends import array_namespace
from latticekit.gauge import check_gauge_field, link
from latticekit.groups import Group
from latticekit.lattice import Lattice

__all__ = ["LoopBuilder", "Path", "path_product", "staple_order", "staple_plaquette", "trace_adj_mul",
           "trace_mul_adj"]


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)   # NumPy integers too


class Path:
    """An immutable sequence of signed steps ``(mu, +1)`` / ``(mu, -1)`` (module docstring).

    Build one with :meth:`f` (forward) and :meth:`b` (backward) or from a sequence of pairs.

    Examples
    --------
    >>> p = Path().f(0, 2).f(1).b(0, 2).b(1)                # a 2 x 1 rectangle
    >>> len(p), p.displacement(2), p.is_closed(2)
    (6, (0, 0), True)
    >>> Path([(1, 1), (0, -1)]).reversed()
    Path([(0, 1), (1, -1)])
    """

    __slots__ = ("_steps",)

    def __init__(self, steps: Iterable[tuple[int, int]] = ()) -> None:
        out = []
        for st in steps:
            try:
                mu, s = st
            except (TypeError, ValueError):
                raise ValueError(f"steps: {st!r} is not a (direction, +1 or -1) pair") from None
            if not _is_int(mu) or mu < 0:
                raise ValueError(f"steps: direction {mu!r} in {st!r} is not a non-negative integer")
            if s not in (1, -1) or not _is_int(s):       # np.True_ (== 1) passed as +1 (user probe)
                raise ValueError(f"steps: sign {s!r} in {st!r} must be +1 (forward) or -1 (backward)")
            out.append((int(mu), int(s)))
        self._steps: tuple[tuple[int, int], ...] = tuple(out)

    @property
    def steps(self) -> tuple[tuple[int, int], ...]:
        """The steps ``((mu, sign), ...)``."""
        return self._steps

    def f(self, mu: int, n: int = 1) -> "Path":
        """This path followed by ``n`` forward steps along ``mu``."""
        return Path(self._steps + ((mu, 1),) * _count(n))

    def b(self, mu: int, n: int = 1) -> "Path":
        """This path followed by ``n`` backward steps along ``mu``."""
        return Path(self._steps + ((mu, -1),) * _count(n))

    def reversed(self) -> "Path":
        """The same links walked backwards: its product is the adjoint of this path's (from the end point)."""
        return Path((mu, -s) for mu, s in reversed(self._steps))

    def displacement(self, nd: int) -> tuple[int, ...]:
        """End point minus start point, one entry per direction."""
        d = [0] * nd
        for mu, s in self._steps:
            if mu >= nd:
                raise ValueError(f"path {self!r}: direction {mu} does not exist in {nd} dimensions")
            d[mu] += s
        return tuple(d)

    def is_closed(self, nd: int) -> bool:
        """Whether the path returns to its start (its product is a loop)."""
        return not any(self.displacement(nd))

    def __add__(self, other: "Path") -> "Path":
        if not isinstance(other, Path):
            return NotImplemented
        return Path(self._steps + other._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Path) and other._steps == self._steps

    def __hash__(self) -> int:
        return hash(self._steps)

    def __repr__(self) -> str:
        return f"Path({list(self._steps)!r})"


def _count(n: Any) -> int:
    if not _is_int(n) or n < 1:
        raise ValueError(f"n={n!r}: expected a positive number of steps")
    return int(n)


def staple_order(nd: int, mu: int) -> list[tuple[int, int]]:
    """``(rho, side)`` of the ``2 (Nd - 1)`` staples of a ``mu``-link: ``rho`` ascending, ``+1`` before ``-1``.

    The order of :meth:`LoopBuilder.staples`.

    Examples
    --------
    >>> staple_order(3, 1)
    [(0, 1), (0, -1), (2, 1), (2, -1)]
    """
    return [(rho, s) for rho in range(nd) if rho != mu for s in (1, -1)]


def staple_plaquette(mu: int, rho: int, side: int) -> tuple[tuple[int, int], int, int]:
    """Which library plaquette ``U_mu(x) S_rho^side(x)`` is: ``((a, b), shift, sign)``.

    ``(a, b) = (min(mu, rho), max(mu, rho))`` is the plane in the orientation of
    :func:`latticekit.observables.plaquettes`; the plaquette sits at ``x`` (``shift = 0``, side ``+1``)
    or at ``x - rho`` (``shift = -1``, side ``-1``); ``sign`` is the sign of the angle of ``U_mu(x)`` in
    it (``+1``: ``U_mu(x) S`` is that plaquette read from ``x``, ``-1``: its adjoint).

    Examples
    --------
    >>> staple_plaquette(0, 1, 1), staple_plaquette(0, 1, -1), staple_plaquette(2, 1, 1)
    (((0, 1), 0, 1), ((0, 1), -1, -1), ((1, 2), 0, -1))
    """
    s = 1 if mu < rho else -1
    return (min(mu, rho), max(mu, rho)), (0 if side > 0 else -1), (s if side > 0 else -s)


def _color_axes(nd: int) -> tuple[int, int]:
    return (-nd - 2, -nd - 1)


def trace_mul_adj(a: Any, b: Any, group: Group, *, nd: int) -> Any:
    """Complex ``tr(a b^dag)`` per site without forming the product (U(1): ``exp(i (a - b))``).

    Examples
    --------
    >>> import latticekit as lk
    >>> G = lk.SU(2); a = G.random(lk.backends.rng(0), (), (3,))
    >>> round(complex(trace_mul_adj(a, a, G, nd=1)[0]).real, 12)
    2.0
    """
    if tuple(group.element_shape) == ():
        return group.to_matrix(a - b, nd=nd)
    xp = array_namespace(a, b)
    return xp.sum(a * xp.conj(b), axis=_color_axes(nd))


def trace_adj_mul(a: Any, b: Any, group: Group, *, nd: int) -> Any:
    """Complex ``tr(a^dag b)`` per site without forming the product (U(1): ``exp(i (b - a))``).

    Examples
    --------
    >>> import latticekit as lk
    >>> complex(trace_adj_mul(lk.U1.identity((), (1,)), lk.U1.identity((), (1,)), lk.U1, nd=1)[0])
    (1+0j)
    """
    if tuple(group.element_shape) == ():
        return group.to_matrix(b - a, nd=nd)
    xp = array_namespace(a, b)
    return xp.sum(xp.conj(a) * b, axis=_color_axes(nd))


_F = TypeVar("_F", bound=Callable[..., Any])


def _scoped(fn: _F) -> _F:
    """Keep translated links cached for the duration of the outermost call (always with ``cache=True``)."""
    @wraps(fn)
    def wrapper(self: "LoopBuilder", *args: Any, **kwargs: Any) -> Any:
        self._depth += 1
        try:
            return fn(self, *args, **kwargs)
        finally:
            self._depth -= 1
            if self._depth == 0 and not self._keep:
                self._cache.clear()
    return wrapper  # type: ignore[return-value]


@lru_cache(maxsize=4096)
def _plan(steps: tuple[tuple[int, int], ...], origin: tuple[int, ...]
          ) -> tuple[tuple[tuple[int, tuple[int, ...], bool], ...], tuple[int, ...]]:
    """Factors ``(mu, offset from the base point, adjoint?)`` of a path product and the base point.

    The base point minimises the number of translated fields (one per factor away from the base,
    plus one final translation when the base is not ``x``); ties keep the base at ``x``.
    """
    nd = len(origin)
    pos = list(origin)
    factors: list[tuple[int, tuple[int, ...], bool]] = []
    for mu, s in steps:
        if mu >= nd:
            raise ValueError(f"path direction={mu!r}: expected a direction in 0..{nd - 1}")
        if s > 0:
            factors.append((mu, tuple(pos), False))
            pos[mu] += 1
        else:
            pos[mu] -= 1
            factors.append((mu, tuple(pos), True))
    zero = (0,) * nd
    candidates = [zero] + [off for _, off, _ in factors if off != zero]

    def cost(base: tuple[int, ...]) -> int:
        return sum(off != base for _, off, _ in factors) + (base != zero)

    base = min(candidates, key=cost)          # min keeps the first of equal costs: x itself on ties
    rel = tuple((mu, tuple(o - b for o, b in zip(off, base)), dag) for mu, off, dag in factors)
    return rel, base


@lru_cache(maxsize=None)
def _unit(nd: int, mu: int) -> tuple[int, ...]:
    return tuple(int(d == mu) for d in range(nd))


@lru_cache(maxsize=None)
def _staple_steps(rho: int, mu: int, side: int) -> tuple[tuple[int, int], ...]:
    """Steps of ``S_rho^side`` of a ``mu``-link, from ``x + mu`` to ``x``: ``+rho, -mu, -rho`` or ``-rho, -mu, +rho``."""
    return ((rho, 1), (mu, -1), (rho, -1)) if side > 0 else ((rho, -1), (mu, -1), (rho, 1))


class LoopBuilder:
    """Path-ordered products of the links of one gauge field (module docstring), with cached translations.

    Parameters
    ----------
    U : array
        Gauge field ``(*B, Nd, *G, *L)`` (checked), or use :meth:`from_links` with the list of link
        fields ``[U_0, ..., U_{Nd-1}]``, each ``(*B, *G, *L)``.
    group : Group
        ``U1`` (angles) or ``SU(N)``.
    lattice : Lattice
    cache : bool
        Keep translated links for the life of the builder, shared by all later calls (at most
        ``Nd (Nd - 1)`` extra link fields for all staples of all directions). Default: only within
        one call (e.g. the two sides of the staples of one :meth:`staple_sum`), so that no memory is
        held between calls.

    Notes
    -----
    The builder holds the links it was made from: build a new one after changing a link field.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); U = lk.gauge.cold_gauge_field(lk.U1, lat)
    >>> lb = LoopBuilder(U, lk.U1, lat)
    >>> complex(lb.staple_sum(0)[0, 0]), lb.staple(0, 1, -1).shape
    ((2+0j), (4, 4))
    """

    def __init__(self, U: Any, group: Group, lattice: Lattice, *, cache: bool = False) -> None:
        _check_args(group, lattice)
        check_gauge_field(U, group, lattice, name="U")
        self._init([link(U, mu, group, lattice) for mu in range(lattice.nd)], group, lattice, cache)

    @classmethod
    def from_links(cls, links: Sequence[Any], group: Group, lattice: Lattice, *, cache: bool = False
                   ) -> "LoopBuilder":
        """A builder on the link fields ``links[mu] = U_mu``, each ``(*B, *G, *L)`` (shapes not checked)."""
        _check_args(group, lattice)
        if len(links) != lattice.nd:
            raise ValueError(f"links: expected {lattice.nd} link fields (one per direction), got {len(links)}")
        self = cls.__new__(cls)
        self._init(list(links), group, lattice, cache)
        return self

    def _init(self, links: list[Any], group: Group, lattice: Lattice, cache: bool) -> None:
        self.group, self.lattice = group, lattice
        self._links = links
        self._keep = bool(cache)
        self._depth = 0
        self._cache: dict[tuple[int, tuple[int, ...]], Any] = {}

    # -- links and translations ------------------------------------------------------------------
    def link(self, mu: int) -> Any:
        """The link field ``U_mu(x)``, ``(*B, *G, *L)``."""
        self._check_dir(mu, "mu")
        return self._links[mu]

    def translate(self, f: Any, offset: Sequence[int]) -> Any:
        """``f(x + offset)`` for any field whose last ``Nd`` axes are the lattice (periodic; one roll)."""
        if len(offset) != self.lattice.nd or not all(_is_int(o) for o in offset):
            raise ValueError(f"offset={tuple(offset)!r}: expected {self.lattice.nd} integer offsets")
        return self._translate(f, tuple(int(o) for o in offset))

    @_scoped
    def translated(self, mu: int, offset: Sequence[int]) -> Any:
        """``U_mu(x + offset)`` (cached)."""
        self._check_dir(mu, "mu")
        if len(offset) != self.lattice.nd or not all(_is_int(o) for o in offset):
            raise ValueError(f"offset={tuple(offset)!r}: expected {self.lattice.nd} integer offsets")
        return self._translated(mu, tuple(int(o) for o in offset))

    def _translated(self, mu: int, off: tuple[int, ...]) -> Any:
        key = (mu, off)
        out = self._cache.get(key)
        if out is None:
            out = self._cache[key] = self._translate(self._links[mu], off)
        return out

    def _translate(self, f: Any, off: tuple[int, ...]) -> Any:
        lat = self.lattice
        moves = [(mu, o) for mu, o in enumerate(off) if o]
        if not moves:
            return f
        if len(moves) == 1:
            return lat.shift(f, moves[0][0], moves[0][1])
        return array_namespace(f).roll(f, shift=tuple(-o for _, o in moves),
                                       axis=tuple(lat.axis(mu) for mu, _ in moves))

    # -- paths -----------------------------------------------------------------------------------
    @_scoped
    def path(self, path: Path, origin: Sequence[int] | None = None) -> Any:
        """Product ``W(x + origin)`` along ``path`` started at ``x + origin``, for every ``x``; ``(*B, *G, *L)``.

        Examples
        --------
        >>> import numpy as np, latticekit as lk
        >>> lat = lk.Lattice((4, 4)); th = lk.U1.random(lk.backends.rng(1), (2, 2), lat.shape)
        >>> W = LoopBuilder(th, lk.U1, lat).path(Path().f(1).b(0), origin=(1, 0))
        >>> bool(np.allclose(W[0, 1, 2], th[0, 1, 2, 2] - th[0, 0, 1, 3]))    # U_1(x+e0) U_0(x+e1)^dag, x = (1, 2)
        True
        """
        if not isinstance(path, Path):
            raise TypeError(f"path={path!r}: expected a latticekit.loops.Path")
        nd = self.lattice.nd
        if len(path) == 0:
            raise ValueError("path: the empty path has no product (expected at least one step)")
        org = (0,) * nd if origin is None else tuple(origin)
        if len(org) != nd or not all(_is_int(o) for o in org):
            raise ValueError(f"origin={origin!r}: expected {nd} integer offsets")
        return self._product(path.steps, tuple(int(o) for o in org))

    def _product(self, steps: tuple[tuple[int, int], ...], origin: tuple[int, ...]) -> Any:
        """The path product of ``steps`` from ``x + origin`` (no argument checks)."""
        nd = self.lattice.nd
        factors, base = _plan(steps, origin)
        G = self.group
        acc: Any = None
        adj = False          # True: the product so far is acc^dag
        for mu, off, dag in factors:
            f = self._translated(mu, off)
            if acc is None:
                acc, adj = f, dag
            elif not adj:
                acc = G.mul_adj(acc, f, nd=nd) if dag else G.mul(acc, f, nd=nd)
            elif dag:
                acc = G.mul(f, acc, nd=nd)                  # acc^dag f^dag = (f acc)^dag
            else:
                acc, adj = G.adj_mul(acc, f, nd=nd), False
        if adj:
            acc = G.adjoint(acc, nd=nd)
        elif len(factors) == 1 and not any(factors[0][1]) and not any(base):
            # one untranslated link is a view of U: editing the result in place edited the gauge field (user probe)
            acc = array_namespace(acc).asarray(acc, copy=True)
        return self._translate(acc, base)

    @_scoped
    def abstract_staple(self, mu: int, path: Path) -> Any:
        """A path from ``x + mu`` back to ``x`` (an "abstract staple" of ``U_mu(x)``), ``(*B, *G, *L)``.

        ``U_mu(x) S(x)`` is then a closed loop at ``x`` (``Omega(x) (.) Omega(x)^dag`` under gauge
        transformations). ``path`` must have displacement ``-mu``.

        Examples
        --------
        >>> import latticekit as lk
        >>> lat = lk.Lattice((4, 4, 4)); U = lk.gauge.random_gauge_field(lk.U1, lat, lk.backends.rng(0))
        >>> lb = LoopBuilder(U, lk.U1, lat)
        >>> bool(abs(lb.abstract_staple(0, Path().f(2).b(0).b(2)) - lb.staple(0, 2, 1)).max() == 0)
        True
        """
        self._check_dir(mu, "mu")
        nd = self.lattice.nd
        want = tuple(-v for v in _unit(nd, mu))
        if not isinstance(path, Path):
            raise TypeError(f"path={path!r}: expected a latticekit.loops.Path")
        if path.displacement(nd) != want:
            raise ValueError(f"path={path!r}: a staple of U_{mu}(x) must run from x + e_{mu} to x "
                             f"(displacement {want})")
        return self._product(path.steps, _unit(nd, mu))

    # -- plaquettes ------------------------------------------------------------------------------
    @_scoped
    def plaquette_halves(self, mu: int, nu: int) -> tuple[Any, Any]:
        """``(a, b)`` with ``P_{mu nu}(x) = a b^dag``: ``a = U_mu(x) U_nu(x+mu)``, ``b = U_nu(x) U_mu(x+nu)``.

        Traces of plaquettes need only these two products (``Re tr(a b^dag)`` without a third one).
        """
        self._check_plane(mu, nu)
        return self._halves(mu, nu)

    def _halves(self, mu: int, nu: int) -> tuple[Any, Any]:
        zero = (0,) * self.lattice.nd
        return self._product(((mu, 1), (nu, 1)), zero), self._product(((nu, 1), (mu, 1)), zero)

    @_scoped
    def plaquette(self, mu: int, nu: int) -> Any:
        """``P_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``, ``(*B, *G, *L)`` (U(1): unwrapped)."""
        self._check_plane(mu, nu)
        a, b = self._halves(mu, nu)
        return self.group.mul_adj(a, b, nd=self.lattice.nd)

    @_scoped
    def re_trace_plaquette(self, mu: int, nu: int) -> Any:
        """``Re tr P_{mu nu}(x)``, ``(*B, *L)`` (U(1): ``cos theta_P``)."""
        self._check_plane(mu, nu)
        a, b = self._halves(mu, nu)
        return self.group.re_trace_mul_adj(a, b, nd=self.lattice.nd)

    @_scoped
    def trace_plaquette(self, mu: int, nu: int) -> Any:
        """Complex ``tr P_{mu nu}(x)``, ``(*B, *L)`` (U(1): ``exp(i theta_P)``)."""
        self._check_plane(mu, nu)
        a, b = self._halves(mu, nu)
        return trace_mul_adj(a, b, self.group, nd=self.lattice.nd)

    @_scoped
    def clover_leaves(self, mu: int, nu: int) -> list[Any]:
        """The four plaquettes of the ``(mu, nu)`` plane that meet at ``x``, each based at ``x`` (the clover):
        ``[P_{mu nu}(x), P_{nu,-mu}(x), P_{-mu,-nu}(x), P_{-nu,mu}(x)]``, counter-clockwise, ``(*B, *G, *L)``.

        They are cyclic permutations of ``U_mu(y) U_nu(y+mu) U_mu(y+nu)^dag U_nu(y)^dag`` based at ``y``,
        ``y+mu``, ``y+mu+nu``, ``y+nu``; with ``C = U_nu(y+mu) U_mu(y+nu)^dag`` and ``D = U_nu(y)^dag U_mu(y)``
        the four share ``C`` and ``D``: 7 multiplications and 6 translations in all (the clover of
        :func:`latticekit.observables.clover_field_strength`).
        """
        self._check_plane(mu, nu)
        G, lat, nd = self.group, self.lattice, self.lattice.nd
        Umu, Unu = self._links[mu], self._links[nu]
        a = self._translated(nu, _unit(nd, mu))       # U_nu(y+mu)
        b = self._translated(mu, _unit(nd, nu))       # U_mu(y+nu)
        C = G.mul_adj(a, b, nd=nd)
        D = G.adj_mul(Unu, Umu, nd=nd)
        m1 = G.mul_adj(G.mul(Umu, C, nd=nd), Unu, nd=nd)          # based at y
        m2 = G.mul(C, D, nd=nd)                                    # based at y + mu
        m3 = G.adj_mul(b, G.mul(D, a, nd=nd), nd=nd)               # based at y + mu + nu
        m4 = G.mul(D, C, nd=nd)                                    # based at y + nu
        return [m1, lat.shift(m2, mu, -1), lat.shift(lat.shift(m3, mu, -1), nu, -1), lat.shift(m4, nu, -1)]

    # -- staples ---------------------------------------------------------------------------------
    @_scoped
    def staple(self, mu: int, rho: int, side: int) -> Any:
        """The staple ``S_rho^side(x)`` of ``U_mu(x)`` (module docstring), ``(*B, *G, *L)``."""
        self._check_plane(mu, rho)
        if side not in (1, -1) or isinstance(side, bool):
            raise ValueError(f"side={side!r}: expected +1 (the +rho side) or -1 (the -rho side)")
        return self._staple(mu, rho, side)

    def _staple(self, mu: int, rho: int, side: int) -> Any:
        return self._product(_staple_steps(rho, mu, side), _unit(self.lattice.nd, mu))

    @_scoped
    def staples(self, mu: int) -> list[Any]:
        """The ``2 (Nd - 1)`` staples of ``U_mu(x)`` in the order of :func:`staple_order`."""
        self._check_dir(mu, "mu")
        return [self._staple(mu, rho, s) for rho, s in staple_order(self.lattice.nd, mu)]

    @_scoped
    def staple_sum(self, mu: int) -> Any:
        """``A_mu(x) = sum`` of the ``2 (Nd - 1)`` staples: ``(*B, N, N, *L)``; U(1): complex ``sum exp(i angle)``.

        ``S_Wilson = -(beta/N) Re tr(U_mu(x) A_mu(x)) + (terms without U_mu(x))``. Costs ``4`` group
        multiplications and ``3`` translations per direction ``rho != mu`` (fewer translations when
        other directions were built by the same builder).
        """
        G, nd = self.group, self.lattice.nd
        self._check_dir(mu, "mu")
        if nd < 2:     # no plaquettes, no staples: the sum was None (user probe)
            raise ValueError(f"lattice={self.lattice}: staples need at least 2 dimensions")
        acc = None
        for rho in range(nd):
            if rho == mu:
                continue
            up, lo = self._staple(mu, rho, 1), self._staple(mu, rho, -1)
            s = G.to_matrix(up, nd=nd) + G.to_matrix(lo, nd=nd)
            acc = s if acc is None else acc + s
        return acc

    @_scoped
    def two_plaquette_loop(self, mu: int, first: tuple[int, int], second: tuple[int, int]) -> Any:
        """``S_first^dag S_second`` for two staples ``(rho, side)`` of ``U_mu(x)``: a closed loop at ``x``.

        Equal to ``P_first^dag P_second`` with ``P = U_mu(x) S`` (the link cancels): the ``2 x 1``
        rectangle around ``U_mu(x)`` for ``first = (nu, +1)``, ``second = (nu, -1)``, a bent ("chair")
        loop for two different planes.
        """
        nd = self.lattice.nd
        return self.group.adj_mul(self.staple(mu, *first), self.staple(mu, *second), nd=nd)

    @_scoped
    def rectangle(self, mu: int, nu: int) -> Any:
        """The ``2 x 1`` Wilson loop at ``x``, two links along ``mu`` and one along ``nu``: ``(*B, *G, *L)``.

        Path ``+mu, +mu, +nu, -mu, -mu, -nu`` (the rectangle term of Symanzik/Iwasaki actions).
        """
        self._check_plane(mu, nu)
        return self.path(Path().f(mu, 2).f(nu).b(mu, 2).b(nu))

    # -- checks ----------------------------------------------------------------------------------
    def _check_dir(self, mu: Any, name: str) -> None:
        if not _is_int(mu) or not 0 <= mu < self.lattice.nd:
            raise ValueError(f"{name}={mu!r}: expected a direction in 0..{self.lattice.nd - 1}")

    def _check_plane(self, mu: int, nu: int) -> None:
        self._check_dir(mu, "mu")
        self._check_dir(nu, "nu")
        if mu == nu:
            raise ValueError(f"mu={mu}, nu={nu}: expected two different directions")


def _check_args(group: Any, lattice: Any) -> None:
    if not isinstance(group, Group):
        raise TypeError(f"group={group!r}: expected a latticekit Group (U1 or SU(N))")
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")


def path_product(U: Any, path: Path, group: Group, lattice: Lattice, origin: Sequence[int] | None = None) -> Any:
    """The path-ordered product along ``path`` from ``x + origin`` for every ``x`` (:meth:`LoopBuilder.path`).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); G = lk.SU(2)
    >>> U = lk.gauge.random_gauge_field(G, lat, lk.backends.rng(0))
    >>> W = path_product(U, Path().f(0, 4), G, lat)                 # Polyakov-loop matrices
    >>> bool(abs(G.trace(W, nd=2)[0] - G.trace(W, nd=2)[1]).max() < 1e-12)   # same class along the line
    True
    """
    return LoopBuilder(U, group, lattice).path(path, origin)
