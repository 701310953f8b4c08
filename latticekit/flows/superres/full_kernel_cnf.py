"""The standard continuous flow with a kernel that spans the lattice: the comparison of the super-resolving paper.

Sec. VI B of ``../shared/papers/super-resolving-flows-phi4.md`` (Fig. 4a) compares the IR-matching flows with "a
standard CNF for the 32x32 lattice as described in Section IV C but now with full translational symmetry and a
kernel that spans the entire system", with ``F = 30, D = 10, F' = 20, D' = 20`` and learning rate 5e-3: the
architecture of Gerdes, de Haan, Rainone, Bondesan and Cheng (SciPost Phys. 15, 238 (2023), the paper's ref.
[27]) on a unit Gaussian prior (that paper's base distribution; the family ``cnf`` of ``latticekit train`` builds
the model, :mod:`latticekit.app.flows.cnf_models`).

The vector field is eq. (23) with the features of eqs. (24-25) (:class:`~.cnf_base.SineBasisCNF`),

    G(Psi, t)_x = sum_{o, f'} a_{f'}(o, t) hb_{f'}(x + o),   a_{f'}(o, t) = sum_{d'} W~_{d'f'}(o) (W^K K(t))_{d'},
    hb_{f'}(y) = sum_f W^H_{f'f} H_f(Psi_y),

with ``o`` running over every offset of the periodic lattice (translation invariance by one site: the weights
depend on ``y - x`` alone) and ``W~(o)`` tied over the orbits of the point group of the lattice: sign flips
``o_mu -> -o_mu`` of every axis and permutations of axes of equal extent (in 2D on ``L x L``: the eight elements
of D4, the 90-degree rotations and reflections the paper names). One parameter per orbit: on ``L x L`` with even
``L`` there are ``(L/2 + 1)(L/2 + 2)/2`` orbits (153 at ``L = 32``, 561 at 64), so the model has
``153 F' D' + F' F + D' D + F - 1 = 62 029`` parameters at 32x32 with the sizes above, the "approximately twice"
of the three IR-matching CNFs (3 x 10 430 = 31 290) that Sec. VI B states (:mod:`.local_cnf`, "kernel size").

The sum over ``o`` is a circular cross-correlation, evaluated by FFT: with ``X^(k) = sum_x X(x) e^{-i k x}``,
``G^(k) = sum_{f'} conj(a^_{f'}(k)) hb^_{f'}(k)`` (for real ``a``), ``O(N F' V log V)`` per evaluation instead
of the ``O(N F' V^2)`` of the dense sum (which the tests compute independently). ``G_x`` depends on ``Psi_x``
through the offset ``o = 0`` alone (all offsets are distinct modulo ``L``), so the divergence is exact and cheap:
``div G = sum_x sum_{f, f'} a_{f'}(0, t) W^H_{f'f} H'_f(Psi_x)`` (eq. 27). ``W~`` starts at zero: the identity
map (Gerdes et al. likewise).

Examples
--------
>>> import torch
>>> from latticekit.testing import randomize_parameters
>>> cnf = FullKernelCNF((32, 32), n_basis=30)
>>> sum(p.numel() for p in cnf.parameters()), cnf.n_orbits          # the paper's comparison model
(62029, 153)
>>> small = randomize_parameters(FullKernelCNF((4, 4), n_basis=3, n_time=3, bond_basis=2, bond_time=2), seed=0)
>>> psi = torch.randn(2, 4, 4, dtype=torch.float64)
>>> with torch.no_grad():
...     phi, ld = small(psi)
...     back, ld_inv = small.inverse(phi)
>>> float((back - psi).abs().max()) < 1e-6, float((ld + ld_inv).abs().max()) < 1e-6
(True, True)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .cnf_base import DEFAULT_MAX_STEPS, SineBasisCNF, lattice_extents

__all__ = ["FullKernelCNF", "offset_orbits"]


def offset_orbits(shape: Sequence[int]) -> np.ndarray:
    """Orbit index of every offset of the periodic lattice ``shape`` under sign flips of each axis and
    permutations of axes of equal extent: an int64 array of ``shape``, orbits numbered ``0, 1, ...`` in the order
    of their smallest member (row-major), so the offset 0 is orbit 0.

    Examples
    --------
    >>> offset_orbits((4, 4))
    array([[0, 1, 2, 1],
           [1, 3, 4, 3],
           [2, 4, 5, 4],
           [1, 3, 4, 3]])
    >>> int(offset_orbits((32, 32)).max()) + 1, int(offset_orbits((64, 64)).max()) + 1
    (153, 561)
    """
    shape = tuple(int(n) for n in shape)
    nd = len(shape)
    grid = np.indices(shape).reshape(nd, -1)                             # (nd, V): every offset
    perms = [p for p in itertools.permutations(range(nd)) if all(shape[p[mu]] == shape[mu] for mu in range(nd))]
    rep = np.full(grid.shape[1], np.iinfo(np.int64).max, dtype=np.int64)
    for perm in perms:                                                    # the point group: nd! 2^nd elements at
        for signs in itertools.product((1, -1), repeat=nd):               # most, each applied to all offsets at once
            image = np.stack([(signs[mu] * grid[perm[mu]]) % shape[mu] for mu in range(nd)])
            rep = np.minimum(rep, np.ravel_multi_index(tuple(image), shape))
    _, index = np.unique(rep, return_inverse=True)                        # orbit = its smallest flat offset
    return index.reshape(shape).astype(np.int64)


class FullKernelCNF(SineBasisCNF):
    """Continuous normalising flow with a translation-invariant kernel over the whole lattice (Sec. VI B).

    Parameters
    ----------
    lattice_shape : sequence of int or latticekit.Lattice
        Extents ``(L_0, ..., L_{nd-1})``, 1 to 6 axes, any sizes (no blocks).
    n_basis, n_time, bond_basis, bond_time : int
        ``F, D, F', D'`` of eqs. (24-25). The paper's comparison: 30, 10, 20, 20 (the defaults).
    t0, t1, method, rtol, atol, train_rtol, train_atol, adjoint, options, max_steps
        The ODE solve, as for :class:`~latticekit.flows.superres.LocalCNF`.
    init : {"gerdes", "normal"}
        Initialisation of the frequencies and of ``W^H``, ``W^K`` (:data:`~.cnf_base.INITS`). Default
        ``"gerdes"``, that of Gerdes et al.'s code, whose model this is: with ``"normal"``
        the paper's learning rate 5e-3 diverges within a few steps at 8x8 and 16x16 (benchmarks/README.md).

    Attributes
    ----------
    w_spatial : Parameter, shape ``(D', F', n_orbits)``
        One weight per orbit of offsets (:func:`offset_orbits`); zero, so the layer starts as the identity.
    orbit_index : buffer, shape ``lattice_shape``
        The orbit of every offset.
    recompute : bool
        As for LocalCNF: checkpoint each field evaluation inside the solver (``[train] recompute_layers``).
    """

    def __init__(self, lattice_shape: Sequence[int] | Any, n_basis: int = 30, n_time: int = 10,
                 bond_basis: int = 20, bond_time: int = 20, t0: float = 0.0, t1: float = 1.0,
                 method: str = "dopri5", rtol: float | None = None, atol: float | None = None,
                 adjoint: bool = False, options: dict[str, Any] | None = None, train_rtol: float | None = None,
                 train_atol: float | None = None, max_steps: int | None = DEFAULT_MAX_STEPS,
                 init: str = "gerdes") -> None:
        shape = lattice_extents(lattice_shape)
        super().__init__(shape, n_basis, n_time, bond_basis, bond_time, t0, t1, method, rtol, atol, adjoint, options,
                         train_rtol, train_atol, max_steps, init)
        orbits = offset_orbits(shape)
        self.n_orbits = int(orbits.max()) + 1
        self.w_spatial = nn.Parameter(torch.zeros(self.bond_time, self.bond_basis, self.n_orbits))
        self.register_buffer("orbit_index", torch.from_numpy(orbits), persistent=False)

    def spatial_weights(self) -> torch.Tensor:
        """``W~(o)`` for every offset: shape ``(D', F', *L)``, entry ``[d', f', o]`` the weight of ``y = x + o``."""
        return self.w_spatial[:, :, self.orbit_index]

    def _field_and_divergence(self, psi: torch.Tensor, t: torch.Tensor | float,
                              weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``G(Psi, t)`` by FFT and its exact divergence for ``psi`` of shape ``(N, *L)`` (module docstring)."""
        weights = self.spatial_weights() if weights is None else weights
        dims = tuple(range(-self.nd, 0))
        h, dh = self._features(psi)                                                 # (N, F, *L) each
        hb = torch.tensordot(self.w_basis, h, dims=([1], [1])).movedim(0, 1)        # (N, F', *L): W^H H
        kt = self.w_time @ self.time_kernel(t)                                      # (D',), eq. (25)
        a = torch.tensordot(kt, weights, dims=([0], [0]))                           # (F', *L): a_f'(o, t)
        spectrum = (torch.fft.rfftn(hb, dim=dims) * torch.fft.rfftn(a, dim=dims).conj()).sum(1)
        field = torch.fft.irfftn(spectrum, s=self.lattice_shape, dim=dims)          # sum_o a(o) hb(x + o)
        coef = a[(slice(None),) + (0,) * self.nd] @ self.w_basis                    # (F,): the offset-0 weight
        div = torch.tensordot(dh, coef, dims=([1], [0])).sum(dim=dims)              # (N,), eq. (27)
        return field, div

    def extra_repr(self) -> str:
        return (f"lattice_shape={self.lattice_shape}, n_basis={self.n_basis}, n_time={self.n_time}, "
                f"bond_basis={self.bond_basis}, bond_time={self.bond_time}, n_orbits={self.n_orbits}, "
                f"t=[{self.t0}, {self.t1}], method={self.method!r}, adjoint={self.adjoint}")
