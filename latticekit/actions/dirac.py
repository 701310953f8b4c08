"""The Wilson-Dirac operator (kappa normalisation), written once against the Array API standard.

Convention (DESIGN.md)::

    D psi(x) = psi(x) - kappa sum_mu [ (1 - gamma_mu) U_mu(x) psi(x + mu)
                                     + (1 + gamma_mu) U_mu(x - mu)^dag psi(x - mu) ],
    kappa = 1 / (2 Nd + 2 m0),

antiperiodic in time (mu = 0): a hop across the time boundary picks up a factor -1. With
``D_std = m0 + Nd - (1/2) sum_mu [...]`` the usual mass normalisation, ``D = 2 kappa D_std``.

Fields: fermions ``(*B, Ns, Nc, L0, ..., L_{Nd-1})`` complex with ``Ns = 2`` (2D) or ``4`` (4D) and
``Nc = group.N`` (1 for U(1)); gauge fields ``(*B, Nd, *G, *L)``.

Gamma matrices (Hermitian, ``{gamma_mu, gamma_nu} = 2 delta``):

* 2D (Pauli): ``gamma_0 = sigma_x``, ``gamma_1 = sigma_y``, ``gamma_5 = sigma_z = -i gamma_0 gamma_1``.
* 4D: the DeGrand-Rossi basis used by Chroma / QDP++. Chroma numbers its matrices
  ``gamma_1..gamma_4 = x, y, z, t``; our direction ``mu = 0`` is time, so
  ``ours[0] = chroma[4] (t)``, ``ours[1] = chroma[1] (x)``, ``ours[2] = chroma[2] (y)``,
  ``ours[3] = chroma[3] (z)``::

      chroma gamma_1 = [[0,0,0,i],[0,0,i,0],[0,-i,0,0],[-i,0,0,0]]     (our gamma_1, x)
      chroma gamma_2 = [[0,0,0,-1],[0,0,1,0],[0,1,0,0],[-1,0,0,0]]     (our gamma_2, y)
      chroma gamma_3 = [[0,0,i,0],[0,0,0,-i],[-i,0,0,0],[0,i,0,0]]     (our gamma_3, z)
      chroma gamma_4 = [[0,0,1,0],[0,0,0,1],[1,0,0,0],[0,1,0,0]]       (our gamma_0, t)

  ``gamma_5 = chroma gamma_1 gamma_2 gamma_3 gamma_4 = diag(1, 1, -1, -1)``; in our numbering
  ``gamma_5 = gamma_1 gamma_2 gamma_3 gamma_0 = -gamma_0 gamma_1 gamma_2 gamma_3``.

Every gamma of both bases is a monomial matrix (one non-zero, ``+-1`` or ``+-i``, per row), so spin
matrices are applied by unrolled sums over the spin components, never by a dense matmul per site.
The hopping term uses the spin-projection trick: ``(1 -+ gamma_mu)`` has rank ``Ns/2``; only
``Ns/2`` half-spinor components are parallel-transported and the partners are reconstructed
(row ``p(s)`` of ``1 + sigma gamma`` equals ``sigma c_{p(s)}`` times row ``s``).

Examples
--------
>>> import latticekit as lk
>>> from latticekit.actions.dirac import WilsonDirac
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
>>> U = lk.U1.random(rng, (lat.nd,), lat.shape)
>>> D = WilsonDirac(U, lk.U1, lat, m0=0.1)
>>> psi = rng.complex_normal(D.field_shape)
>>> chi = rng.complex_normal(D.field_shape)
>>> import numpy as np
>>> lhs = np.vdot(chi, D.apply(psi)); rhs = np.vdot(D.apply_dagger(chi), psi)
>>> bool(abs(lhs - rhs) < 1e-12)
True
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from latticekit.backends import array_namespace, backend_name, device, fast_path, is_complex
from latticekit.gauge import check_gauge_field, link
from latticekit.groups import Group
from latticekit.lattice import Lattice, LatticeMismatchError

from ._checks import flag, positive_int, real_number

__all__ = [
    "GAMMA_BASIS",
    "WilsonDirac",
    "apply_gamma5",
    "gamma_matrices",
    "gamma5_matrix",
    "kappa_from_mass",
    "mass_from_kappa",
    "spin_dim",
    "wilson_dirac",
    "wilson_dirac_dagger",
    "wilson_dirac_normal",
]

# Monomial gamma tables: (gamma psi)_s = coef[s] * psi_{perm[s]}
_GAMMA_2D: tuple[tuple[tuple[int, ...], tuple[complex, ...]], ...] = (
    ((1, 0), (1 + 0j, 1 + 0j)),  # gamma_0 = sigma_x
    ((1, 0), (-1j, 1j)),  # gamma_1 = sigma_y
)
_G5_2D: tuple[float, ...] = (1.0, -1.0)  # sigma_z

_GAMMA_4D: tuple[tuple[tuple[int, ...], tuple[complex, ...]], ...] = (
    ((2, 3, 0, 1), (1 + 0j, 1 + 0j, 1 + 0j, 1 + 0j)),  # mu=0 (t): chroma gamma_4
    ((3, 2, 1, 0), (1j, 1j, -1j, -1j)),  # mu=1 (x): chroma gamma_1
    ((3, 2, 1, 0), (-1 + 0j, 1 + 0j, 1 + 0j, -1 + 0j)),  # mu=2 (y): chroma gamma_2
    ((2, 3, 0, 1), (1j, -1j, -1j, 1j)),  # mu=3 (z): chroma gamma_3
)
_G5_4D: tuple[float, ...] = (1.0, 1.0, -1.0, -1.0)

#: name of the gamma basis per lattice dimension
GAMMA_BASIS = {2: "Pauli (gamma_0 = sigma_x, gamma_1 = sigma_y, gamma_5 = sigma_z)",
               4: "DeGrand-Rossi (Chroma); ours[0] = chroma gamma_4 (t), ours[1..3] = chroma gamma_1..3 (x, y, z)"}


def _tables(nd: int) -> tuple[tuple[tuple[tuple[int, ...], tuple[complex, ...]], ...], tuple[float, ...]]:
    if nd == 2:
        return _GAMMA_2D, _G5_2D
    if nd == 4:
        return _GAMMA_4D, _G5_4D
    raise ValueError(f"lattice has nd={nd} dimensions; Wilson fermions are implemented for nd = 2 (Ns = 2) and "
                     "nd = 4 (Ns = 4)")


def spin_dim(nd: int) -> int:
    """Number of spin components: 2 in 2D, 4 in 4D.

    Examples
    --------
    >>> spin_dim(2), spin_dim(4)
    (2, 4)
    """
    return len(_tables(nd)[1])


def gamma_matrices(nd: int) -> list[list[list[complex]]]:
    """The gamma matrices ``[gamma_0, ..., gamma_{nd-1}]`` as nested lists (row index first).

    Examples
    --------
    >>> [[complex(z).imag for z in row] for row in gamma_matrices(2)[1]]
    [[0.0, -1.0], [1.0, 0.0]]
    """
    gam, _ = _tables(nd)
    ns = len(gam[0][0])
    out = []
    for perm, coef in gam:
        m = [[0j] * ns for _ in range(ns)]
        for s in range(ns):
            m[s][perm[s]] = complex(coef[s])
        out.append(m)
    return out


def gamma5_matrix(nd: int) -> list[list[complex]]:
    """``gamma_5`` as a nested list: ``sigma_z`` in 2D, ``diag(1, 1, -1, -1)`` in 4D.

    Examples
    --------
    >>> gamma5_matrix(2)
    [[(1+0j), 0j], [0j, (-1+0j)]]
    """
    _, g5 = _tables(nd)
    n = len(g5)
    return [[complex(g5[i]) if i == j else 0j for j in range(n)] for i in range(n)]


def kappa_from_mass(m0: float, nd: int) -> float:
    """``kappa = 1 / (2 Nd + 2 m0)``.

    Examples
    --------
    >>> kappa_from_mass(0.0, 2)
    0.25
    """
    den = 2.0 * positive_int("nd", nd) + 2.0 * real_number("m0", m0)
    if not den > 0:
        raise ValueError(f"m0={m0!r}: need 2 Nd + 2 m0 > 0 (kappa = 1/(2 Nd + 2 m0) must be positive), i.e. m0 > {-nd}")
    return 1.0 / den


def mass_from_kappa(kappa: float, nd: int) -> float:
    """``m0 = 1 / (2 kappa) - Nd``.

    Examples
    --------
    >>> mass_from_kappa(0.25, 2)
    0.0
    """
    if not real_number("kappa", kappa) > 0:
        raise ValueError(f"kappa={kappa!r}: expected kappa > 0")
    return 1.0 / (2.0 * float(kappa)) - positive_int("nd", nd)


def _scale(v: Any, c: complex) -> Any:
    """``c * v`` for c in {+-1, +-i} without a full complex multiply where c is real."""
    if c == 1:
        return v
    if c == -1:
        return -v
    return c * v


def _axpy(a: Any, c: complex, b: Any) -> Any:
    """``a + c * b`` for c in {+-1, +-i}."""
    if c == 1:
        return a + b
    if c == -1:
        return a - b
    return a + c * b


class WilsonDirac:
    """Wilson-Dirac operator ``D[U]`` on fermion fields ``(*B, Ns, Nc, *L)`` (see module docstring).

    Parameters
    ----------
    U : array
        Gauge field ``(*B, Nd, *G, *L)`` (U(1): real angles; SU(N): complex matrices).
    group : Group
        ``latticekit.U1`` or ``latticekit.SU(N)``.
    lattice : Lattice
        2D or 4D lattice; ``L_0 >= 2`` for the antiperiodic time boundary.
    kappa, m0 : float
        Exactly one: hopping parameter ``kappa > 0`` or bare mass ``m0`` (``kappa = 1/(2 Nd + 2 m0)``).
    antiperiodic : bool
        Antiperiodic time boundary (default, DESIGN.md); False gives periodic boundaries.

    Notes
    -----
    Fermion batches broadcast against the gauge-field batch (e.g. many sources on one
    configuration: ``psi`` of shape ``(S, *B, Ns, Nc, *L)``). For U(1) the link phases
    ``exp(i theta)`` are computed once in the constructor. torch autograd flows through every method.
    The operator is ``D`` of the links as they are at construction: it keeps views of ``U`` and copies made from
    it (the conjugate links, the fast path's link array at its first use), so changing ``U`` in place afterwards
    leaves a mixture of old and new links -- build a new operator instead (construction costs one pass over the
    links; the library's samplers and actions build one per field).
    ``apply``, ``apply_dagger`` and ``hop`` use the fast path ``"wilson_dirac_apply"`` where one is
    registered for the backend and accepts the inputs (NumPy: the numba kernel, for C-contiguous
    complex128 fields; ``LATTICEKIT_FAST_KERNELS=0`` switches it off); the Array API code is the fallback.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> U = lk.gauge.cold_gauge_field(lk.U1, lat)
    >>> D = WilsonDirac(U, lk.U1, lat, kappa=0.2)
    >>> D.field_shape, D.m0
    ((2, 1, 4, 4), 0.5)
    """

    def __init__(self, U: Any, group: Group, lattice: Lattice, kappa: float | None = None, m0: float | None = None,
                 *, antiperiodic: bool = True) -> None:
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice: expected a latticekit.Lattice, got {type(lattice).__name__}")
        if not isinstance(group, Group):
            raise TypeError(f"group: expected a latticekit Group (U1, SU(N)), got {type(group).__name__}")
        nd = lattice.nd
        gam, g5 = _tables(nd)
        if (kappa is None) == (m0 is None):
            raise ValueError("WilsonDirac: give exactly one of kappa= or m0=")
        if kappa is None:
            kappa = kappa_from_mass(m0, nd)  # type: ignore[arg-type]
        kappa = real_number("kappa", kappa)
        if not kappa > 0:
            raise ValueError(f"kappa={kappa!r}: expected kappa > 0")
        antiperiodic = flag("antiperiodic", antiperiodic)
        check_gauge_field(U, group, lattice, "U")
        xp = array_namespace(U)
        abelian = len(group.element_shape) == 0
        if abelian and is_complex(U, xp):
            raise TypeError("U: U(1) gauge fields are real angles; got a complex array")
        if not abelian and not is_complex(U, xp):
            raise TypeError(f"U: {group.name} gauge fields are complex matrices; got dtype {U.dtype}")
        if antiperiodic and lattice.shape[0] < 2:
            raise ValueError(f"lattice {lattice}: the antiperiodic time direction needs L_0 >= 2")
        self.U = U
        self.group = group
        self.lattice = lattice
        self.kappa = kappa
        self.antiperiodic = bool(antiperiodic)
        self.nd = nd
        self.Ns = len(g5)
        self.Nc = group.N
        self._gam = gam
        self._g5 = g5
        self._reps = [tuple(s for s in range(self.Ns) if s < perm[s]) for perm, _ in gam]
        self._abelian = abelian
        #: complex dtype of this operator's fermion fields: that of the links (U(1): complex64 for float32 angles)
        self.fermion_dtype = U.dtype if not abelian else (xp.complex64 if U.dtype == xp.float32 else xp.complex128)
        self.batch_shape = tuple(U.shape[: U.ndim - nd - len(group.element_shape) - 1])
        self.field_shape = (self.Ns, self.Nc) + tuple(lattice.shape)
        self._rest = (slice(None),) * (nd + 1)
        self._links = []
        # colour-matrix elements per direction, (*B, *L) each: [mu][a][b] = U_mu^{ab}, and their conjugates
        # (for the backward hop U^dag); U(1): the phase exp(i theta) as a 1x1 matrix
        self._elems: list[list[list[Any]]] = []
        self._elems_c: list[list[list[Any]]] = []
        for mu in range(nd):
            Um = link(U, mu, group, lattice)
            if abelian:
                ph = group.to_matrix(Um, nd=nd)  # (*B, *L)
                phc = xp.conj(ph)
                self._elems.append([[ph]])
                self._elems_c.append([[phc]])
                ex = lambda a: xp.expand_dims(xp.expand_dims(a, axis=a.ndim - nd), axis=a.ndim - nd)  # noqa: E731
                self._links.append((ex(ph), ex(phc)))  # (*B, 1, 1, *L)
            else:
                Ue = xp.expand_dims(Um, axis=Um.ndim - nd - 2)  # (*B, 1, N, N, *L)
                self._links.append((Ue, None))
                el = [[Um[(..., a, b) + (slice(None),) * nd] for b in range(self.Nc)] for a in range(self.Nc)]
                self._elems.append(el)
                self._elems_c.append([[xp.conj(e) for e in row] for row in el])
        # per (dagger, mu, forward?): [(s, p(s), c_proj, c_rec)] for the spin projection of the hop:
        # h_s = psi_s + c_proj psi_{p(s)} is transported, and row p(s) is c_rec times row s
        self._proj: dict[tuple[bool, int, bool], list[tuple[int, int, complex, complex]]] = {}
        for dag in (False, True):
            sg = -1 if dag else 1
            for mu in range(nd):
                perm, coef = gam[mu]
                for fwd in (True, False):
                    sign = -sg if fwd else sg  # forward (1 - s gamma), backward (1 + s gamma)
                    self._proj[(dag, mu, fwd)] = [(s, perm[s], sign * coef[s], sign * coef[perm[s]])
                                                  for s in self._reps[mu]]
        self._fast_links: Any = None

    # -- properties ----------------------------------------------------------------------------
    @property
    def m0(self) -> float:
        """Bare mass ``1/(2 kappa) - Nd``."""
        return mass_from_kappa(self.kappa, self.nd)

    @property
    def like(self) -> Any:
        """An array of the operator's backend and device (the gauge field)."""
        return self.U

    @property
    def ndof(self) -> int:
        """Complex components per field: ``Ns * Nc * volume``."""
        return self.Ns * self.Nc * self.lattice.volume

    support: Any = None  #: full-lattice operator: every component is a degree of freedom

    def __repr__(self) -> str:
        return f"WilsonDirac({self.group.name}, {self.lattice}, kappa={self.kappa:g}, batch={self.batch_shape})"

    # -- checks --------------------------------------------------------------------------------
    def check_field(self, psi: Any, name: str = "psi") -> None:
        """Raise unless ``psi`` is a complex fermion field ``(*B, Ns, Nc, *L)`` of this lattice."""
        shp = tuple(psi.shape)
        fs = self.field_shape
        if len(shp) < len(fs) or shp[len(shp) - len(fs):] != fs:
            raise LatticeMismatchError(f"{name} has shape {shp}; expected (*batch, {', '.join(map(str, fs))}) = "
                                       f"(*batch, Ns, Nc, *L) for {self.group.name} on {self.lattice}")
        if not is_complex(psi):
            raise TypeError(f"{name}: fermion fields are complex; got dtype {psi.dtype}")
        bp, bu = backend_name(psi), backend_name(self.U)
        if bp != bu or str(device(psi)) != str(device(self.U)):
            raise TypeError(f"{name}: expected a {bu} array on {device(self.U)} like the gauge field, got a {bp} array "
                            f"on {device(psi)}")
        want = self.fermion_dtype
        if psi.dtype != want:
            # complex128 fermions on complex64 links were promoted silently: the solves then reported convergence
            # to 1e-10 of an operator accurate to 1e-7 (user probe)
            raise TypeError(f"{name} has dtype {psi.dtype}; the gauge field's precision gives {want} fermions "
                            "(convert one of them)")
        batch = shp[: len(shp) - len(fs)]
        if any(a != b and 1 not in (a, b) for a, b in zip(reversed(batch), reversed(self.batch_shape))):
            raise LatticeMismatchError(f"{name} has batch shape {batch}; expected one that broadcasts with the gauge "
                                       f"field's batch shape {self.batch_shape}")

    # -- building blocks -----------------------------------------------------------------------
    def _act(self, mu: int, v: Any, adj: bool) -> Any:
        Ue, Uc = self._links[mu]
        if self._abelian:
            return (Uc if adj else Ue) * v
        if adj:
            return self.group.act_adj(Ue, v, nd=self.nd)
        return self.group.act(Ue, v, nd=self.nd)

    def _phase(self, mu: int) -> Any:
        return -1 if (mu == 0 and self.antiperiodic) else None

    def spin(self, psi: Any, s: int) -> Any:
        """Spin component ``s`` of a fermion field: ``(*B, Nc, *L)``."""
        return psi[(..., s) + self._rest]

    def _transport(self, mu: int, h: list[Any], adj: bool) -> list[Any]:
        """Colour components of ``U_mu h`` (``U_mu^dag h`` for ``adj``); ``h`` a list of ``Nc`` components."""
        el = self._elems_c[mu] if adj else self._elems[mu]
        N = self.Nc
        out = []
        for a in range(N):
            acc = None
            for b in range(N):
                u = el[b][a] if adj else el[a][b]
                acc = u * h[b] if acc is None else acc + u * h[b]
            out.append(acc)
        return out

    def _hop_components(self, psi: Any, dagger: bool) -> list[list[Any]]:
        """``(H psi)`` as a list ``[s][a]`` of ``(*B, *L)`` spin-colour components (no stacked temporaries)."""
        nd, lat, N = self.nd, self.lattice, self.Nc
        rest = (slice(None),) * nd
        comps = [[psi[(..., s, a) + rest] for a in range(N)] for s in range(self.Ns)]
        acc: list[list[Any]] = [[None] * N for _ in range(self.Ns)]
        for mu in range(nd):
            phase = self._phase(mu)
            for fwd in (True, False):
                for s, ps, cp, cr in self._proj[(bool(dagger), mu, fwd)]:
                    h = [_axpy(comps[s][a], cp, comps[ps][a]) for a in range(N)]
                    if fwd:
                        t = self._transport(mu, [lat.shift(v, mu, +1, phase=phase) for v in h], adj=False)
                    else:
                        t = [lat.shift(v, mu, -1, phase=phase) for v in self._transport(mu, h, adj=True)]
                    for a in range(N):
                        v = t[a]
                        w = _scale(v, cr)
                        acc[s][a] = v if acc[s][a] is None else acc[s][a] + v
                        acc[ps][a] = w if acc[ps][a] is None else acc[ps][a] + w
        return acc

    def _assemble(self, comps: list[list[Any]]) -> Any:
        """Stack ``[s][a]`` components into one field ``(*B, Ns, Nc, *L)`` (a single copy)."""
        xp = array_namespace(comps[0][0])
        out = xp.stack([c for row in comps for c in row], axis=-self.nd - 1)  # Ns Nc >= 2 components
        shp = tuple(out.shape)
        return xp.reshape(out, shp[: len(shp) - self.nd - 1] + (self.Ns, self.Nc) + shp[len(shp) - self.nd:])

    def _links_for_kernels(self) -> Any:
        """The links as ``(*B, Nd, Nc, Nc, *L)`` complex, row-major (U(1): the phases as 1x1 matrices), built once."""
        if self._fast_links is None:
            xp = array_namespace(self.U)
            ax = self.U.ndim - len(self.group.element_shape) - self.nd - 1
            fl = xp.stack([self._links[mu][0] if self._abelian else link(self.U, mu, self.group, self.lattice)
                           for mu in range(self.nd)], axis=ax)
            # flatten and restore: a row-major (C-order) array whatever the memory order of U
            self._fast_links = xp.reshape(xp.reshape(fl, (-1,)), tuple(fl.shape))
        return self._fast_links

    def _fast(self, psi: Any, alpha: float, beta: float, dagger: bool) -> Any:
        """``alpha psi + beta H psi`` (``H^dag`` for ``dagger``) by a registered fast path, or None."""
        fp = fast_path("wilson_dirac_apply", psi)
        if fp is None:
            return None
        return fp(psi, self._links_for_kernels(), self._gam, alpha, beta, dagger=bool(dagger),
                  antiperiodic=self.antiperiodic)

    def normal_solver(self, mu: float = 0.0, *, even_odd: bool = False) -> Callable[..., Any] | None:
        """The compiled CG of ``(D D^dag + mu)`` for :func:`latticekit.linalg.cg` (``fused=``), or None.

        Where the fast path ``"wilson_normal_cg"`` is registered for the operator's backend (NumPy:
        backends/_numba_cg.py), the whole CG loop runs in one compiled call instead of a Python loop
        (about 80 us per iteration, the dominant cost on small lattices). The returned callable
        ``(b, x0, tol, maxiter) -> (x, converged, iterations)`` declines (returns None) for inputs it does
        not handle; ``cg`` then runs its own loop. ``even_odd=True`` gives the solver of the Schur
        complement's ``D_sc D_sc^dag + mu`` (:class:`~latticekit.actions.even_odd.EvenOddDirac`).

        Examples
        --------
        >>> import latticekit as lk, numpy as np
        >>> from latticekit.linalg import cg
        >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
        >>> D = WilsonDirac(lk.U1.random(rng, (2,), lat.shape), lk.U1, lat, kappa=0.2)
        >>> b = D.random_field(rng, ())
        >>> x, info = cg(D.normal, b, tol=1e-12, fused=D.normal_solver())
        >>> bool(info.converged), bool(np.abs(D.normal(x) - b).max() < 1e-10)
        (True, True)
        """
        mu = real_number("mu", mu)
        if not mu >= 0:
            raise ValueError(f"mu={mu!r}: expected mu >= 0")
        fp = fast_path("wilson_normal_cg", self.U)
        if fp is None:
            return None
        kappa, gam, anti, eo = self.kappa, self._gam, self.antiperiodic, bool(even_odd)

        def solve(b: Any, x0: Any, tol: float, maxiter: int) -> Any:
            return fp(b, self._links_for_kernels(), gam, kappa, mu, antiperiodic=anti, even_odd=eo, x0=x0, tol=tol,
                      maxiter=maxiter)

        return solve

    def hop(self, psi: Any, dagger: bool = False) -> Any:
        """Hopping term ``H psi`` with ``D = 1 - kappa H`` (``dagger=True``: ``H^dag = gamma_5 H gamma_5``).

        ``H psi(x) = sum_mu [(1 - s gamma_mu) U_mu(x) psi(x+mu) + (1 + s gamma_mu) U_mu(x-mu)^dag psi(x-mu)]``
        with ``s = +1`` (``s = -1`` for the adjoint). A registered fast path (``"wilson_dirac_apply"``,
        backends/_fast.py) runs where it accepts the inputs; the Array API code below is the fallback.
        """
        out = self._fast(psi, 0.0, 1.0, dagger)
        if out is not None:
            return out
        return self._assemble(self._hop_components(psi, dagger))

    # -- the operator --------------------------------------------------------------------------
    def apply(self, psi: Any) -> Any:
        """``D psi``."""
        self.check_field(psi)
        return self._apply(psi, False)

    __call__ = apply

    def apply_dagger(self, psi: Any) -> Any:
        """``D^dag psi`` (equal to ``gamma_5 D gamma_5 psi``)."""
        self.check_field(psi)
        return self._apply(psi, True)

    def _apply(self, psi: Any, dagger: bool) -> Any:
        out = self._fast(psi, 1.0, -self.kappa, dagger)
        if out is not None:
            return out
        return psi - self.kappa * self._assemble(self._hop_components(psi, dagger))

    def apply_gamma5(self, psi: Any) -> Any:
        """``gamma_5 psi`` (``sigma_z`` in 2D, ``diag(1,1,-1,-1)`` in 4D)."""
        self.check_field(psi)
        xp = array_namespace(psi)
        return xp.stack([_scale(self.spin(psi, s), self._g5[s]) for s in range(self.Ns)], axis=-self.nd - 2)

    def normal(self, psi: Any, mu: float = 0.0) -> Any:
        """``(D D^dag + mu) psi`` (Hermitian, positive definite for ``mu >= 0`` and invertible D)."""
        out = self.apply(self.apply_dagger(psi))
        return out + mu * psi if mu else out

    def normal_dagger_first(self, psi: Any, mu: float = 0.0) -> Any:
        """``(D^dag D + mu) psi``."""
        out = self.apply_dagger(self.apply(psi))
        return out + mu * psi if mu else out

    def mask(self, psi: Any) -> Any:
        """Restriction to the operator's degrees of freedom (identity for the full operator)."""
        return psi

    def zeros(self, batch_shape: Sequence[int] = ()) -> Any:
        """A zero fermion field of this operator's backend, device and precision."""
        xp = array_namespace(self.U)
        from latticekit.backends import device

        return xp.zeros(tuple(batch_shape) + self.field_shape, dtype=self.fermion_dtype, device=device(self.U))

    def random_field(self, rng: Any, batch_shape: Sequence[int] | None = None) -> Any:
        """Gaussian noise ``chi ~ exp(-chi^dag chi)`` (``E|chi_i|^2 = 1``), batch = operator batch by default."""
        bs = self.batch_shape if batch_shape is None else tuple(batch_shape)
        single = self.fermion_dtype == array_namespace(self.U).complex64
        return rng.complex_normal(bs + self.field_shape, dtype="complex64" if single else "complex128")

    # -- derivatives w.r.t. the links ----------------------------------------------------------
    def hop_bilinear_derivative(self, a: Any, b: Any) -> Any:
        """Lie-derivative coordinates of ``Re(a^dag H b)`` w.r.t. every link, shape ``(*B, Nd, dim_alg, *L)``.

        Derivation: with ``U_mu(x) -> exp(t T_a) U_mu(x)``, ``dU = T_a U`` and ``dU^dag = -U^dag T_a``;
        the forward hop contributes ``Re[((1-gamma) a(x))^dag T_a U b(x+mu)] = Re tr[T_a M1]`` with
        ``M1 = sum_s [U b(x+mu)]_s [(1-gamma) a(x)]_s^dag`` and the backward hop
        ``-Re[(U (1+gamma) a(x+mu))^dag T_a b(x)] = -Re tr[T_a M2]``, ``M2 = sum_s b_s(x) [U (1+gamma) a(x+mu)]_s^dag``
        (gamma Hermitian; ``x + mu`` across the time boundary carries the factor -1). Finally
        ``Re tr(T_a M) = -c omega_a(P(M))`` with ``P`` the group's ``project_algebra`` and
        ``tr T_a T_b = -c delta_ab`` (``c = 1`` for U(1) with ``T = i``, ``c = 1/2`` for SU(N)).
        """
        xp = array_namespace(a, b)
        nd, lat = self.nd, self.lattice
        out = []
        for mu in range(nd):
            perm, coef = self._gam[mu]
            phase = self._phase(mu)
            b_fwd = lat.shift(b, mu, +1, phase=phase)
            a_fwd = lat.shift(a, mu, +1, phase=phase)
            v1 = self._act(mu, b_fwd, adj=False)  # U b(x+mu)
            w1 = [_axpy(self.spin(a, s), -coef[s], self.spin(a, perm[s])) for s in range(self.Ns)]  # (1-g) a(x)
            pa = xp.stack([_axpy(self.spin(a_fwd, s), coef[s], self.spin(a_fwd, perm[s])) for s in range(self.Ns)],
                          axis=-nd - 2)
            w2 = self._act(mu, pa, adj=False)  # U (1+g) a(x+mu)
            M = None
            for s in range(self.Ns):
                m = self._outer(self.spin(v1, s), w1[s]) - self._outer(self.spin(b, s), self.spin(w2, s))
                M = m if M is None else M + m
            out.append(self._re_tr_generators(M))
        return xp.stack(out, axis=-nd - 2)

    def _outer(self, v: Any, w: Any) -> Any:
        """Colour outer product ``v w^dag`` for ``(*B, Nc, *L)`` vectors: U(1) ``(*B, *L)``, SU(N) ``(*B, N, N, *L)``."""
        xp = array_namespace(v, w)
        nd = self.nd
        if self._abelian:
            return (v * xp.conj(w))[(..., 0) + (slice(None),) * nd]
        return xp.expand_dims(v, axis=v.ndim - nd) * xp.expand_dims(xp.conj(w), axis=w.ndim - nd - 1)

    def _re_tr_generators(self, M: Any) -> Any:
        """``Re tr(T_a M)`` for every generator, shape ``(*B, dim_alg, *L)``."""
        c = 1.0 if self._abelian else 0.5
        return -c * self.group.to_coords(self.group.project_algebra(M, nd=self.nd), nd=self.nd)

    def bilinear_derivative(self, a: Any, b: Any) -> Any:
        """Lie-derivative coordinates of ``Re(a^dag D b)`` w.r.t. the links, shape ``(*B, Nd, dim_alg, *L)``."""
        return -self.kappa * self.hop_bilinear_derivative(a, b)


# -- module-level functions -----------------------------------------------------------------------
def wilson_dirac(psi: Any, U: Any, group: Group, lattice: Lattice, kappa: float | None = None,
                 m0: float | None = None) -> Any:
    """``D[U] psi`` (see :class:`WilsonDirac`).

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((2, 2)); U = lk.gauge.cold_gauge_field(lk.U1, lat)
    >>> psi = np.zeros((2, 1, 2, 2), dtype=complex); psi[0, 0, 0, 0] = 1.0
    >>> out = wilson_dirac(psi, U, lk.U1, lat, kappa=0.25)
    >>> complex(out[0, 0, 0, 0])
    (1+0j)
    """
    return WilsonDirac(U, group, lattice, kappa=kappa, m0=m0).apply(psi)


def wilson_dirac_dagger(psi: Any, U: Any, group: Group, lattice: Lattice, kappa: float | None = None,
                        m0: float | None = None) -> Any:
    """``D[U]^dag psi``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((2, 2)); U = lk.gauge.cold_gauge_field(lk.U1, lat)
    >>> psi = np.ones((2, 1, 2, 2), dtype=complex)
    >>> wilson_dirac_dagger(psi, U, lk.U1, lat, kappa=0.1).shape
    (2, 1, 2, 2)
    """
    return WilsonDirac(U, group, lattice, kappa=kappa, m0=m0).apply_dagger(psi)


def wilson_dirac_normal(psi: Any, U: Any, group: Group, lattice: Lattice, kappa: float | None = None,
                        m0: float | None = None, mu: float = 0.0) -> Any:
    """``(D D^dag + mu) psi``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((2, 2)); U = lk.gauge.cold_gauge_field(lk.U1, lat)
    >>> psi = np.ones((2, 1, 2, 2), dtype=complex)
    >>> wilson_dirac_normal(psi, U, lk.U1, lat, m0=0.5).shape
    (2, 1, 2, 2)
    """
    return WilsonDirac(U, group, lattice, kappa=kappa, m0=m0).normal(psi, mu)


def apply_gamma5(psi: Any, lattice: Lattice) -> Any:
    """``gamma_5 psi`` for a fermion field ``(*B, Ns, Nc, *L)``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> psi = np.ones((2, 1, 2, 2), dtype=complex)
    >>> apply_gamma5(psi, lk.Lattice((2, 2)))[:, 0, 0, 0].real.tolist()
    [1.0, -1.0]
    """
    _, g5 = _tables(lattice.nd)
    ns = len(g5)
    lattice.check(psi, "psi")
    if psi.ndim < lattice.nd + 2 or psi.shape[psi.ndim - lattice.nd - 2] != ns:
        raise LatticeMismatchError(f"psi has shape {tuple(psi.shape)}; expected (*batch, {ns}, Nc, *L)")
    xp = array_namespace(psi)
    rest = (slice(None),) * (lattice.nd + 1)
    return xp.stack([_scale(psi[(..., s) + rest], g5[s]) for s in range(ns)], axis=-lattice.nd - 2)
