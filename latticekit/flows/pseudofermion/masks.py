"""Variable partitionings of pseudofermion layers as objects (eqs. 27, 29, 31; Sec. III.D.1).

A pseudofermion layer updates the *active* components ``phi_a = P phi`` given the *frozen* ones
``phi_f = (1 - P) phi`` (eq. 27). A :class:`PFMask` is the projector ``P``, diagonal in the basis of
(spin component, site): a site mask ``m(x)`` in {0, 1} and a set of active spin components ``S``::

    P(x) = m(x) * sum_{s in S} e_s e_s^dag

* :class:`SiteMask` (spatial partitioning, eq. 29): ``S`` = every spin, ``m`` = a checkerboard parity;
* :class:`RowMask` (even/odd targets, Sec. III.D.1): ``m`` = the even sites of every other row along
  ``axis`` (``x_axis mod 2 = row``), all spins: "update even sites in every other row, alternating
  which rows are updated from layer to layer";
* :class:`SpinMask` (spin partitioning, eq. 31): ``m`` = every site, ``S`` = the components kept by
  ``P^+ = (1 + sigma_z)/2`` (``S = {0}``) or ``P^- = (1 - sigma_z)/2`` (``S = {1}``) in 2D; in 4D the
  chiral halves ``(1 +- gamma_5)/2`` (DeGrand-Rossi: ``S = {0, 1}`` or ``{2, 3}``).
* :class:`GammaMask` (the 4D QCD model of arXiv:2208.03832, Sec. 3.1): the projectors
  ``(1 +- gamma_mu)/2`` for ``mu`` in ``{0, .., Nd-1, 5}`` on every site. Only ``gamma_5`` is diagonal in
  our basis, so the mask carries a **spin basis** ``V`` (:meth:`PFMask.spin_basis`, unitary, first half
  of its columns spanning the ``+1`` eigenspace of ``gamma_mu``): the layer acts on ``psi = V^dag phi``
  with ``S`` the first or second half of the components and returns ``V psi'``. A constant unitary spin
  rotation has ``|det| = 1`` on the real volume and commutes with gauge transformations (colour), so
  the log-det (eqs. 30, 32) and the equivariance of the layer are unchanged.

Every mask is intersected with the *support* of the field (even sites for even/odd targets, every
site otherwise): odd sites of an even/odd pseudofermion are never updated (they stay zero and serve
the PTCNs as working memory only).

:func:`pf_masks` builds the alternation schemes: ``"spatial"`` (parities 0, 1, 0, 1, ...; rows for
even/odd targets), ``"spin"`` (``P^+``, ``P^-``, ...), ``"alternating"`` (spatial, spatial, spin, spin,
...: the SU(3) model of Sec. IV.B "alternating spatial and spin variable partitioning", each pair
covering every variable once), ``"gamma"`` (spatial, spatial, then ``(1 + gamma_mu)/2``,
``(1 - gamma_mu)/2`` for ``mu = 0, .., Nd-1, 5``: 12 layers per cycle in 4D, so the 36 layers of the 4D
QCD model are three cycles; the order within a cycle is our choice, the paper names only the set).

Examples
--------
>>> import latticekit as lk
>>> lat = lk.Lattice((4, 4))
>>> [repr(m) for m in pf_masks("spatial", lat, 2)]
['SiteMask(parity=0)', 'SiteMask(parity=1)']
>>> [repr(m) for m in pf_masks("alternating", lat, 4, even_odd=True)]
['RowMask(axis=1, row=0)', 'RowMask(axis=1, row=1)', 'SpinMask(spins=(0,))', 'SpinMask(spins=(1,))']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch

from latticekit.lattice import Lattice

from ._checks import check_int

__all__ = ["GammaMask", "PARTITIONINGS", "PFMask", "RowMask", "SiteMask", "SpinMask", "pf_masks", "projector_basis",
           "support_mask"]

#: names accepted by :func:`pf_masks`
PARTITIONINGS = ("spatial", "spin", "alternating", "gamma")


def support_mask(lattice: Lattice, even_odd: bool) -> torch.Tensor:
    """Sites that carry pseudofermion variables: the even sites for even/odd targets, else all; ``(*L)`` bool."""
    if even_odd:
        return lattice.parity(backend="torch") == 0
    return torch.ones(tuple(lattice.shape), dtype=torch.bool)


class PFMask(ABC):
    """Projector ``P`` of eq. (27): site mask and active spin components (module docstring)."""

    #: spin components updated by the layer (None: all)
    spins: tuple[int, ...] | None = None

    @abstractmethod
    def sites(self, lattice: Lattice) -> torch.Tensor:
        """Active sites before intersecting with the support, ``(*L)`` bool."""

    def active_spins(self, ns: int) -> tuple[int, ...]:
        """The active spin components for ``ns`` spin components."""
        if self.spins is None:
            return tuple(range(ns))
        if max(self.spins) >= ns:
            raise ValueError(f"{self!r}: spin components {self.spins} do not exist for Ns = {ns}")
        return self.spins

    def spin_basis(self, ns: int) -> torch.Tensor | None:
        """Unitary ``(ns, ns)`` complex128 spin basis ``V`` the layer works in (``psi = V^dag phi``), or None:
        the basis of the field (every mask whose projector is diagonal)."""
        return None

    def active_sites(self, lattice: Lattice, even_odd: bool) -> torch.Tensor:
        """``m(x)`` intersected with the support, ``(*L)`` bool."""
        m = self.sites(lattice) & support_mask(lattice, even_odd)
        if not bool(m.any()):
            raise ValueError(f"{self!r} has no active site on {lattice} (even_odd={even_odd})")
        return m


class SiteMask(PFMask):
    """Checkerboard spatial partitioning (eq. 29): sites of parity ``parity`` active, all spins."""

    def __init__(self, parity: int) -> None:
        if parity not in (0, 1) or isinstance(parity, bool):
            raise ValueError(f"parity={parity!r}: expected 0 or 1")
        self.parity = int(parity)

    def __repr__(self) -> str:
        return f"SiteMask(parity={self.parity})"

    def sites(self, lattice: Lattice) -> torch.Tensor:
        return lattice.parity(backend="torch") == self.parity


class RowMask(PFMask):
    """Rows ``x_axis mod 2 = row`` active (with the support: the even sites of every other row), all spins."""

    def __init__(self, axis: int, row: int) -> None:
        if row not in (0, 1) or isinstance(row, bool):
            raise ValueError(f"row={row!r}: expected 0 or 1")
        self.axis, self.row = check_int(axis, "axis", 0), int(row)

    def __repr__(self) -> str:
        return f"RowMask(axis={self.axis}, row={self.row})"

    def sites(self, lattice: Lattice) -> torch.Tensor:
        if not 0 <= self.axis < lattice.nd:
            raise ValueError(f"{self!r}: axis out of range for {lattice}")
        return lattice.coords(backend="torch")[self.axis] % 2 == self.row


class SpinMask(PFMask):
    """Spin partitioning (eq. 31): the spin components ``spins`` active on every site."""

    def __init__(self, spins: Sequence[int]) -> None:
        spins = tuple(check_int(s, "spins", 0) for s in spins)
        if not spins or len(set(spins)) != len(spins):
            raise ValueError(f"spins={spins!r}: expected distinct non-negative spin indices")
        self.spins = spins

    def __repr__(self) -> str:
        return f"SpinMask(spins={self.spins})"

    def sites(self, lattice: Lattice) -> torch.Tensor:
        return torch.ones(tuple(lattice.shape), dtype=torch.bool)


def projector_basis(gamma: torch.Tensor) -> torch.Tensor:
    """Unitary ``V`` whose first ``ns/2`` columns span the ``+1`` and last ``ns/2`` the ``-1`` eigenspace of the
    Hermitian involution ``gamma`` (Gram-Schmidt on the columns of ``(1 +- gamma)/2``, so a diagonal
    ``gamma`` gives a permutation of unit vectors with no phases).

    Examples
    --------
    >>> from latticekit.actions.dirac import gamma5_matrix
    >>> projector_basis(torch.tensor(gamma5_matrix(4))).real.diagonal().tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    g = torch.as_tensor(gamma).to(torch.complex128)
    ns = g.shape[0]
    eye = torch.eye(ns, dtype=torch.complex128)
    if not torch.allclose(g @ g, eye, atol=1e-12) or not torch.allclose(g, g.mH, atol=1e-12):
        raise ValueError("gamma: expected a Hermitian matrix squaring to the identity")
    cols: list[torch.Tensor] = []
    for sign in (1.0, -1.0):
        P = (eye + sign * g) / 2
        half: list[torch.Tensor] = []
        for j in range(ns):
            v = P[:, j].clone()
            for u in cols + half:
                v = v - (u.conj() @ v) * u
            n = torch.linalg.vector_norm(v)
            if float(n) > 1e-8:
                half.append(v / n)
        if len(half) != ns // 2:
            raise ValueError(f"gamma: the {'+' if sign > 0 else '-'}1 eigenspace has dimension {len(half)}, "
                             f"expected {ns // 2}")
        cols += half
    return torch.stack(cols, dim=1)


