"""Even/odd (red-black) decomposition of the Wilson-Dirac operator and its Schur complement.

Parity of a site is ``(sum_mu x_mu) mod 2`` (``Lattice.parity``); every extent must be even so
that nearest neighbours have opposite parity. Ordering the sites as (even, odd), eq. (33) of the
pseudofermion paper reads (no clover term, so ``D_ee = D_oo = 1``)::

    D = [[1,    D_eo],        D_eo = -kappa P_e H P_o,   D_oe = -kappa P_o H P_e
         [D_oe, 1   ]]

with ``D = 1 - kappa H``. The Schur complement on the even sites (eq. 34)::

    D_sc = 1_e - D_eo D_oe = 1_e - kappa^2 P_e H P_o H P_e,     det D = det D_sc

(the odd block is the identity). ``D_sc = 1 + O(kappa^2)`` is better conditioned than ``D``.
``D_sc`` is gamma_5-Hermitian (``gamma_5`` commutes with the parity projectors).

Representation of half-fields: FULL-SIZE fields ``(*B, Ns, Nc, *L)`` that are zero on the other
parity. This keeps one field layout everywhere (flows, shifts, observables, I/O), costs twice the
arithmetic of a compressed layout, and works for any batch/backend without gather/scatter.
Inputs are projected (multiplied by the parity mask) before use, so stray off-parity entries
never leak into results. ``EvenOddDirac.support`` is the even-site mask (used by the dense
fallbacks in :mod:`latticekit.linalg` to restrict matrices to the even sites).

Solving ``D x = b`` with the Schur complement::

    x_e = D_sc^{-1} (b_e - D_eo b_o),        x_o = b_o - D_oe x_e.

Examples
--------
>>> import latticekit as lk, numpy as np
>>> from latticekit.actions.dirac import WilsonDirac
>>> from latticekit.actions.even_odd import EvenOddDirac
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(3)
>>> U = lk.U1.random(rng, (lat.nd,), lat.shape)
>>> D = WilsonDirac(U, lk.U1, lat, kappa=0.2)
>>> E = EvenOddDirac(D)
>>> b = rng.complex_normal(D.field_shape)
>>> x, info = E.solve(b, tol=1e-12)
>>> bool(np.abs(D.apply(x) - b).max() < 1e-9)
True
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from latticekit.backends import array_namespace
from latticekit.linalg import SolverInfo, cg

from .dirac import WilsonDirac

__all__ = ["EvenOddDirac", "even_odd_masks", "schur_complement"]


def even_odd_masks(D: WilsonDirac) -> tuple[Any, Any]:
    """Even and odd site masks (dtype of the fermion fields), broadcastable to ``(*B, Ns, Nc, *L)``.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((2, 2))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.1)
    >>> e, o = even_odd_masks(D)
    >>> e.real.tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    z = D.zeros()
    xp = array_namespace(z)
    par = D.lattice.parity(like=D.U)
    e = xp.astype(par == 0, z.dtype)
    o = xp.astype(par == 1, z.dtype)
    return e, o