class GammaMask(PFMask):
    """The projector ``(1 + sign gamma_mu)/2`` on every site, all colours (module docstring).

    Parameters
    ----------
    mu : int
        ``0 .. Nd-1`` or ``5`` (checked against the lattice when the layer is built).
    sign : int
        ``+1`` or ``-1``.

    Examples
    --------
    >>> import latticekit as lk
    >>> m = GammaMask(2, -1)
    >>> m, m.active_spins(4), tuple(m.spin_basis(4).shape)
    (GammaMask(mu=2, sign=-1), (2, 3), (4, 4))
    """

    def __init__(self, mu: int, sign: int) -> None:
        if mu not in (0, 1, 2, 3, 5) or isinstance(mu, bool):
            raise ValueError(f"mu={mu!r}: expected a gamma-matrix index 0..3 or 5")
        if sign not in (1, -1) or isinstance(sign, bool):
            raise ValueError(f"sign={sign!r}: expected +1 or -1")
        self.mu, self.sign = int(mu), int(sign)

    def __repr__(self) -> str:
        return f"GammaMask(mu={self.mu}, sign={self.sign})"

    def active_spins(self, ns: int) -> tuple[int, ...]:
        h = ns // 2
        return tuple(range(h)) if self.sign > 0 else tuple(range(h, ns))

    def _gamma(self, ns: int) -> torch.Tensor:
        from latticekit.actions.dirac import gamma5_matrix, gamma_matrices

        nd = {2: 2, 4: 4}.get(ns)
        if nd is None:
            raise ValueError(f"{self!r}: Ns = {ns}; expected 2 (2D) or 4 (4D) spin components")
        if self.mu != 5 and self.mu >= nd:
            raise ValueError(f"{self!r}: gamma_{self.mu} does not exist in {nd}D (mu in 0..{nd - 1} or 5)")
        return torch.tensor(gamma5_matrix(nd) if self.mu == 5 else gamma_matrices(nd)[self.mu])

    def spin_basis(self, ns: int) -> torch.Tensor | None:
        return projector_basis(self._gamma(ns))

    def sites(self, lattice: Lattice) -> torch.Tensor:
        return torch.ones(tuple(lattice.shape), dtype=torch.bool)


def _spin_halves(nd: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    # 2D: P^+- = (1 +- sigma_z)/2 (eq. 31); 4D DeGrand-Rossi: gamma_5 = diag(1, 1, -1, -1)
    return ((0,), (1,)) if nd == 2 else ((0, 1), (2, 3))


def pf_masks(partitioning: str, lattice: Lattice, n_layers: int, *, even_odd: bool = False) -> list[PFMask]:
    """The masks of ``n_layers`` pseudofermion layers (module docstring).

    Parameters
    ----------
    partitioning : {"spatial", "spin", "alternating", "gamma"}
    lattice : Lattice
        2D or 4D, even extents for the spatial masks.
    n_layers : int
    even_odd : bool
        Even/odd target: spatial masks are rows of even sites (checkerboards would leave every even
        site in one partition).
    """
    if partitioning not in PARTITIONINGS:
        raise ValueError(f"partitioning={partitioning!r}: expected one of {PARTITIONINGS}")
    n_layers = check_int(n_layers, "n_layers", 1)      # -3 gave no layers at all
    if lattice.nd not in (2, 4):
        raise ValueError(f"lattice {lattice}: pseudofermion layers need 2 or 4 dimensions (Wilson fermions)")
    if partitioning != "spin" and any(L % 2 for L in lattice.shape):
        raise ValueError(f"lattice.shape {list(lattice.shape)}: spatial partitioning needs even extents")
    halves = _spin_halves(lattice.nd)
    spatial: list[PFMask] = [RowMask(1, 0), RowMask(1, 1)] if even_odd else [SiteMask(0), SiteMask(1)]
    spin: list[PFMask] = [SpinMask(halves[0]), SpinMask(halves[1])]
    gamma: list[PFMask] = [GammaMask(mu, sign) for mu in list(range(lattice.nd)) + [5] for sign in (1, -1)]
    cycle = {"spatial": spatial, "spin": spin, "alternating": spatial + spin, "gamma": spatial + gamma}[partitioning]
    return [cycle[i % len(cycle)] for i in range(n_layers)]