class EvenOddDirac:
    """The even/odd blocks of a :class:`WilsonDirac` operator and its Schur complement on even sites.

    The operator interface (``apply``, ``apply_dagger``, ``apply_gamma5``, ``normal``,
    ``bilinear_derivative``, ``field_shape``, ``support``, ``ndof``) refers to ``D_sc`` acting on
    even half-fields, so pseudofermion and Hasenbusch code treats it like the full operator.

    Parameters
    ----------
    D : WilsonDirac
        The full operator; every extent of its lattice must be even.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.2)
    >>> E = EvenOddDirac(D); E.ndof
    16
    """

    def __init__(self, D: WilsonDirac) -> None:
        if not isinstance(D, WilsonDirac):
            raise TypeError(f"D: expected a WilsonDirac operator, got {type(D).__name__}")
        odd = [L for L in D.lattice.shape if L % 2]
        if odd:
            raise ValueError(f"lattice {D.lattice}: even/odd preconditioning needs every extent even")
        self.D = D
        self.kappa = D.kappa
        self.lattice = D.lattice
        self.group = D.group
        self.nd = D.nd
        self.Ns, self.Nc = D.Ns, D.Nc
        self.batch_shape = D.batch_shape
        self.field_shape = D.field_shape
        self._even, self._odd = even_odd_masks(D)
        self.support = self.lattice.parity(like=D.U) == 0

    @property
    def like(self) -> Any:
        return self.D.U

    @property
    def ndof(self) -> int:
        """Complex components of an even half-field: ``Ns * Nc * volume / 2``."""
        return self.Ns * self.Nc * self.lattice.volume // 2

    def __repr__(self) -> str:
        return f"EvenOddDirac({self.D!r})"

    # -- projections ---------------------------------------------------------------------------
    def even(self, psi: Any) -> Any:
        """``P_e psi``: zero on odd sites."""
        return self._even * psi

    def odd(self, psi: Any) -> Any:
        """``P_o psi``: zero on even sites."""
        return self._odd * psi

    mask = even

    # -- blocks --------------------------------------------------------------------------------
    def D_ee(self, psi_e: Any) -> Any:
        """Even-even block: the identity on even sites (Wilson, no clover)."""
        self.D.check_field(psi_e, "psi_e")
        return self.even(psi_e)

    def D_oo(self, psi_o: Any) -> Any:
        """Odd-odd block: the identity on odd sites."""
        self.D.check_field(psi_o, "psi_o")
        return self.odd(psi_o)

    def D_eo(self, psi_o: Any, dagger: bool = False) -> Any:
        """``D_eo psi_o = -kappa P_e H P_o psi_o`` (odd -> even); ``dagger``: ``(D_oe)^dag = -kappa P_e H^dag P_o``."""
        self.D.check_field(psi_o, "psi_o")
        return -self.kappa * self.even(self.D.hop(self.odd(psi_o), dagger=dagger))

    def D_oe(self, psi_e: Any, dagger: bool = False) -> Any:
        """``D_oe psi_e = -kappa P_o H P_e psi_e`` (even -> odd); ``dagger``: ``(D_eo)^dag = -kappa P_o H^dag P_e``."""
        self.D.check_field(psi_e, "psi_e")
        return -self.kappa * self.odd(self.D.hop(self.even(psi_e), dagger=dagger))

    # -- Schur complement on even sites --------------------------------------------------------
    def apply(self, psi_e: Any) -> Any:
        """``D_sc psi_e = psi_e - D_eo D_oe psi_e`` on even sites (zero on odd sites)."""
        pe = self.even(psi_e)
        return pe - self.D_eo(self.D_oe(pe))

    __call__ = apply

    def apply_dagger(self, psi_e: Any) -> Any:
        """``D_sc^dag psi_e = psi_e - (D_oe)^dag (D_eo)^dag psi_e``."""
        pe = self.even(psi_e)
        return pe - self.D_eo(self.D_oe(pe, dagger=True), dagger=True)

    def apply_gamma5(self, psi_e: Any) -> Any:
        """``gamma_5 psi_e`` (commutes with the parity projectors)."""
        return self.even(self.D.apply_gamma5(psi_e))

    def normal(self, psi_e: Any, mu: float = 0.0) -> Any:
        """``(D_sc D_sc^dag + mu) psi_e`` on even sites."""
        out = self.apply(self.apply_dagger(psi_e))
        return out + mu * self.even(psi_e) if mu else out

    def normal_solver(self, mu: float = 0.0) -> Callable[..., Any] | None:
        """The compiled CG of ``(D_sc D_sc^dag + mu)`` for :func:`latticekit.linalg.cg` (``fused=``), or None.

        See :meth:`WilsonDirac.normal_solver <latticekit.actions.dirac.WilsonDirac.normal_solver>`.
        """
        return self.D.normal_solver(mu, even_odd=True)

    def zeros(self, batch_shape: Sequence[int] = ()) -> Any:
        return self.D.zeros(batch_shape)

    def random_field(self, rng: Any, batch_shape: Sequence[int] | None = None) -> Any:
        """Gaussian noise on the even sites (zero on odd sites)."""
        return self.even(self.D.random_field(rng, batch_shape))

    def bilinear_derivative(self, a: Any, b: Any) -> Any:
        """Lie-derivative coordinates of ``Re(a^dag D_sc b)`` (``a``, ``b`` even), shape ``(*B, Nd, dim_alg, *L)``.

        ``a^dag D_sc b = a^dag b - kappa^2 a^dag H P_o H b``; varying either ``H``:
        ``d Re(a^dag H P_o H b) = dRe(a^dag H z) + dRe(w^dag H b)`` with ``z = P_o H b`` and
        ``w = P_o H^dag a``.
        """
        a = self.even(a)
        b = self.even(b)
        z = self.odd(self.D.hop(b))
        w = self.odd(self.D.hop(a, dagger=True))
        return -(self.kappa ** 2) * (self.D.hop_bilinear_derivative(a, z) + self.D.hop_bilinear_derivative(w, b))

    # -- solving the full system ---------------------------------------------------------------
    def prepare_source(self, b: Any) -> Any:
        """Even-site source of the Schur system: ``b_e - D_eo b_o``."""
        return self.even(b) - self.D_eo(self.odd(b))

    def reconstruct(self, x_e: Any, b: Any) -> Any:
        """Full solution from the even part: ``x = x_e + (b_o - D_oe x_e)``."""
        x_e = self.even(x_e)
        return x_e + self.odd(b) - self.D_oe(x_e)

    def solve(self, b: Any, *, tol: float = 1e-10, maxiter: int = 2000, raise_on_failure: bool = True) -> tuple[Any, SolverInfo]:
        """Solve ``D x = b`` through the Schur complement (CGNE on ``D_sc D_sc^dag``); batched over chains.

        ``tol`` refers to the even-site normal system. Returns the full-lattice solution and the
        per-chain :class:`~latticekit.linalg.SolverInfo`.
        """
        self.D.check_field(b, "b")
        rhs = self.prepare_source(b)
        bnd = b.ndim - len(self.field_shape)
        y, info = cg(self.normal, rhs, tol=tol, maxiter=maxiter, batch_ndim=bnd, raise_on_failure=raise_on_failure,
                     fused=self.normal_solver())
        x_e = self.apply_dagger(y)
        return self.reconstruct(x_e, b), info


def schur_complement(D: WilsonDirac) -> EvenOddDirac:
    """The even/odd preconditioned operator ``D_sc = 1 - D_eo D_oe`` of ``D`` (see :class:`EvenOddDirac`).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((2, 2))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.1)
    >>> schur_complement(D).ndof
    4
    """
    return EvenOddDirac(D)
